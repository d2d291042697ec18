"""train.postprocess: tumour only inside the liver, no specks, no isodense components."""

import numpy as np
import pytest
from scipy import ndimage

from synth.components import lesion_components
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


def test_a_lesion_that_touches_the_liver_is_kept_whole():
    pred = np.zeros((30, 20, 20), np.uint8)
    pred[2:10, 2:18, 2:18] = 1
    pred[8:20, 8:12, 8:12] = 2  # starts inside the liver and reaches 10 voxels out of it
    out = postprocess(pred, 1.0, liver_margin_mm=0.0)
    assert (out[8:20, 8:12, 8:12] == 2).all()


def _liver_with_a_bridge():
    """A 30 mm liver block, and a 16 mm block of look-alike tissue joined to it by a 2 x 2 voxel
    bridge: together one component; the blob holds a predicted tumour."""
    pred = np.zeros((70, 40, 40), np.uint8)
    pred[5:35, 5:35, 5:35] = 1
    pred[35:45, 19:21, 19:21] = 1  # the bridge, 10 voxels long
    pred[45:61, 12:28, 12:28] = 1  # the look-alike blob
    pred[50:54, 18:22, 18:22] = 2
    pred[15:20, 15:20, 15:20] = 2  # a lesion in the liver
    return pred


def test_opening_cuts_tissue_joined_to_the_liver_by_a_thin_bridge():
    pred = _liver_with_a_bridge()
    plain = postprocess(pred, 1.0)
    assert (plain[45:61, 12:28, 12:28] >= 1).all()  # without the opening the blob is "liver"
    out = postprocess(pred, 1.0, liver_opening_mm=2.0)
    assert not out[40:70].any()  # blob, its tumour and the bridge's far part are gone
    assert (out[15:20, 15:20, 15:20] == 2).all()
    # The liver is grown back after the opening: only its edges and corners (rounded by the ball)
    # are lost.
    kept = (out[5:35, 5:35, 5:35] >= 1).mean()
    assert 0.95 < kept < 1.0
    assert (pred == _liver_with_a_bridge()).all()  # input unchanged


def test_opening_is_in_mm_not_voxels():
    pred = _liver_with_a_bridge()
    # At 0.5 mm voxels the 2-voxel bridge is 1 mm thick: a 1 mm opening cuts it; at 2 mm voxels
    # it is 4 mm thick and the same opening leaves it.
    assert not postprocess(pred, 0.5, liver_opening_mm=1.0)[45:61].any()
    assert (postprocess(pred, 2.0, liver_opening_mm=1.0)[45:61, 12:28, 12:28] >= 1).all()


def _image(pred, liver_hu=100.0):
    image = np.full(pred.shape, -50.0, np.float32)
    image[pred >= 1] = liver_hu
    return image


def test_isodense_components_become_liver():
    pred = np.zeros((40, 40, 20), np.uint8)
    pred[2:38, 2:38, 2:18] = 1
    pred[5:10, 5:10, 5:10] = 2  # hypodense, -40 HU of contrast
    pred[15:20, 15:20, 5:10] = 2  # isodense, -3 HU
    pred[25:30, 25:30, 5:10] = 2  # hyperdense, +50 HU
    image = _image(pred)
    image[5:10, 5:10, 5:10] = 60
    image[15:20, 15:20, 5:10] = 97
    image[25:30, 25:30, 5:10] = 150
    out = postprocess(pred, 1.0, image=image, min_contrast_hu=10.0)
    assert (out[5:10, 5:10, 5:10] == 2).all() and (out[25:30, 25:30, 5:10] == 2).all()
    assert (out[15:20, 15:20, 5:10] == 1).all()
    assert (postprocess(pred, 1.0, image=image)[15:20, 15:20, 5:10] == 2).all()  # off by default


def test_contrast_rule_on_real_ct_keeps_annotated_lesions_and_drops_isodense_blobs(lits117):
    """On LiTS-117's expert labels the 10 HU rule keeps nearly every annotated lesion, and it
    drops cubes of healthy liver labelled as tumour."""
    label = np.asarray(lits117.label, np.uint8)
    _, n_real = lesion_components(label == 2)
    kept = postprocess(label, lits117.spacing, largest_liver=False, image=lits117.volume, min_contrast_hu=10.0)
    assert lesion_components(kept == 2)[1] >= n_real - 2
    depth = ndimage.distance_transform_edt(label == 1)
    centres = np.argwhere(depth > 6)[:: 997][:10]  # deep in healthy liver, spread over the organ
    pred = label.copy()
    for x, y, z in centres:
        pred[x - 2:x + 3, y - 2:y + 3, z - 2:z + 3] = 2
    out = postprocess(pred, lits117.spacing, largest_liver=False, image=lits117.volume, min_contrast_hu=10.0)
    for x, y, z in centres:
        assert (out[x - 2:x + 3, y - 2:y + 3, z - 2:z + 3] == 1).all()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_tumor_mm3"):
        postprocess(_prediction(), 1.0, min_tumor_mm3=-1)
    with pytest.raises(ValueError, match="liver_opening_mm"):
        postprocess(_prediction(), 1.0, liver_opening_mm=float("nan"))
    with pytest.raises(ValueError, match="pass image="):
        postprocess(_prediction(), 1.0, min_contrast_hu=10.0)
    with pytest.raises(ValueError, match="image shape"):
        postprocess(_prediction(), 1.0, min_contrast_hu=10.0, image=np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="liver mask shape"):
        postprocess(_prediction(), 1.0, liver=np.ones((2, 2, 2), bool))
