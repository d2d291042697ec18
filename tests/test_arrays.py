"""The small array helpers agree with scipy's generic versions."""

import numpy as np
from scipy import ndimage

from synth._arrays import bounding_slices, dilate_cube


def test_dilate_cube_equals_binary_dilation_with_the_full_cube():
    rng = np.random.default_rng(0)
    mask = rng.random((9, 11, 7)) > 0.93
    expected = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))
    assert np.array_equal(dilate_cube(mask), expected)
    assert not np.array_equal(dilate_cube(mask), mask)


def test_bounding_slices_holds_every_voxel_and_nothing_more():
    mask = np.zeros((10, 10, 10), bool)
    mask[2, 3, 4] = mask[5, 7, 6] = True
    assert bounding_slices(mask) == (slice(2, 6), slice(3, 8), slice(4, 7))
    assert bounding_slices(np.zeros((3, 3, 3), bool)) is None
