"""Bad input to the public functions: each class of mistake raises the right exception with a
message that names the problem, and never touches the caller's arrays."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synth import LesionPlacementError, insert_tumor, prepare_host, synthesize

SHAPE = (24, 24, 16)
SPACING = (2.0, 2.0, 2.0)


def make_case(shape=SHAPE, dtype=np.int16):
    """A small writable CT (liver ~110 HU with noise in a -100 HU body) and its 0/1 liver mask."""
    rng = np.random.default_rng(0)
    volume = np.full(shape, -100.0) + rng.normal(0, 12, size=shape)
    mask = np.zeros(shape, np.uint8)
    mask[3:-3, 3:-3, 2:-2] = 1
    volume[mask == 1] += 210.0
    return volume.astype(dtype), mask


@pytest.fixture
def case():
    volume, mask = make_case()
    yield volume, mask
    # Every test here must leave the caller's arrays as they were.
    fresh_volume, fresh_mask = make_case()
    if volume.shape == fresh_volume.shape and volume.dtype == fresh_volume.dtype:
        np.testing.assert_array_equal(volume, fresh_volume, err_msg="a failed call modified the volume")
    if mask.shape == fresh_mask.shape and mask.dtype == fresh_mask.dtype:
        np.testing.assert_array_equal(mask, fresh_mask, err_msg="a failed call modified the mask")


def call(volume, mask, **options):
    options.setdefault("spacing", SPACING)
    options.setdefault("size", "small")
    options.setdefault("count", 1)
    options.setdefault("seed", 0)
    return insert_tumor(volume, mask, **options)


def test_the_valid_case_works(case):
    volume, mask = case
    out_volume, out_label = call(volume, mask)
    assert (out_label == 2).sum() > 0 and out_volume.dtype == volume.dtype


# --- arrays ---------------------------------------------------------------------------------


def test_shape_mismatch(case):
    volume, mask = case
    with pytest.raises(ValueError, match=r"mask shape \(24, 24, 15\) does not match volume shape \(24, 24, 16\)"):
        call(volume, mask[:, :, :-1])


def test_empty_liver(case):
    volume, _ = case
    mask = np.zeros(SHAPE, np.uint8)
    with pytest.raises(ValueError, match="mask is empty: it has no liver voxels"):
        call(volume, mask)
    np.testing.assert_array_equal(mask, 0)


def test_liver_entirely_tumour(case):
    volume, mask = case
    all_tumour = mask * 2
    with pytest.raises(ValueError, match=r"no tumour-free liver voxels \(label 1\)"):
        call(volume, all_tumour)


@pytest.mark.parametrize("bad", [3, -1, 255])
def test_label_values_outside_0_1_2(case, bad):
    volume, mask = case
    wrong = mask.astype(np.int16)
    wrong[5, 5, 5] = bad
    before = wrong.copy()
    with pytest.raises(ValueError, match=rf"label values outside \{{0, 1, 2\}}: found .*{bad}"):
        call(volume, wrong)
    np.testing.assert_array_equal(wrong, before)


def test_non_integer_float_mask(case):
    volume, mask = case
    soft = mask.astype(np.float32) * 0.7  # a probability map, not labels
    with pytest.raises(ValueError, match="mask has non-integer values"):
        call(volume, soft)


def test_nan_in_float_mask(case):
    volume, mask = case
    bad = mask.astype(np.float64)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="mask contains NaN or infinite values"):
        call(volume, bad)


@pytest.mark.parametrize("value, name", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_volume(case, value, name):
    _, mask = case
    volume = make_case(dtype=np.float32)[0]
    volume[10, 10, 8] = value
    volume[11, 10, 8] = value
    before = volume.copy()
    with pytest.raises(ValueError, match="volume contains 2 NaN or infinite values"):
        call(volume, mask)
    np.testing.assert_array_equal(volume, before)


@pytest.mark.parametrize("ndim", [2, 4])
def test_volume_not_3d(case, ndim):
    volume, mask = case
    bad = volume[:, :, 0] if ndim == 2 else volume[..., None]
    with pytest.raises(ValueError, match=rf"volume must be 3-D \(X, Y, Z\); got {ndim}-D"):
        call(bad, mask)


def test_mask_not_3d(case):
    volume, mask = case
    with pytest.raises(ValueError, match=r"mask must be 3-D \(X, Y, Z\); got 2-D"):
        call(volume, mask[:, :, 0])


def test_empty_volume():
    volume, mask = np.zeros((0, 4, 4), np.int16), np.zeros((0, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="volume is empty"):
        call(volume, mask)


@pytest.mark.parametrize("make_bad", [
    lambda v: v > 0,                                  # bool
    lambda v: v.astype(np.complex64),                 # complex
    lambda v: v.astype(object),                       # object
    lambda v: v.astype(str),                          # strings
], ids=["bool", "complex", "object", "str"])
def test_volume_dtype_not_numeric(case, make_bad):
    volume, mask = case
    with pytest.raises(TypeError, match=r"volume must be a numeric CT array .* got dtype"):
        call(make_bad(volume), mask)


@pytest.mark.parametrize("dtype", [np.complex128, object])
def test_mask_dtype_wrong(case, dtype):
    volume, mask = case
    with pytest.raises(TypeError, match="mask must be a bool or integer label map; got dtype"):
        call(volume, mask.astype(dtype))


# --- spacing --------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(2.0, 0.0, 2.0), (2.0, 2.0, -1.0), (-2.0, -2.0, -2.0)])
def test_non_positive_spacing(case, spacing):
    volume, mask = case
    with pytest.raises(ValueError, match=r"spacing must be positive and finite \(mm\)"):
        call(volume, mask, spacing=spacing)


@pytest.mark.parametrize("spacing", [(2.0, np.nan, 2.0), (np.inf, 2.0, 2.0)])
def test_non_finite_spacing(case, spacing):
    volume, mask = case
    with pytest.raises(ValueError, match="spacing must be positive and finite"):
        call(volume, mask, spacing=spacing)


@pytest.mark.parametrize("spacing", [(2.0, 2.0), (2.0, 2.0, 2.0, 1.0)])
def test_wrong_number_of_spacing_values(case, spacing):
    volume, mask = case
    with pytest.raises(ValueError, match=rf"spacing must have 3 values .* got {len(spacing)}"):
        call(volume, mask, spacing=spacing)


def test_spacing_not_numbers(case):
    volume, mask = case
    with pytest.raises(TypeError, match="spacing must be three numbers in mm"):
        call(volume, mask, spacing=("a", "b", "c"))


@pytest.mark.parametrize("spacing", [0, 0.0, -1.0])
def test_prepare_host_rejects_scalar_non_positive_spacing(case, spacing):
    volume, mask = case
    with pytest.raises(ValueError, match="spacing must be positive and finite"):
        prepare_host(volume, mask, spacing=spacing)


@pytest.mark.parametrize("spacing, match", [(0, "positive and finite"), (0.0, "positive and finite"),
                                            ((), "3 values"), ([], "3 values")],
                         ids=["int0", "float0", "empty-tuple", "empty-list"])
def test_insert_tumor_rejects_falsy_spacing(case, spacing, match):
    """spacing=0 or () is bad input, not 'spacing not given' (no silent 1 mm or image zooms)."""
    volume, mask = case
    with pytest.raises(ValueError, match=f"spacing must .*{match}|spacing must have {match}"):
        call(volume, mask, spacing=spacing)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="spacing must"):
        insert_tumor(nib.Nifti1Image(volume, affine), nib.Nifti1Image(mask, affine), spacing=spacing,
                     size="small", count=1, seed=0)


def test_insert_tumor_accepts_numpy_array_spacing(case):
    volume, mask = case
    reference = call(volume, mask, spacing=(2.0, 2.0, 2.0))
    result = call(volume, mask, spacing=np.array([2.0, 2.0, 2.0]))  # e.g. nib.affines.voxel_sizes(affine)
    np.testing.assert_array_equal(result[0], reference[0])
    np.testing.assert_array_equal(result[1], reference[1])


def test_size_not_representable_at_the_spacing():
    # At 6 mm isotropic one voxel is already a 7.4 mm sphere: no voxel count is 3-5 mm.
    volume, mask = make_case()
    with pytest.raises(ValueError, match=r"a lesion of 3-5 mm cannot be drawn at this spacing"):
        call(volume, mask, spacing=(6.0, 6.0, 6.0), size="tiny")


# --- liver too small ------------------------------------------------------------------------


def test_liver_too_small_for_the_volume_of_the_request():
    volume, _ = make_case()
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:13, 10:13, 7:10] = 1  # 27 voxels of 1 mm^3: far less than one 20 mm lesion
    with pytest.raises(LesionPlacementError, match=r"count 1 is impossible: .* lesions of at least 20 mm"):
        call(volume, mask, spacing=(1.0, 1.0, 1.0), size="large")


def test_liver_too_thin_for_a_large_lesion():
    # A 2-voxel slab: enough volume for a 20 mm lesion, but no room for one anywhere.
    volume = np.full((96, 96, 8), 110, np.int16)
    mask = np.zeros(volume.shape, np.uint8)
    mask[:, :, 3:5] = 1
    with pytest.raises(LesionPlacementError, match=r"could not place lesion 1 of 1 \(large"):
        call(volume, mask, spacing=(1.0, 1.0, 1.0), size="large")
    assert issubclass(LesionPlacementError, ValueError)


def test_too_many_lesions_for_the_liver(case):
    volume, mask = case
    with pytest.raises(LesionPlacementError, match="impossible|could not place"):
        call(volume, mask, size="medium", count=500)


# --- count, size, phenotype -----------------------------------------------------------------


@pytest.mark.parametrize("count, match", [
    (-1, r"count must satisfy 0 <= min <= max"),
    ((3, 1), r"count must satisfy 0 <= min <= max"),
    ((-2, 1), r"count must satisfy 0 <= min <= max"),
    (1001, r"count 1001 is impossible: at most 1000"),
    ((1, 5000), r"count 5000 is impossible"),
])
def test_impossible_count_values(case, count, match):
    volume, mask = case
    with pytest.raises(ValueError, match=match):
        call(volume, mask, count=count)


@pytest.mark.parametrize("count, match", [
    (2.5, r"count must be an int or a \(min, max\) pair"),
    ((1, 2.5), r"count must be whole numbers"),
    ((True, 2), r"count must be whole numbers"),
    ("3", r"count must be"),
    ((1, 2, 3), r"count must be an int or a \(min, max\) pair"),
])
def test_non_integer_count(case, count, match):
    volume, mask = case
    with pytest.raises(TypeError, match=match):
        call(volume, mask, count=count)


@pytest.mark.parametrize("size", ["huge", "Small", ""])
def test_unknown_size_name(case, size):
    volume, mask = case
    with pytest.raises(ValueError, match=rf"unknown size {size!r}; use one of tiny, small, medium, large"):
        call(volume, mask, size=size)


@pytest.mark.parametrize("size", [(10.0, 5.0), (-5.0, 10.0), (0.0, 10.0), (5.0, float("nan"))])
def test_bad_size_range(case, size):
    volume, mask = case
    with pytest.raises(ValueError, match=r"size range must satisfy 0 < min_mm <= max_mm"):
        call(volume, mask, size=size)


@pytest.mark.parametrize("size", [5.0, (5.0,), ("a", "b"), None])
def test_size_of_the_wrong_type(case, size):
    volume, mask = case
    with pytest.raises(TypeError, match=r"size must be a class name, 'mix' or a \(min_mm, max_mm\) pair"):
        call(volume, mask, size=size)


def test_unknown_phenotype(case):
    volume, mask = case
    with pytest.raises(ValueError, match=r"unknown phenotype 'cystic'; use one of hypodense"):
        call(volume, mask, phenotype="cystic")


@pytest.mark.parametrize("phenotype, error, match", [
    ({"hypodense": 1.0, "cystic": 1.0}, ValueError, r"unknown phenotype\(s\) \['cystic'\]"),
    ({"hypodense": -1.0, "hyperdense": 2.0}, ValueError, "phenotype weights must be non-negative"),
    ({"hypodense": 0.0}, ValueError, "positive sum"),
    (3, TypeError, "phenotype must be a name, 'mix' or a dict of weights"),
])
def test_bad_phenotype_weights(case, phenotype, error, match):
    volume, mask = case
    with pytest.raises(error, match=match):
        call(volume, mask, phenotype=phenotype)


# --- randomness -----------------------------------------------------------------------------


def test_seed_and_rng_both_given(case):
    volume, mask = case
    with pytest.raises(ValueError, match="give either seed or rng, not both"):
        call(volume, mask, seed=1, rng=np.random.default_rng(1))


@pytest.mark.parametrize("rng, name", [(np.random.RandomState(0), "RandomState"), (42, "int"),
                                        (np.random.default_rng(0).bit_generator, "PCG64")])
def test_rng_of_the_wrong_type(case, rng, name):
    volume, mask = case
    with pytest.raises(TypeError, match=rf"rng must be a numpy.random.Generator; got {name}"):
        call(volume, mask, seed=None, rng=rng)


@pytest.mark.parametrize("seed, name", [(1.5, "float"), ("7", "str")])
def test_seed_of_the_wrong_type(case, seed, name):
    volume, mask = case
    with pytest.raises(TypeError, match=rf"seed must be an int; got {name}"):
        call(volume, mask, seed=seed)


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize("options, error, match", [
    ({"edge_mm": (2.0, 1.0)}, ValueError, r"edge_mm must satisfy 0 < min <= max"),
    ({"edge_mm": (0.0, 1.0)}, ValueError, r"edge_mm must satisfy 0 < min <= max"),
    ({"edge_mm": "soft"}, TypeError, r"edge_mm must be a \(min, max\) pair of numbers"),
    ({"subcapsular_probability": 1.5}, ValueError, r"subcapsular_probability must be in \[0, 1\]"),
    ({"max_attempts": 0}, ValueError, "max_attempts must be at least 1"),
    ({"lesion_count": 3}, TypeError, "unexpected keyword argument 'lesion_count'"),
])
def test_bad_options(case, options, error, match):
    volume, mask = case
    with pytest.raises(error, match=match):
        call(volume, mask, **options)


# --- nibabel images -------------------------------------------------------------------------


def test_images_with_inconsistent_affines(case):
    volume, mask = case
    ct = nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0]))
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[:3, 3] = (10.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="volume and mask images have inconsistent affines"):
        insert_tumor(ct, nib.Nifti1Image(mask, shifted), size="small", count=1, seed=0)
    with pytest.raises(ValueError, match="inconsistent affines"):  # other voxel sizes
        insert_tumor(ct, nib.Nifti1Image(mask, np.diag([1.0, 1.0, 1.0, 1.0])), size="small", count=1, seed=0)


def test_mix_of_image_and_array(case):
    volume, mask = case
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    with pytest.raises(TypeError, match="give volume and mask both as arrays or both as nibabel images"):
        insert_tumor(nib.Nifti1Image(volume, affine), mask, size="small", count=1, seed=0)
    with pytest.raises(TypeError, match="both as arrays or both as nibabel images"):
        insert_tumor(volume, nib.Nifti1Image(mask, affine), size="small", count=1, seed=0)


def test_image_with_wrong_mask_values_is_checked_like_an_array(case):
    volume, mask = case
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"label values outside \{0, 1, 2\}"):
        insert_tumor(nib.Nifti1Image(volume, affine), nib.Nifti1Image(mask * 4, affine), size="small", seed=0)


# --- the prepared-host path checks the same things ------------------------------------------


def test_prepare_host_and_synthesize_check_their_input(case):
    volume, mask = case
    with pytest.raises(ValueError, match="does not match volume shape"):
        prepare_host(volume, mask[1:], spacing=SPACING)
    host = prepare_host(volume, mask, spacing=SPACING)
    with pytest.raises(ValueError, match="unknown size"):
        synthesize(host, size="giant")
    with pytest.raises(ValueError, match="give either seed or rng"):
        host.insert(seed=0, rng=np.random.default_rng(0))
    # A failed call leaves the host usable.
    assert len(host.insert(size="small", count=1, seed=0).lesions) == 1


def test_synthesize_chunk_of_an_unlabelled_case_names_the_missing_label(tmp_path):
    """An unlabelled manifest row fails each variant with a sentence, not a TypeError about None."""
    from synth.cases import CaseFiles
    from synth.dataset import ChunkJob, run_chunk
    from synth.options import SynthesisOptions

    job = ChunkJob(0, CaseFiles("a", tmp_path / "a.nii.gz", None), (0, 1), tmp_path / "out", SynthesisOptions(), 0)
    result = run_chunk(job)
    assert result.done == []
    assert result.failed == [(v, "case 'a' has no label file; a labelled case is needed") for v in (0, 1)]
