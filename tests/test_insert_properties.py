"""Property tests of the heuristic insertion's invariants (hypothesis, derandomised for CI).

The host is the synthetic liver of ``conftest.build_host`` (numpy only, cached per spacing), on
isotropic and thick-slice anisotropic grids. Each property draws seeds, size classes, phenotypes,
counts and spacings, and checks one contract of ``synth.insert_tumor`` / ``synthesize``:
- nothing changes outside the lesions' boxes, and only tumour-free liver changes inside them;
- new tumour voxels were liver; labels stay in {0, 1, 2}; dtypes are kept;
- existing tumours are preserved;
- inputs are never modified and outputs never share their memory;
- the same seed gives the same output, in this process and in another one;
- every lesion's equivalent diameter (measured on the label) lies in its size class and matches
  its record;
- the label agrees with the image change (the label rule of ``synth.heuristic.blend``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cc3d
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from synth import LesionPlacementError, insert_tumor, prepare_host, synthesize

TESTS = Path(__file__).resolve().parent

# Derandomised, no example database: CI sees the same examples on every run.
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ANISOTROPIC = (0.7, 0.7, 5.0)
SPACINGS = ((1.5, 1.5, 2.5), ANISOTROPIC, (3.0, 3.0, 3.0), (1.0, 1.25, 2.0))
SIZE_RANGES = {"tiny": (3.0, 5.0), "small": (5.0, 10.0), "medium": (10.0, 20.0), "large": (20.0, 50.0)}
PHENOTYPES = ("hypodense", "isodense", "hyperdense", "rim-enhancing", "necrotic", "mix")

spacings = st.sampled_from(SPACINGS)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
size_names = st.sampled_from(tuple(SIZE_RANGES))
phenotypes = st.sampled_from(PHENOTYPES)


@st.composite
def size_and_count(draw, max_count: int = 3):
    """A size class (or a custom mm range, or "mix") and a count that the synthetic liver holds:
    large lesions one at a time (two 40 mm lesions need not fit in a 565 mL liver)."""
    size = draw(st.one_of(size_names, st.just("mix"),
                          st.tuples(st.floats(5.0, 25.0), st.floats(1.3, 2.0)).map(lambda p: (p[0], p[0] * p[1]))))
    if size in ("large", "mix") or (isinstance(size, tuple) and size[1] > 20.0):
        return size, 1
    count = draw(st.one_of(st.integers(0, max_count),
                           st.tuples(st.integers(0, max_count), st.integers(0, max_count))
                           .map(lambda p: tuple(sorted(p)))))
    return size, count


def count_bounds(count) -> tuple[int, int]:
    return (count, count) if isinstance(count, int) else count


def equivalent_diameter_mm(voxel_count: int, spacing) -> float:
    return (6.0 * voxel_count * float(np.prod(spacing)) / math.pi) ** (1.0 / 3.0)


def boxes_mask(lesions, shape) -> np.ndarray:
    """True inside the union of the lesions' (start, stop) boxes."""
    inside = np.zeros(shape, dtype=bool)
    for lesion in lesions:
        assert len(lesion.bbox) == 3
        for (start, stop), n in zip(lesion.bbox, shape):
            assert 0 <= start < stop <= n, f"bbox {lesion.bbox} outside the scan {shape}"
        inside[tuple(slice(a, b) for a, b in lesion.bbox)] = True
    return inside


def run(h, **options):
    """Insert into a synthetic host through ``prepare_host(...).insert``."""
    return prepare_host(h.volume, h.label, spacing=h.spacing).insert(**options)


def digest(volume: np.ndarray, label: np.ndarray, lesions=()) -> str:
    sha = hashlib.sha256()
    sha.update(str(volume.dtype).encode())
    sha.update(np.ascontiguousarray(volume).tobytes())
    sha.update(np.ascontiguousarray(label).tobytes())
    sha.update(json.dumps([lesion.to_dict() for lesion in lesions], sort_keys=True).encode())
    return sha.hexdigest()


# --- what may change, and where ------------------------------------------------------------


@PROPERTY
@given(spacing=spacings, request=size_and_count(), phenotype=phenotypes, seed=seeds,
       tumour=st.booleans(), mass_effect=st.booleans())
@example(spacing=ANISOTROPIC, request=("large", 1), phenotype="hypodense", seed=1, tumour=True, mass_effect=True)
@example(spacing=ANISOTROPIC, request=("tiny", 3), phenotype="mix", seed=2, tumour=False, mass_effect=True)
def test_changes_stay_inside_lesion_boxes_and_on_liver(make_host, spacing, request, phenotype, seed, tumour,
                                                       mass_effect):
    size, count = request
    h = make_host(spacing, tumour=tumour)
    result = run(h, size=size, count=count, phenotype=phenotype, seed=seed, mass_effect=mass_effect)
    volume, label = result.volume, result.label

    assert volume.dtype == h.volume.dtype and volume.shape == h.volume.shape
    assert label.dtype == np.uint8 and label.shape == h.label.shape
    assert set(np.unique(label).tolist()) <= {0, 1, 2}

    outside = ~boxes_mask(result.lesions, label.shape)
    np.testing.assert_array_equal(volume[outside], h.volume[outside],
                                  err_msg="volume changed outside every lesion bbox")
    np.testing.assert_array_equal(label[outside], h.label[outside], err_msg="label changed outside every lesion bbox")

    # Only tumour-free liver changes: background and existing tumours keep their intensities
    # (the mass effect moves liver parenchyma only), and the only label change is 1 -> 2.
    changed_label = label != h.label
    assert np.all(h.label[changed_label] == 1), "a voxel that was not liver changed its label"
    assert np.all(label[changed_label] == 2), "a label changed to something other than tumour"
    not_liver = h.label != 1
    np.testing.assert_array_equal(volume[not_liver], h.volume[not_liver],
                                  err_msg="intensity changed outside the tumour-free liver")
    if result.lesions:
        assert np.any(volume != h.volume), "lesions were recorded but the image did not change"


@PROPERTY
@given(spacing=spacings, request=size_and_count(), phenotype=phenotypes, seed=seeds)
@example(spacing=ANISOTROPIC, request=("medium", (2, 3)), phenotype="necrotic", seed=0)
def test_existing_tumours_preserved_and_new_tumour_was_liver(make_host, spacing, request, phenotype, seed):
    size, count = request
    h = make_host(spacing, tumour=True)
    result = run(h, size=size, count=count, phenotype=phenotype, seed=seed)
    old = h.label == 2
    assert old.sum() > 0
    assert np.all(result.label[old] == 2), "an existing tumour voxel lost its label"
    np.testing.assert_array_equal(result.volume[old], h.volume[old], err_msg="an existing tumour's intensities changed")
    new = (result.label == 2) & ~old
    assert np.all(h.label[new] == 1), "a new tumour voxel was not tumour-free liver in the input"
    assert int(new.sum()) == sum(lesion.voxel_count for lesion in result.lesions)
    for lesion in result.lesions:
        assert new[lesion.center_voxel], f"lesion {lesion.index}'s centre voxel is not new tumour"


@PROPERTY
@given(spacing=spacings, request=size_and_count(), seed=seeds, dtype=st.sampled_from([np.int16, np.float32]))
def test_inputs_unmodified_and_outputs_independent(make_host, spacing, request, seed, dtype):
    size, count = request
    h = make_host(spacing, dtype=dtype, tumour=True)
    volume, mask = h.volume.copy(), h.label.copy()  # writable: a write would go unnoticed otherwise
    volume_before, mask_before = volume.copy(), mask.copy()
    out_volume, out_label = insert_tumor(volume, mask, spacing=spacing, size=size, count=count, seed=seed)
    np.testing.assert_array_equal(volume, volume_before)
    np.testing.assert_array_equal(mask, mask_before)
    assert out_volume.dtype == np.dtype(dtype) and out_label.dtype == np.uint8
    for out in (out_volume, out_label):
        assert not np.shares_memory(out, volume) and not np.shares_memory(out, mask)
    # Writing to the outputs does not reach the inputs either.
    out_volume[...] = 0
    out_label[...] = 0
    np.testing.assert_array_equal(volume, volume_before)
    np.testing.assert_array_equal(mask, mask_before)


def test_read_only_and_fortran_ordered_inputs_give_the_same_result(host):
    assert not host.volume.flags.writeable and not host.label.flags.writeable
    reference = insert_tumor(host.volume, host.label, spacing=host.spacing, size="small", count=3, seed=11)
    fortran = insert_tumor(np.asfortranarray(host.volume), np.asfortranarray(host.label),
                           spacing=host.spacing, size="small", count=3, seed=11)
    for a, b in zip(reference, fortran):
        np.testing.assert_array_equal(a, b)
    assert np.any(reference[0] != host.volume)


@pytest.mark.parametrize("variant", ["bool", "float64", "int64", "uint8"])
def test_binary_mask_in_any_dtype_gives_the_same_result(host, variant):
    reference = insert_tumor(host.volume, host.label, spacing=host.spacing, size="small", count=2, seed=5)
    mask = host.label.astype(variant)
    volume, label = insert_tumor(host.volume, mask, spacing=host.spacing, size="small", count=2, seed=5)
    np.testing.assert_array_equal(volume, reference[0])
    np.testing.assert_array_equal(label, reference[1])
    assert label.dtype == np.uint8


def test_count_zero_returns_unchanged_copies(host_with_tumour):
    h = host_with_tumour
    result = run(h, size="small", count=0, seed=0)
    assert result.lesions == []
    np.testing.assert_array_equal(result.volume, h.volume)
    np.testing.assert_array_equal(result.label, h.label)
    assert not np.shares_memory(result.volume, h.volume) and not np.shares_memory(result.label, h.label)


# --- randomness -----------------------------------------------------------------------------


@PROPERTY
@given(spacing=spacings, request=size_and_count(), phenotype=phenotypes, seed=seeds)
def test_same_seed_same_output_and_rng_equals_seed(make_host, spacing, request, phenotype, seed):
    size, count = request
    h = make_host(spacing)
    first = run(h, size=size, count=count, phenotype=phenotype, seed=seed)
    again = run(h, size=size, count=count, phenotype=phenotype, seed=seed)
    with_rng = run(h, size=size, count=count, phenotype=phenotype, rng=np.random.default_rng(seed))
    for other in (again, with_rng):
        np.testing.assert_array_equal(other.volume, first.volume)
        np.testing.assert_array_equal(other.label, first.label)
        assert other.lesions == first.lesions
        assert [lesion.to_dict() for lesion in other.lesions] == [lesion.to_dict() for lesion in first.lesions]
    # The one-liner gives the same arrays as the full result.
    volume, label = insert_tumor(h.volume, h.label, spacing=h.spacing, size=size, count=count,
                                 phenotype=phenotype, seed=seed)
    np.testing.assert_array_equal(volume, first.volume)
    np.testing.assert_array_equal(label, first.label)


@PROPERTY
@given(spacing=spacings, size=size_names, seed=seeds, offset=st.integers(1, 1000))
def test_different_seeds_differ(make_host, spacing, size, seed, offset):
    h = make_host(spacing)
    count = 1 if size == "large" else 2
    a = run(h, size=size, count=count, seed=seed)
    b = run(h, size=size, count=count, seed=(seed + offset) % 2**32)
    assert not np.array_equal(a.volume, b.volume)
    assert [lesion.center_voxel for lesion in a.lesions] != [lesion.center_voxel for lesion in b.lesions]


def test_reused_host_gives_the_same_result_as_a_fresh_one(make_host):
    h = make_host(ANISOTROPIC, tumour=True)
    host = prepare_host(h.volume, h.label, spacing=h.spacing)
    first = host.insert(size="medium", count=2, seed=21)
    for seed in range(3):  # fill the host's caches (vessel blocks, clearance map) elsewhere
        host.insert(size="large", count=1, seed=100 + seed)
    again = host.insert(size="medium", count=2, seed=21)
    fresh = synthesize(prepare_host(h.volume, h.label, spacing=h.spacing), size="medium", count=2, seed=21)
    for other in (again, fresh):
        np.testing.assert_array_equal(other.volume, first.volume)
        np.testing.assert_array_equal(other.label, first.label)
        assert other.lesions == first.lesions


_SUBPROCESS = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import build_host
from synth import prepare_host
h = build_host({spacing!r}, tumour=True)
r = prepare_host(h.volume, h.label, spacing=h.spacing).insert(size="mix", count=(2, 3), seed=7)
sha = hashlib.sha256()
sha.update(str(r.volume.dtype).encode())
sha.update(np.ascontiguousarray(r.volume).tobytes())
sha.update(np.ascontiguousarray(r.label).tobytes())
sha.update(json.dumps([l.to_dict() for l in r.lesions], sort_keys=True).encode())
print(sha.hexdigest())
"""


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 2.5), ANISOTROPIC])
def test_same_seed_same_output_in_another_process(make_host, spacing):
    h = make_host(spacing, tumour=True)
    result = run(h, size="mix", count=(2, 3), seed=7)
    assert result.lesions
    env = dict(os.environ, PYTHONHASHSEED="12345")  # a different hash seed must not matter
    code = _SUBPROCESS.format(tests=str(TESTS), spacing=tuple(spacing))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == digest(result.volume, result.label, result.lesions)


# --- counts, sizes, records -----------------------------------------------------------------


@PROPERTY
@given(spacing=spacings, request=size_and_count(max_count=4), seed=seeds)
def test_number_of_records_matches_the_requested_count(make_host, spacing, request, seed):
    size, count = request
    h = make_host(spacing)
    result = run(h, size=size, count=count, seed=seed)
    low, high = count_bounds(count)
    assert low <= len(result.lesions) <= high
    assert [lesion.index for lesion in result.lesions] == list(range(1, len(result.lesions) + 1))
    assert result.spacing == pytest.approx(spacing)


@PROPERTY
@given(spacing=spacings, request=size_and_count(), phenotype=phenotypes, seed=seeds, mass_effect=st.booleans())
@example(spacing=ANISOTROPIC, request=("tiny", 3), phenotype="hypodense", seed=0, mass_effect=True)
@example(spacing=ANISOTROPIC, request=("small", 3), phenotype="mix", seed=1, mass_effect=True)
@example(spacing=ANISOTROPIC, request=("medium", 3), phenotype="mix", seed=2, mass_effect=True)
@example(spacing=ANISOTROPIC, request=("large", 1), phenotype="mix", seed=3, mass_effect=True)
def test_lesion_diameter_in_class_and_equal_to_record(make_host, spacing, request, phenotype, seed, mass_effect):
    size, count = request
    h = make_host(spacing, tumour=True)
    result = run(h, size=size, count=count, phenotype=phenotype, seed=seed, mass_effect=mass_effect)
    if isinstance(size, tuple):
        low, high = size
    elif size == "mix":
        low, high = 3.0, 50.0
    else:
        low, high = SIZE_RANGES[size]
    for lesion in result.lesions:
        assert low <= lesion.diameter_mm < high or (size in ("large", "mix") and lesion.diameter_mm == high), (
            f"{lesion.diameter_mm:.2f} mm lesion outside the requested {low}-{high} mm")
        assert lesion.diameter_mm == pytest.approx(equivalent_diameter_mm(lesion.voxel_count, spacing), rel=1e-9)
        expected_class = next(name for name, (a, b) in SIZE_RANGES.items() if a <= lesion.diameter_mm < b
                              or (name == "large" and lesion.diameter_mm == b)) if lesion.diameter_mm >= 3.0 else "tiny"
        assert lesion.size_class == expected_class
        if size in SIZE_RANGES:
            assert lesion.size_class == size
        record = lesion.to_dict()
        json.dumps(record)
        assert record["voxel_count"] == lesion.voxel_count and record["size_class"] == lesion.size_class
        assert record["diameter_mm"] == pytest.approx(lesion.diameter_mm, abs=1e-3)
        assert record["bbox"] == [list(pair) for pair in lesion.bbox]

    # Measure the lesions on the label: 26-connected components of the new tumour voxels. A
    # lesion is one component; should two lesions touch (see the touching test below), the shared
    # component still holds exactly their voxel counts.
    new = (result.label == 2) & (h.label != 2)
    components, n = cc3d.connected_components(new.astype(np.uint8), connectivity=26, return_N=True)
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    owners: dict[int, list] = {}
    for lesion in result.lesions:
        component = int(components[lesion.center_voxel])
        assert component > 0
        owners.setdefault(component, []).append(lesion)
    assert set(owners) == set(range(1, n + 1)), "a new tumour component belongs to no lesion record"
    for component, lesions in owners.items():
        assert sizes[component] == sum(lesion.voxel_count for lesion in lesions)
        if len(lesions) == 1:
            measured = equivalent_diameter_mm(int(sizes[component]), spacing)
            assert lesions[0].diameter_mm == pytest.approx(measured, rel=1e-9)


# --- label rule -----------------------------------------------------------------------------


@PROPERTY
@given(spacing=spacings, size=st.one_of(size_names, st.just("mix")),
       phenotype=st.sampled_from(["hypodense", "hyperdense"]),
       seed=seeds, dtype=st.sampled_from([np.int16, np.float32]))
@example(spacing=ANISOTROPIC, size="tiny", phenotype="hypodense", seed=0, dtype=np.int16)
@example(spacing=ANISOTROPIC, size="large", phenotype="hyperdense", seed=0, dtype=np.float32)
def test_label_agrees_with_the_image_change(make_host, spacing, size, phenotype, seed, dtype):
    """One lesion without mass effect: its label is where the image moved by most of its change.

    The blend labels the voxels whose soft-edge weight is above one half; texture is added on
    top, so the test is robust rather than voxel-exact: the typical labelled voxel moved by more
    than half the lesion's mean change, the changed voxels off the label moved mostly by less,
    and the recorded mean change is the measured one.
    """
    h = make_host(spacing, dtype=dtype, tumour=True)
    result = run(h, size=size, count=1, phenotype=phenotype, seed=seed, mass_effect=False)
    (lesion,) = result.lesions
    assert lesion.phenotype == phenotype and not lesion.mass_effect
    delta = result.volume.astype(np.float64) - h.volume.astype(np.float64)
    new = (result.label == 2) & (h.label != 2)
    mean_change = lesion.mean_hu_change
    assert (mean_change < 0) if phenotype == "hypodense" else (mean_change > 0)
    assert abs(mean_change) >= 10.0, f"a {lesion.diameter_mm:.1f} mm lesion changed by {mean_change:.1f} HU only"
    assert delta[new].mean() == pytest.approx(mean_change, abs=1e-3), "recorded mean_hu_change is not the measured one"

    magnitude = abs(mean_change)
    assert np.median(np.abs(delta[new])) > 0.5 * magnitude
    # The direction of the change is the phenotype's on most labelled voxels. Inner texture and
    # grain ride on it (together about the host's noise, sigma 12 here), so on a faint lesion
    # (10 HU) a fifth to a quarter of the voxels move the other way; a label placed off the change
    # would have about half.
    sign = -1.0 if phenotype == "hypodense" else 1.0
    assert np.mean(sign * delta[new] > 0) >= 0.7

    off = np.abs(delta[~new & (delta != 0)])  # the soft edge around the label
    if off.size:
        assert off.mean() < 0.5 * magnitude, "the image changed as much off the label as on it"
        assert np.percentile(off, 99) < magnitude, "large image changes left unlabelled"
    big = np.abs(delta) > magnitude
    if big.any():
        assert np.mean(new[big]) >= 0.95, "voxels that changed by more than the lesion's mean change are unlabelled"


# --- lesions never touch other tumours, even on coarse grids ----------------------------------


def test_lesions_never_touch_each_other_or_existing_tumours_on_a_3mm_grid():
    """On 3 mm voxels the edge + 1 mm gap is shorter than a voxel; the 26-neighbour ring of the
    body must still be tumour-free, so no two tumours merge into one component."""
    rng = np.random.default_rng(0)
    volume = (110 + 12 * rng.standard_normal((48, 48, 48))).astype(np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    mask[4:44, 4:44, 4:44] = 1
    mask[20:28, 20:28, 20:28] = 2
    host = prepare_host(volume, mask, spacing=(3.0, 3.0, 3.0))
    full = np.ones((3, 3, 3), dtype=bool)
    near_old = ndimage.binary_dilation(mask == 2, structure=full)  # the tumour and its 26 neighbours
    touching = []
    for seed in range(60):  # before the fix about one seed in ten touched
        result = host.insert(size="small", count=12, phenotype="hypodense", seed=seed, mass_effect=False,
                             edge_mm=(1.0, 1.0))
        new = (result.label == 2) & (mask != 2)
        components = ndimage.label(new, structure=full)[0]  # 26-connected
        centres = [components[lesion.center_voxel] for lesion in result.lesions]
        if np.any(new & near_old) or len(set(centres)) < len(centres):
            touching.append(seed)
    assert touching == [], f"seeds whose lesions touch another tumour: {touching}"


def test_placement_errors_are_value_errors(make_host):
    """A liver too crowded for the request raises LesionPlacementError, not a silent short count."""
    h = make_host((3.0, 3.0, 3.0))
    with pytest.raises(LesionPlacementError, match="could not place|impossible"):
        run(h, size="large", count=40, seed=0)
