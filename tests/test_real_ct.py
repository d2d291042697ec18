"""Insertion into real CT (../shared/data): TotalSegmentator's example liver (healthy, 3 mm) and
LiTS case 117 (about 70 expert-annotated tumours, 1.4 mm nominal)."""

from __future__ import annotations

import cc3d
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from synth import insert_tumor, prepare_host

SIZE_RANGES = {"tiny": (3.0, 5.0), "small": (5.0, 10.0), "medium": (10.0, 20.0), "large": (20.0, 50.0)}
SEEDS = (0, 1, 2)


def boxes_mask(lesions, shape) -> np.ndarray:
    inside = np.zeros(shape, dtype=bool)
    for lesion in lesions:
        inside[tuple(slice(a, b) for a, b in lesion.bbox)] = True
    return inside


def assert_unchanged_outside_boxes(result, volume, label):
    outside = ~boxes_mask(result.lesions, volume.shape)
    np.testing.assert_array_equal(result.volume[outside], volume[outside])
    np.testing.assert_array_equal(result.label[outside], label[outside])


@pytest.fixture(scope="module")
def totalseg_host(totalseg_example):
    case = totalseg_example
    assert case.volume.dtype == np.int16 and case.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert set(np.unique(case.label).tolist()) == {0, 1}
    return prepare_host(case.volume, case.label, spacing=case.spacing)


@pytest.fixture(scope="module")
def lits_host(lits117):
    case = lits117
    assert case.volume.dtype == np.int16 and case.spacing == pytest.approx((1.4, 1.4, 1.4), abs=1e-5)
    return prepare_host(case.volume, case.label, spacing=case.spacing)


# --- TotalSegmentator example: healthy liver, 3 mm ------------------------------------------


@pytest.mark.parametrize("size, count", [("small", 3), ("medium", 3), ("large", 1)])
@pytest.mark.parametrize("seed", SEEDS)
def test_totalseg_hypodense_lesions_inside_the_liver(totalseg_example, totalseg_host, size, count, seed):
    case = totalseg_example
    result = totalseg_host.insert(size=size, count=count, phenotype="hypodense", seed=seed)
    assert len(result.lesions) == count
    assert result.volume.dtype == np.int16 and result.label.dtype == np.uint8
    assert_unchanged_outside_boxes(result, case.volume, case.label)

    new = result.label == 2
    assert new.sum() == sum(lesion.voxel_count for lesion in result.lesions)
    assert np.all(case.label[new] == 1), "a lesion voxel lies outside the liver mask"
    delta = result.volume.astype(np.float64) - case.volume
    assert np.all(delta[case.label == 0] == 0), "the image changed outside the liver"
    low, high = SIZE_RANGES[size]
    noise = totalseg_host.stats.noise_hu
    for lesion in result.lesions:
        assert case.label[lesion.center_voxel] == 1
        assert lesion.phenotype == "hypodense" and lesion.size_class == size
        assert low <= lesion.diameter_mm <= high
        # Darker than the parenchyma, and clearly so. This liver is unenhanced (median about
        # 46 HU), where tumours are only mildly hypodense (6-30 HU): below 10 mm the synthesiser
        # keeps a contrast of at least 2 noise sigmas, from 10 mm at least 6 HU; every labelled
        # voxel carries more than half of it (the label rule), hence these floors on the mean.
        assert lesion.mean_hu_change < 0
        floor = 1.25 * noise if lesion.diameter_mm < 10.0 else 5.0
        assert abs(lesion.mean_hu_change) >= floor, (
            f"{lesion.diameter_mm:.1f} mm lesion changed by {lesion.mean_hu_change:.1f} HU only")
        box = tuple(slice(a, b) for a, b in lesion.bbox)
        assert delta[box][new[box]].mean() < 0
    if size == "large":
        assert result.lesions[0].mass_effect  # from 20 mm, pushed outward by default


def test_totalseg_contrast_is_typically_at_least_20_hu_for_small_lesions(totalseg_host):
    """Small hypodense lesions must stay learnable: typically a drop of 20 HU or more."""
    changes = [lesion.mean_hu_change for seed in range(16)
               for lesion in totalseg_host.insert(size="small", count=3, phenotype="hypodense", seed=seed).lesions]
    assert len(changes) == 48 and max(changes) < 0
    assert np.median(np.abs(changes)) >= 20.0


def test_totalseg_nibabel_images_in_images_out(totalseg_example):
    case = totalseg_example
    volume_image, label_image = insert_tumor(case.volume_image, case.label_image, size="small", count=2, seed=3)
    assert isinstance(volume_image, nib.Nifti1Image) and isinstance(label_image, nib.Nifti1Image)
    np.testing.assert_allclose(volume_image.affine, case.volume_image.affine)
    np.testing.assert_allclose(label_image.affine, case.label_image.affine)
    # Spacing is taken from the image (3 mm), not the 1 mm default: same as the array call.
    volume, label = insert_tumor(case.volume, case.label, spacing=case.spacing, size="small", count=2, seed=3)
    np.testing.assert_array_equal(np.asanyarray(volume_image.dataobj), volume)
    np.testing.assert_array_equal(np.asanyarray(label_image.dataobj), label)
    assert np.asanyarray(volume_image.dataobj).dtype == np.int16
    assert (label == 2).sum() > 0


def test_nibabel_outputs_declare_their_dtypes_and_save_as_such(totalseg_example, tmp_path):
    """The label image must not inherit the CT's int16 header: saved, labels stay uint8."""
    case = totalseg_example
    volume_image, label_image = insert_tumor(case.volume_image, case.label_image, size="small", count=1, seed=0)
    assert label_image.get_data_dtype() == np.uint8
    assert volume_image.get_data_dtype() == np.int16
    nib.save(label_image, tmp_path / "label.nii.gz")
    nib.save(volume_image, tmp_path / "ct.nii.gz")
    saved_label, saved_ct = nib.load(tmp_path / "label.nii.gz"), nib.load(tmp_path / "ct.nii.gz")
    assert saved_label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(saved_label.dataobj), np.asanyarray(label_image.dataobj))
    np.testing.assert_array_equal(np.asanyarray(saved_ct.dataobj), np.asanyarray(volume_image.dataobj))
    np.testing.assert_allclose(saved_label.affine, case.label_image.affine, atol=1e-5)


# --- LiTS-117: many real tumours, 1.4 mm ----------------------------------------------------


@pytest.fixture(scope="module")
def lits_tumours(lits117):
    """The original tumours: mask, 6-connected components and their count."""
    old = lits117.label == 2
    components, n6 = ndimage.label(old)
    n26 = cc3d.connected_components(old.astype(np.uint8), connectivity=26, return_N=True)[1]
    return old, components, n6, n26


def test_lits_has_about_70_tumours(lits_tumours, lits117):
    old, _, n6, n26 = lits_tumours
    assert 60 <= n26 <= 85 and n6 >= n26
    assert (lits117.label == 1).sum() > 100_000


@pytest.mark.parametrize("size", ["small", "tiny"])
@pytest.mark.parametrize("seed", SEEDS)
def test_lits_new_lesions_keep_and_avoid_the_original_tumours(lits117, lits_host, lits_tumours, size, seed):
    case = lits117
    old, _, _, n_old = lits_tumours
    result = lits_host.insert(size=size, count=5, seed=seed)
    assert len(result.lesions) == 5
    assert result.volume.dtype == np.int16 and result.label.dtype == np.uint8
    assert_unchanged_outside_boxes(result, case.volume, case.label)

    # Every original tumour voxel keeps its label and its intensity.
    assert np.all(result.label[old] == 2)
    np.testing.assert_array_equal(result.volume[old], case.volume[old])
    new = (result.label == 2) & ~old
    assert np.all(case.label[new] == 1), "a new lesion voxel was not tumour-free liver"
    assert new.sum() == sum(lesion.voxel_count for lesion in result.lesions)
    # No new voxel face-touches an original tumour ...
    assert not np.any(new & ndimage.binary_dilation(old)), "a new lesion touches an original tumour"
    # ... so each original tumour is still exactly one lesion (26-connected, as synth.components
    # defines a lesion: a 6-voxel tiny lesion may hang together only by an edge), and the count
    # grows by 5.
    components, n_new = cc3d.connected_components((result.label == 2).astype(np.uint8), connectivity=26,
                                                  return_N=True)
    assert n_new == n_old + 5
    old_components = cc3d.connected_components(old.astype(np.uint8), connectivity=26)
    for index, piece in enumerate(ndimage.find_objects(old_components), start=1):
        voxels = old_components[piece] == index
        ids = np.unique(components[piece][voxels])
        assert ids.size == 1 and (components == ids[0]).sum() == voxels.sum()

    low, high = SIZE_RANGES[size]
    for lesion in result.lesions:
        assert low <= lesion.diameter_mm < high and lesion.size_class == size
        assert new[lesion.center_voxel]


def test_lits_hypodense_contrast_at_least_20_hu(lits_host):
    """An enhanced liver (median about 118 HU): hypodense lesions drop by 20 HU or more."""
    changes = np.array([lesion.mean_hu_change for seed in range(4)
                        for lesion in lits_host.insert(size="small", count=5, phenotype="hypodense",
                                                       seed=seed).lesions])
    assert changes.size == 20 and np.all(changes <= -20.0)


def test_lits_reused_host_equals_a_fresh_insert_tumor(lits117, lits_host):
    case = lits117
    for seed in (11, 12):  # use the shared host elsewhere first: its caches must not matter
        lits_host.insert(size="medium", count=2, seed=seed)
    reused = lits_host.insert(size="small", count=4, seed=5)
    volume, label = insert_tumor(case.volume, case.label, spacing=case.spacing, size="small", count=4, seed=5)
    np.testing.assert_array_equal(reused.volume, volume)
    np.testing.assert_array_equal(reused.label, label)
    again = prepare_host(case.volume, case.label, spacing=case.spacing).insert(size="small", count=4, seed=5)
    assert again.lesions == reused.lesions


def test_lits_nibabel_images_keep_the_affine(lits117):
    case = lits117
    volume_image, label_image = insert_tumor(case.volume_image, case.label_image, size="tiny", count=3, seed=1)
    np.testing.assert_allclose(volume_image.affine, case.volume_image.affine)
    np.testing.assert_allclose(label_image.affine, case.label_image.affine)
    label = np.asanyarray(label_image.dataobj)
    assert np.all(label[case.label == 2] == 2)
    assert ((label == 2) & (case.label != 2)).sum() > 0
