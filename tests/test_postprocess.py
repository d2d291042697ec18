"""train.postprocess: tumour only inside the liver, no specks."""

import numpy as np
import pytest

from train.postprocess import postprocess


def _prediction():
    pred = np.zeros((40, 40, 20), np.uint8)
    pred[5:30, 5:30, 2:18] = 1  # the liver
    pred[10:16, 10:16, 5:11] = 2  # a 6 mm lesion inside it (216 mm^3 at 1 mm)
    pred[20, 20, 10] = 2  # a one-voxel speck inside the liver
    pred[34:37, 34:37, 5:8] = 1  # a stray liver island
    pred[35, 35, 6] = 2  # tumour inside the island
    pred[2, 38, 1] = 2  # tumour in the background, far from any liver
    return pred


def test_largest_liver_keeps_tumour_inside_it_only():
    pred = _prediction()
    out = postprocess(pred, (1.0, 1.0, 1.0))
    assert out[12, 12, 7] == 2 and out[20, 20, 10] == 2  # inside the liver: kept
    assert out[35, 35, 6] == 0 and out[34, 34, 5] == 0  # the island, tumour and liver, goes
    assert out[2, 38, 1] == 0
    assert (pred == _prediction()).all()  # input unchanged


def test_specks_below_the_size_become_liver():
    out = postprocess(_prediction(), (1.0, 1.0, 1.0), min_tumor_mm3=10.0)
    assert out[20, 20, 10] == 1 and out[12, 12, 7] == 2


def test_a_given_liver_replaces_the_predicted_one():
    pred = _prediction()
    liver = np.zeros(pred.shape, bool)
    liver[30:40, 30:40, 0:10] = True  # the "island" is the true liver here
    out = postprocess(pred, (1.0, 1.0, 1.0), liver=liver, liver_margin_mm=0.0)
    assert out[35, 35, 6] == 2 and out[12, 12, 7] == 0
    assert (out[liver] >= 1).all() and not (out[~liver] == 1).any()


def test_margin_keeps_tumour_bulging_out_of_the_liver():
    pred = np.zeros((20, 20, 20), np.uint8)
    pred[2:10, 2:18, 2:18] = 1
    pred[11:12, 8:10, 8:10] = 2  # outside the liver, one voxel away from it
    assert (postprocess(pred, 1.0, liver_margin_mm=2.0)[11, 8:10, 8:10] == 2).all()
    assert (postprocess(pred, 1.0, liver_margin_mm=0.0)[11, 8:10, 8:10] == 0).all()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_tumor_mm3"):
        postprocess(_prediction(), 1.0, min_tumor_mm3=-1)
    with pytest.raises(ValueError, match="liver mask shape"):
        postprocess(_prediction(), 1.0, liver=np.ones((2, 2, 2), bool))
