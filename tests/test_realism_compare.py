"""realism.compare on LiTS-117: real lesions cut out as labelled, synthetic ones as inserted."""

from __future__ import annotations

import numpy as np
import pytest

from synth.realism.compare import (
    compare_tables,
    distribution_distances,
    extract_real_lesions,
    feature_table,
    matched_sizes,
    synthesize_lesions,
)


def test_real_lesions_are_the_labelled_components(lits117):
    cc3d = pytest.importorskip("cc3d")
    samples = extract_real_lesions(lits117.volume, lits117.label, lits117.spacing, min_diameter_mm=3.0)
    components = cc3d.connected_components(lits117.label == 2, connectivity=26)
    stats = cc3d.statistics(components)
    voxel = float(np.prod(lits117.spacing))
    expected = 0
    for index in range(1, int(components.max()) + 1):
        box = stats["bounding_boxes"][index]
        diameter = (6.0 * stats["voxel_counts"][index] * voxel / np.pi) ** (1 / 3)
        touches = any(b.start == 0 or b.stop == n for b, n in zip(box, components.shape))
        expected += diameter >= 3.0 and not touches
    assert len(samples) == expected > 30
    for sample in samples:
        assert sample.source == "real" and sample.lesion.any()
        assert not (sample.lesion & sample.liver).any()  # the liver mask is tumour-free
        assert sample.volume.shape == sample.lesion.shape == sample.liver.shape


def test_synthetic_lesions_match_their_records(lits117):
    sizes = ["small", "medium", (6.0, 7.0)]
    samples, failures = synthesize_lesions(lits117.volume, lits117.label, lits117.spacing, sizes, seed=3)
    assert len(samples) + failures == len(sizes) and len(samples) >= 2
    for sample in samples:
        assert sample.source == "synthetic" and sample.phenotype
        assert 5.0 <= sample.diameter_mm < 20.0
        assert not (sample.lesion & sample.liver).any()


def test_matched_sizes():
    class Fake:  # only the two attributes matched_sizes reads
        def __init__(self, diameter, size_class):
            self.diameter_mm, self.size_class = diameter, size_class
    lesions = [Fake(4.0, "tiny"), Fake(30.0, "large")]
    assert matched_sizes(lesions, per_real=2) == ["tiny", "tiny", "large", "large"]
    ranges = matched_sizes(lesions, per_real=1, match="diameter")
    assert ranges[0] == pytest.approx((3.6, 4.4)) and ranges[1] == pytest.approx((27.0, 33.0))
    with pytest.raises(ValueError):
        matched_sizes(lesions, match="volume")


def test_distances_zero_for_equal_samples_and_large_for_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    same = distribution_distances(a, a.copy())
    assert same["wasserstein"] == pytest.approx(0.0) and same["ks"] == pytest.approx(0.0)
    shifted = distribution_distances(a, a + 2.0)
    assert shifted["wasserstein"] == pytest.approx(2.0) and shifted["ks"] > 0.6 and shifted["ks_p"] < 1e-6
    assert np.isnan(distribution_distances(a, np.array([np.nan]))["ks"])


def test_feature_table_and_per_class_comparison(lits117):
    real = extract_real_lesions(lits117.volume, lits117.label, lits117.spacing)[:6]
    synthetic, _ = synthesize_lesions(lits117.volume, lits117.label, lits117.spacing,
                                      matched_sizes(real, per_real=1), seed=0)
    table = feature_table(real + synthetic)
    assert table["contrast_hu"].shape == (len(real) + len(synthetic),)
    assert table["center_mm"].shape == (len(real) + len(synthetic), 3)
    result = compare_tables(table)
    assert "all" in result and set(result) - {"all"} <= {"tiny", "small", "medium", "large"}
    assert result["all"]["contrast_hu"]["n_real"] == len(real)


def test_realism_part_cuts_the_liver_into_four_interleaved_slabs():
    from synth.realism.compare import realism_part

    z = np.array([0.5, 30.0, 49.9, 50.1, 74.0, 76.0, 99.0, -3.0, 104.0])
    centers = np.stack([np.zeros_like(z), np.zeros_like(z), z], axis=1)
    parts = realism_part(centers, (0.0, 100.0))
    assert list(parts) == ["tune", "report", "report", "tune", "tune", "report", "report", "tune", "report"]
    with pytest.raises(ValueError, match="high > low"):
        realism_part(centers, (5.0, 5.0))


def test_liver_slab_counts_from_the_lower_end_and_clips_beyond_the_liver():
    from synth.realism.compare import liver_slab

    z = np.array([-3.0, 0.5, 32.0, 34.0, 99.0, 104.0])
    centers = np.stack([np.zeros_like(z), np.zeros_like(z), z], axis=1)
    assert liver_slab(centers, (0.0, 100.0), slabs=3).tolist() == [0, 0, 0, 1, 2, 2]
    assert liver_slab(centers, (0.0, 100.0)).tolist() == [0, 0, 1, 1, 3, 3]
    with pytest.raises(ValueError, match="positive count"):
        liver_slab(centers, (0.0, 100.0), slabs=0)


def test_real_lesions_carry_their_part_and_synthetic_their_matchs(lits117):
    from synth.realism.compare import liver_z_extent_mm, realism_part

    real = extract_real_lesions(lits117.volume, lits117.label, lits117.spacing)
    extent = liver_z_extent_mm(lits117.label, lits117.spacing)
    assert [s.part for s in real] == list(realism_part([s.center_mm for s in real], extent))
    assert {s.part for s in real} == {"tune", "report"}
    made, _ = synthesize_lesions(lits117.volume, lits117.label, lits117.spacing, ["small", "small"],
                                 parts=["report", "tune"], seed=1)
    assert [s.part for s in made] == ["report", "tune"][: len(made)]
    with pytest.raises(ValueError, match="parts"):
        synthesize_lesions(lits117.volume, lits117.label, lits117.spacing, ["small"], parts=[])
