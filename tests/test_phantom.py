"""Tests for synth.phantom: the procedural abdominal CT phantom (CPU, a few seconds)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from synth import phantom as ph_mod
from synth.phantom import Phantom, make_phantom, tissues

DEFAULT_SHAPE = (224, 176, 80)
DEFAULT_SPACING = (1.6, 1.6, 2.5)


def _liver_ml(p: Phantom) -> float:
    return float((p.label > 0).sum() * np.prod(p.spacing) / 1000.0)


def _centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


@pytest.fixture(scope="module")
def default() -> Phantom:
    return make_phantom()


@pytest.fixture(scope="module")
def parts():
    """The internal maps (tissue ids, vessel mask) behind the default phantom."""
    shape, spacing, lesions, seed_seq = ph_mod._validate(DEFAULT_SHAPE, DEFAULT_SPACING, 0, 0)
    return ph_mod._build(shape, spacing, lesions, seed_seq)


@pytest.fixture(scope="module")
def with_lesions() -> Phantom:
    return make_phantom(lesions=3)


# ---- contract -------------------------------------------------------------------------------


def test_contract(default):
    assert isinstance(default, Phantom)
    assert default.volume.shape == DEFAULT_SHAPE and default.volume.dtype == np.int16
    assert default.label.shape == DEFAULT_SHAPE and default.label.dtype == np.uint8
    assert default.spacing == DEFAULT_SPACING
    assert all(type(s) is float for s in default.spacing)
    assert default.affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(default.affine)[:3], DEFAULT_SPACING)
    np.testing.assert_allclose(default.affine[3], [0, 0, 0, 1])
    # Volume centred at the world origin.
    centre_voxel = [(n - 1) / 2 for n in DEFAULT_SHAPE] + [1.0]
    np.testing.assert_allclose(default.affine @ centre_voxel, [0, 0, 0, 1], atol=1e-9)
    assert nib.aff2axcodes(default.affine) == ("R", "A", "S")
    assert default.volume.min() >= -1024 and default.volume.max() <= 3071


def test_internal_build_matches_public(default, parts):
    np.testing.assert_array_equal(parts.volume, default.volume)
    np.testing.assert_array_equal(parts.label, default.label)


def test_labels_and_liver_volume(default):
    assert set(np.unique(default.label).tolist()) == {0, 1}
    ml = _liver_ml(default)
    assert 800 <= ml <= 2500, ml
    # The default field of view holds the whole liver: no liver on any face of the volume.
    lab = default.label
    for face in (lab[0], lab[-1], lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]):
        assert not face.any()


def test_anatomical_orientation(default, parts):
    """RAS+: +x is the subject's Right, +y Anterior, +z Superior."""
    liver = _centroid_mm(default.label == 1, default.affine)
    spleen = _centroid_mm(parts.tissue == tissues.SPLEEN, default.affine)
    spine = _centroid_mm(parts.tissue == tissues.BONE_MARROW, default.affine)
    assert liver[0] > 20 and spleen[0] < -20  # liver on the right, spleen on the left
    assert liver[2] > 0  # upper abdomen: superior half of the field of view
    assert spine[1] < -20 and liver[1] > spine[1]  # spine posterior
    for tid in (tissues.KIDNEY_CORTEX,):
        kidney = _centroid_mm(parts.tissue == tid, default.affine)
        assert kidney[1] < -20  # kidneys are retroperitoneal


# ---- intensities ----------------------------------------------------------------------------


def test_tissue_intensities(parts):
    vol, tissue, label, vessels = parts.volume, parts.tissue, parts.label, parts.vessels

    def median(mask):
        assert mask.sum() > 100
        return float(np.median(vol[mask]))

    parenchyma = (label == 1) & ~ndimage.binary_dilation(vessels, iterations=2)
    assert median(tissue == tissues.AIR) < -900
    assert 80 <= median(parenchyma) <= 140
    assert median(vessels & (label == 1)) > median(parenchyma) + 30
    assert -130 <= median(tissue == tissues.FAT) <= -70
    assert 20 <= median(tissue == tissues.MUSCLE) <= 80
    assert 120 <= median(tissue == tissues.KIDNEY_CORTEX) <= 200
    assert median(tissue == tissues.BONE_CORTEX) > 400
    assert vol.max() > 300
    assert median(tissue == tissues.AORTA) > median(parenchyma)


def test_noise_level(parts):
    """CT-like noise: a flat tissue region shows a standard deviation of about 10-15 HU."""
    fat = ndimage.binary_erosion(parts.tissue == tissues.FAT, iterations=3)
    sd = float(parts.volume[fat].std())
    assert 8 <= sd <= 18, sd


def test_liver_has_texture_and_vessel_tree(parts):
    vessels = parts.vessels & (parts.label == 1)
    ml = vessels.sum() * np.prod(DEFAULT_SPACING) / 1000
    assert 5 <= ml <= 200, ml  # a tree, not a blob, not nothing
    # Branching: the vessels form several connected pieces (branches leaving and re-entering).
    _, n = ndimage.label(vessels)
    assert n >= 3


# ---- lesions --------------------------------------------------------------------------------


def test_lesions_inside_liver(with_lesions, default):
    label = with_lesions.label
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    tumours, n = ndimage.label(label == 2)
    assert n >= 1
    # Every tumour is wrapped in liver: its one-voxel shell is liver or tumour.
    shell = ndimage.binary_dilation(label == 2) & (label != 2)
    assert np.all(label[shell] == 1)
    # Tumours only replace liver, never other tissue.
    assert np.all(default.label[label == 2] == 1)
    # Hypodense: clearly darker than the parenchyma.
    liver_med = np.median(with_lesions.volume[label == 1])
    for i in range(1, n + 1):
        assert np.median(with_lesions.volume[tumours == i]) < liver_med - 20


def test_lesions_change_nothing_else(with_lesions, default):
    near = ndimage.binary_dilation(with_lesions.label == 2, iterations=6)
    changed = with_lesions.volume != default.volume
    assert changed.any()
    assert not (changed & ~near).any()
    np.testing.assert_array_equal(with_lesions.label[~near], default.label[~near])


def test_no_lesions_means_no_tumour_label(default):
    assert not (default.label == 2).any()


# ---- randomness -----------------------------------------------------------------------------


def test_same_seed_same_output(default):
    again = make_phantom(seed=0)
    np.testing.assert_array_equal(again.volume, default.volume)
    np.testing.assert_array_equal(again.label, default.label)


def test_different_seed_different_output():
    a = make_phantom((96, 80, 40), (3.6, 3.6, 5.0), seed=1)
    b = make_phantom((96, 80, 40), (3.6, 3.6, 5.0), seed=2)
    assert not np.array_equal(a.volume, b.volume)
    assert not np.array_equal(a.label, b.label)


def test_generator_seed_accepted():
    a = make_phantom((32, 32, 16), (8.0, 8.0, 10.0), seed=np.random.default_rng(5))
    b = make_phantom((32, 32, 16), (8.0, 8.0, 10.0), seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a.volume, b.volume)


# ---- physical units -------------------------------------------------------------------------


def test_anisotropic_spacing_keeps_physical_anatomy(default):
    """0.7 x 0.7 x 5 mm over (almost) the same field of view: same liver, in mL and in place."""
    aniso = make_phantom((512, 400, 40), (0.7, 0.7, 5.0))
    assert aniso.volume.shape == (512, 400, 40)
    assert abs(_liver_ml(aniso) / _liver_ml(default) - 1) < 0.15
    shift = _centroid_mm(aniso.label > 0, aniso.affine) - _centroid_mm(
        default.label > 0, default.affine
    )
    assert np.all(np.abs(shift) < 4.0), shift


def test_small_field_of_view_crops_anatomy(default):
    small = make_phantom((64, 64, 32), (3.0, 3.0, 3.0))
    assert small.volume.shape == (64, 64, 32) and small.volume.dtype == np.int16
    assert small.spacing == (3.0, 3.0, 3.0)
    # 192 x 192 x 96 mm around the centre: part of the liver only.
    assert 0 < _liver_ml(small) < _liver_ml(default)


@settings(max_examples=6, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 24)] * 3),
    spacing=st.tuples(*[st.floats(0.5, 12.0)] * 3),
)
def test_any_small_grid_works(shape, spacing):
    p = make_phantom(shape, spacing, lesions=1)
    assert p.volume.shape == shape and p.label.shape == shape
    assert p.volume.dtype == np.int16 and p.label.dtype == np.uint8
    assert set(np.unique(p.label).tolist()) <= {0, 1, 2}


# ---- argument checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(shape=(0, 10, 10)), "shape"),
        (dict(shape=(10, 10)), "shape"),
        (dict(shape=(10, 10, 10.5)), "shape"),
        (dict(shape=(10, -1, 10)), "shape"),
        (dict(shape=(True, 10, 10)), "shape"),
        (dict(shape=10), "shape"),
        (dict(spacing=(1.0, 0.0, 1.0)), "spacing"),
        (dict(spacing=(1.0, -1.0, 1.0)), "spacing"),
        (dict(spacing=(1.0, 1.0, math.nan)), "spacing"),
        (dict(spacing=(1.0, 1.0, math.inf)), "spacing"),
        (dict(spacing=(1.0, 1.0)), "spacing"),
        (dict(spacing="1,1,1"), "spacing"),
        (dict(lesions=-1), "lesions"),
        (dict(lesions=1.5), "lesions"),
        (dict(seed=-3), "seed"),
        (dict(seed="zero"), "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, word):
    args = dict(shape=(8, 8, 8), spacing=(2.0, 2.0, 2.0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        make_phantom(args.pop("shape"), args.pop("spacing"), **args)
