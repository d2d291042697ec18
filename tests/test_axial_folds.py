"""train.data.axial_folds: k-fold cross-validation of one case along its axial axis."""

import numpy as np
import pytest

from synth.cases import Case
from train.data import axial_folds


def _case(depth=60, spacing=(1.0, 1.0, 2.0)):
    image = np.arange(8 * 8 * depth, dtype=np.float32).reshape(8, 8, depth)
    label = np.ones((8, 8, depth), np.uint8)
    label[2:5, 2:5, 28:33] = 2  # one tumour inside the middle slab
    affine = np.diag([*spacing, 1.0])
    return Case("c", image, label, spacing, affine)


def test_every_slice_is_tested_once_and_never_touches_training():
    case = _case()
    folds = axial_folds(case, folds=3, gap_mm=3.0)  # 2 slices of 2 mm
    assert [f.index for f in folds] == [0, 1, 2]
    tested = np.concatenate([f.test.image[0, 0] for f in folds])
    np.testing.assert_array_equal(tested, case.image[0, 0])  # every slice once, in order
    for fold in folds:
        z_test = set(np.round(fold.test.affine[2, 3] / 2.0 + np.arange(fold.test.image.shape[2])).astype(int))
        for part in fold.train:
            z_train = set(np.round(part.affine[2, 3] / 2.0 + np.arange(part.image.shape[2])).astype(int))
            assert not z_train & z_test
            assert min(abs(a - b) for a in z_train for b in z_test) >= 3  # a gap of 2 slices
            np.testing.assert_array_equal(part.image[0, 0], case.image[0, 0, sorted(z_train)])
    assert [len(f.train) for f in folds] == [1, 2, 1]
    assert folds[1].test.case_id == "c-fold1-test" and folds[1].train[1].case_id == "c-fold1-above"


def test_a_tumour_across_a_cut_is_counted_in_the_notes():
    case = _case()
    label = case.label.copy()
    label[2:5, 2:5, 15:25] = 2  # spans the cut at slice 20 and its gap
    folds = axial_folds(Case("c", case.image, label, case.spacing, case.affine), folds=3, gap_mm=3.0)
    assert "crossing a cut: 1" in folds[0].notes[0]


@pytest.mark.parametrize("folds, gap, words", [(1, 3.0, "folds must be"), (3, -1.0, "gap_mm"),
                                              (20, 3.0, "too few")])
def test_bad_settings_are_named(folds, gap, words):
    with pytest.raises(ValueError, match=words):
        axial_folds(_case(), folds=folds, gap_mm=gap)
