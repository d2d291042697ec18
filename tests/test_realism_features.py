"""realism.features on hand-made lesions whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synth.realism.features import FEATURE_NAMES, FEATURE_VERSION, lesion_features, shape_features, signed_distance

BACKGROUND_HU = 110.0
LESION_HU = 60.0


def grid_mm(shape, spacing):
    """Voxel-centre coordinates in mm, centred on the box."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def ellipsoid(semi_axes_mm, spacing=(1.0, 1.0, 1.0), margin_mm=10.0):
    shape = tuple(int(np.ceil(2 * (a + margin_mm) / s)) | 1 for a, s in zip(semi_axes_mm, spacing))
    x, y, z = grid_mm(shape, spacing)
    return (x / semi_axes_mm[0]) ** 2 + (y / semi_axes_mm[1]) ** 2 + (z / semi_axes_mm[2]) ** 2 <= 1.0


def image_of(mask, spacing, *, blur_mm=0.0, noise_hu=0.0, seed=0):
    image = np.where(mask, LESION_HU, BACKGROUND_HU)
    if blur_mm > 0:
        image = ndimage.gaussian_filter(image, [blur_mm / s for s in spacing], mode="nearest")
    return image + np.random.default_rng(seed).normal(0.0, noise_hu, mask.shape) if noise_hu else image


def test_sphere_size_contrast_and_roundness():
    spacing = (1.0, 1.0, 1.0)
    mask = ellipsoid((8.0, 8.0, 8.0), spacing)
    features = lesion_features(image_of(mask, spacing, noise_hu=5.0), mask, spacing)
    assert set(features) == set(FEATURE_NAMES)
    assert features["diameter_mm"] == pytest.approx(16.0, abs=1.0)  # within a voxel
    assert features["contrast_hu"] == pytest.approx(LESION_HU - BACKGROUND_HU, abs=3.0)
    assert 0.93 < features["sphericity"] <= 1.0
    assert features["elongation"] == pytest.approx(1.0, abs=0.05)
    assert features["roughness"] < 0.05
    assert features["solidity"] > 0.95
    assert features["texture_sd_hu"] == pytest.approx(5.0, rel=0.2)  # the noise, nothing else


def test_elongated_ellipsoid_axes_and_lower_sphericity():
    spacing = (1.0, 1.0, 1.0)
    mask = ellipsoid((20.0, 10.0, 6.0), spacing)
    features = lesion_features(image_of(mask, spacing), mask, spacing)
    sphere = ellipsoid((10.6, 10.6, 10.6), spacing)  # about the same volume
    sphere_features = lesion_features(image_of(sphere, spacing), sphere, spacing)
    assert features["elongation"] == pytest.approx(20.0 / 6.0, rel=0.08)
    assert features["major_axis_mm"] == pytest.approx(40.0, rel=0.05)
    assert features["minor_axis_mm"] == pytest.approx(12.0, rel=0.1)
    assert features["sphericity"] < sphere_features["sphericity"] - 0.1
    assert features["roughness"] < 0.05  # an ellipsoid is smooth: it is its own moment ellipsoid


@pytest.mark.parametrize("sigma_mm", [0.8, 1.5])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.0)])
def test_edge_width_of_a_gaussian_blurred_step(sigma_mm, spacing):
    mask = ellipsoid((12.0, 12.0, 12.0), spacing)
    features = lesion_features(image_of(mask, spacing, blur_mm=sigma_mm, noise_hu=3.0), mask, spacing)
    expected = 2.0 * 1.2816 * sigma_mm  # 10-90 % width of a blurred step
    assert features["edge_width_mm"] == pytest.approx(expected, rel=0.15)


def test_sharp_edge_is_narrower_than_a_voxel_and_a_half():
    mask = ellipsoid((10.0, 10.0, 10.0))
    assert lesion_features(image_of(mask, (1.0, 1.0, 1.0)), mask, (1.0, 1.0, 1.0))["edge_width_mm"] < 1.5


def test_shell_reads_only_liver():
    spacing = (1.0, 1.0, 1.0)
    mask = ellipsoid((6.0, 6.0, 6.0), spacing)
    image = image_of(mask, spacing)
    x, _, _ = grid_mm(mask.shape, spacing)
    bright = (x > 7.5) & ~mask  # a vessel or another organ hugging one side of the lesion
    image[bright] = 300.0
    with_all = lesion_features(image, mask, spacing)
    liver_only = lesion_features(image, mask, spacing, liver=~bright)
    assert liver_only["contrast_hu"] == pytest.approx(LESION_HU - BACKGROUND_HU, abs=1.0)
    assert with_all["contrast_hu"] < liver_only["contrast_hu"] - 10.0


def test_lobulated_body_is_rougher_and_less_solid_than_a_sphere():
    spacing = (1.0, 1.0, 1.0)
    x, y, z = grid_mm((41, 41, 41), spacing)
    rho = np.sqrt(x**2 + y**2 + z**2)
    polar = np.arccos(np.clip(z / np.maximum(rho, 1e-9), -1, 1))
    azimuth = np.arctan2(y, x)
    lobes = rho <= 10.0 * (1.0 + 0.25 * np.cos(4 * azimuth) * np.sin(polar))
    sphere = rho <= 10.0
    rough = lesion_features(image_of(lobes, spacing), lobes, spacing)
    smooth = lesion_features(image_of(sphere, spacing), sphere, spacing)
    assert rough["roughness"] > 2.0 * smooth["roughness"]
    assert rough["solidity"] < smooth["solidity"] - 0.03
    assert rough["sphericity"] < smooth["sphericity"]


def test_signed_distance_is_half_a_voxel_at_the_boundary():
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[3:6, 3:6, 3:6] = True
    distance = signed_distance(mask, (2.0, 2.0, 2.0))
    assert distance[4, 4, 4] == pytest.approx(-3.0)  # the middle voxel: 1.5 voxels from the surface
    assert distance[3, 4, 4] == pytest.approx(-1.0)
    assert distance[2, 4, 4] == pytest.approx(1.0)


def test_tiny_lesion_gives_finite_shape_and_contrast():
    mask = ellipsoid((2.0, 2.0, 2.0))
    features = lesion_features(image_of(mask, (1.0, 1.0, 1.0), noise_hu=5.0), mask, (1.0, 1.0, 1.0))
    for name in ("contrast_hu", "texture_sd_hu", "diameter_mm", "sphericity", "elongation", "roughness"):
        assert np.isfinite(features[name]), name


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        lesion_features(np.zeros((5, 5, 5)), np.zeros((5, 5, 5), dtype=bool), (1, 1, 1))
    with pytest.raises(ValueError, match="one shape"):
        lesion_features(np.zeros((5, 5, 5)), np.ones((5, 5, 4), dtype=bool), (1, 1, 1))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 2.0)])
def test_sphericity_of_a_sphere_is_close_to_and_at_most_one(spacing):
    for radius in (3.0, 8.0):
        mask = ellipsoid((radius, radius, radius), spacing)
        assert 0.85 < shape_features(mask, spacing)["sphericity"] <= 1.0


def test_sphericity_of_an_elongated_ellipsoid_is_clearly_below_one():
    spacing = (1.0, 1.0, 1.0)
    assert shape_features(ellipsoid((20.0, 6.0, 6.0), spacing), spacing)["sphericity"] < 0.85


def test_sphericity_of_every_real_lesion_is_at_most_one(lits117):
    from synth.realism.compare import extract_real_lesions

    lesions = extract_real_lesions(lits117.volume, lits117.label, lits117.spacing, min_diameter_mm=0.0,
                                   exclude_border=False)
    assert len(lesions) > 50
    values = [shape_features(s.lesion, s.spacing)["sphericity"] for s in lesions]
    assert max(values) <= 1.0
    assert min(values) > 0.3


def test_feature_version_is_a_positive_int():
    assert isinstance(FEATURE_VERSION, int) and FEATURE_VERSION >= 2
