"""Lesion appearance on real CT: contrast as asked and measured, phase, realistic mix, large lesions.

Contrast and edges are measured with the realism features (synth.realism.features), the same
measurement the realism report applies to real tumours.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synth import LesionPlacementError, prepare_host
from synth.components import lesion_components
from synth.heuristic.cluster import sample_cluster
from synth.heuristic.phase import check_phase, estimate_phase, resolve_phase
from synth.heuristic.size import voxel_count_for
from synth.heuristic.texture import DIVERSE_WEIGHTS, parse_phenotype, sample_appearance, sample_phenotype
from synth.labels import Label
from synth.realism.compare import crop_around
from synth.realism.features import lesion_features, shape_features


def _inserted(host, size, seed, **options):
    """One lesion inserted into ``host``: (record, its features), or None when it found no room."""
    try:
        result = host.insert(size=size, count=1, seed=seed, **options)
    except LesionPlacementError:
        return None
    record = result.lesions[0]
    box = crop_around(tuple(slice(a, b) for a, b in record.bbox), host.spacing, host.label.shape, margin_mm=8.0)
    new = (result.label[box] == Label.TUMOR) & (host.label[box] != Label.TUMOR)
    parts, _ = lesion_components(new)
    centre = tuple(c - b.start for c, b in zip(record.center_voxel, box))
    lesion = parts == parts[centre]
    features = lesion_features(result.volume[box].astype(np.float32), lesion, host.spacing,
                               liver=result.label[box] == Label.LIVER)
    return record, features


@pytest.fixture(scope="module")
def lits_host(lits117):
    return prepare_host(lits117.volume, lits117.label, spacing=lits117.spacing)


@pytest.fixture(scope="module")
def totalseg_host(totalseg_example):
    return prepare_host(totalseg_example.volume, totalseg_example.label, spacing=totalseg_example.spacing)


@pytest.mark.parametrize("case", ["lits_host", "totalseg_host"])
@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_measured_contrast_is_the_requested_one(request, case, size):
    host = request.getfixturevalue(case)
    errors = []
    for seed in range(12):
        inserted = _inserted(host, size, seed, phenotype="hypodense")
        if inserted is not None:
            record, features = inserted
            errors.append(features["contrast_hu"] - record.contrast_hu)
        if len(errors) == 5:
            break
    assert len(errors) >= 3, f"only {len(errors)} {size} lesions placed in {case}"
    assert np.median(np.abs(errors)) <= 5.0, errors


def test_phase_is_estimated_from_the_liver(lits_host, totalseg_host):
    assert estimate_phase(lits_host.stats.median_hu) == "portal-venous"
    assert estimate_phase(totalseg_host.stats.median_hu) == "unenhanced"
    assert resolve_phase("arterial", lits_host.stats.median_hu) == "arterial"
    with pytest.raises(ValueError, match="phase must be one of"):
        check_phase("venous")
    with pytest.raises(ValueError, match="phase must be one of"):
        lits_host.insert(size="small", count=1, seed=0, phase="late")


def test_contrast_follows_the_phase(lits_host, totalseg_host):
    """Unenhanced lesions are mildly hypodense; portal-venous ones near -45 HU (published ranges)."""
    portal = [_inserted(lits_host, "medium", seed, phenotype="hypodense") for seed in range(6)]
    plain = [_inserted(totalseg_host, "medium", seed, phenotype="hypodense") for seed in range(6)]
    portal = [features["contrast_hu"] for _, features in filter(None, portal)]
    plain = [features["contrast_hu"] for _, features in filter(None, plain)]
    assert -70.0 < np.median(portal) < -30.0, portal
    assert -30.0 < np.median(plain) < -4.0, plain
    # The same liver asked for the unenhanced phase gets the faint contrast.
    forced = [_inserted(lits_host, "medium", seed, phenotype="hypodense", phase="unenhanced") for seed in range(6)]
    forced = [record.contrast_hu for record, _ in filter(None, forced)]
    assert -30.0 < np.median(forced) < -4.0, forced


def test_default_mix_is_mostly_hypodense():
    rng = np.random.default_rng(0)
    weights = parse_phenotype("mix")
    draws = [sample_appearance(sample_phenotype(weights, 15.0, rng), 15.0, 118.0, 12.0, rng) for _ in range(200)]
    names = [a.phenotype for a in draws]
    assert names.count("hypodense") >= 0.85 * len(names)
    assert sum(a.contrast_hu < -10.0 for a in draws) >= 0.9 * len(draws)
    assert sum(n in ("isodense", "hyperdense") for n in names) <= 0.05 * len(names)


def test_diverse_preset_keeps_the_old_variety():
    assert parse_phenotype("diverse") == pytest.approx(DIVERSE_WEIGHTS)
    rng = np.random.default_rng(0)
    names = [sample_phenotype(parse_phenotype("diverse"), 15.0, rng) for _ in range(400)]
    assert set(names) == set(DIVERSE_WEIGHTS)
    assert names.count("hypodense") < 0.75 * len(names)
    with pytest.raises(ValueError, match="'diverse'"):
        parse_phenotype("varied")


def test_large_lesions_have_wider_edges_than_small_ones(lits_host):
    def edges(size):
        out = [_inserted(lits_host, size, seed, phenotype="hypodense") for seed in range(8)]
        return [features["edge_width_mm"] for _, features in filter(None, out)][:5]

    small, large = edges("small"), edges("large")
    assert len(large) >= 3
    assert np.nanmedian(large) > np.nanmedian(small) + 0.5, (small, large)


def test_cluster_is_one_connected_lesion_of_lower_solidity():
    spacing = (1.0, 1.0, 1.0)
    solidity_single, solidity_cluster = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        count = voxel_count_for(30.0, (20.0, 50.0), 1.0)
        stencil = sample_cluster(30.0, count, spacing, rng, pad_mm=3.0)
        assert stencil.voxel_count == count == np.count_nonzero(stencil.inside)
        _, parts = lesion_components(stencil.inside)
        assert parts == 1
        solidity_cluster.append(shape_features(stencil.inside, spacing)["solidity"])
        from synth.heuristic.shape import rasterize, sample_shape

        single = rasterize(sample_shape(30.0, rng), count, spacing, pad_mm=3.0)
        solidity_single.append(shape_features(single.inside, spacing)["solidity"])
    assert np.median(solidity_cluster) < np.median(solidity_single) - 0.03, (solidity_cluster, solidity_single)


def test_vessels_inside_a_large_lesion_lose_their_excess(lits_host):
    """A vessel the lesion covers is encased: it is no brighter than the lesion around it."""
    checked = 0
    for seed in range(30):
        try:
            result = lits_host.insert(size="large", count=1, seed=seed, phenotype="hypodense")
        except LesionPlacementError:
            continue
        (x0, x1), (y0, y1), (z0, z1) = result.lesions[0].bbox
        box = (slice(x0, x1), slice(y0, y1), slice(z0, z1))
        lesion = (result.label[box] == Label.TUMOR) & (lits_host.label[box] != Label.TUMOR)
        # Deeper than the soft edge, where the lesion has its full change.
        deep = ndimage.distance_transform_edt(lesion, sampling=lits_host.spacing) > result.lesions[0].edge_mm
        vessels = lits_host.vessel_mask(box) & deep
        lesion = deep
        if np.count_nonzero(vessels) < 5:
            continue
        before = lits_host.volume[box].astype(np.float32)
        after = result.volume[box].astype(np.float32)
        # Before: vessels stand out of the liver; after: not out of the lesion.
        assert before[vessels].mean() - np.median(before[lesion & ~vessels]) > 20.0
        assert after[vessels].mean() - after[lesion & ~vessels].mean() < 12.0
        checked += 1
        if checked == 2:
            break
    assert checked >= 1


def test_same_seed_same_lesions(lits_host):
    a = lits_host.insert(size=(20.0, 25.0), count=1, seed=0)
    b = lits_host.insert(size=(20.0, 25.0), count=1, seed=0)
    assert a.lesions == b.lesions
    assert np.array_equal(a.volume, b.volume) and np.array_equal(a.label, b.label)


def test_lesions_are_about_as_noisy_inside_as_their_liver(lits_host):
    """The inner texture is scaled to the host's noise: inside-to-liver SD near real tumours' 0.94."""
    ratios = []
    for size in ("medium", "large"):
        for seed in range(8):
            try:
                result = lits_host.insert(size=size, count=1, seed=seed, phenotype="hypodense")
            except LesionPlacementError:
                continue
            box = crop_around(tuple(slice(a, b) for a, b in result.lesions[0].bbox), lits_host.spacing,
                              lits_host.label.shape, margin_mm=8.0)
            lesion = (result.label[box] == Label.TUMOR) & (lits_host.label[box] != Label.TUMOR)
            volume = result.volume[box].astype(np.float32)
            inner = ndimage.distance_transform_edt(lesion, sampling=lits_host.spacing) > 1.5
            outside = ndimage.distance_transform_edt(~lesion, sampling=lits_host.spacing)
            shell = (result.label[box] == Label.LIVER) & (outside >= 2.0) & (outside <= 6.0)
            ratios.append(volume[inner].std() / volume[shell].std())
    assert len(ratios) >= 6
    assert 0.75 <= np.median(ratios) <= 1.1, ratios


def test_texture_follows_the_host_noise():
    quiet = sample_appearance("hypodense", 15.0, 118.0, 4.0, np.random.default_rng(0))
    noisy = sample_appearance("hypodense", 15.0, 118.0, 20.0, np.random.default_rng(0))
    assert noisy.texture_hu == pytest.approx(5.0 * quiet.texture_hu)
    assert noisy.texture_hu < 20.0
