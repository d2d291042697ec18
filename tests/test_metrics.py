"""Lesion-wise evaluator (train.metrics): hand-made cases with known answers, empty-case rules,
and a cross-check of Dice, ASSD and HD95 against MONAI on random blobs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from train.metrics import (
    aggregate,
    assd_hd95,
    equivalent_diameter_mm,
    evaluate_case,
    evaluate_cases,
)

SHAPE = (64, 64, 64)


def ball(shape, center, radius_mm, spacing=(1.0, 1.0, 1.0)):
    """Boolean ball of ``radius_mm`` around the voxel ``center``, on a grid with ``spacing``."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, spacing))
    return d2 <= radius_mm**2


def label_map(*masks, label=2):
    out = np.zeros(masks[0].shape, np.uint8)
    out[np.logical_or.reduce(masks)] = label
    return out


def strict_json(obj):
    return json.loads(json.dumps(obj, allow_nan=False))


# --- the main hand-made case ------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_lesions():
    big = ball(SHAPE, (16, 16, 16), 8.0)  # d ~ 16 mm, found by a small blob only
    small = ball(SHAPE, (48, 16, 16), 4.0)  # d ~ 8 mm, missed
    huge = ball(SHAPE, (32, 44, 40), 12.0)  # d ~ 24 mm, matched exactly
    blob = ball(SHAPE, (16, 16, 16), 2.0)  # inside `big`
    fp = ball(SHAPE, (54, 54, 8), 3.0)  # overlaps nothing
    gt = label_map(big, small, huge)
    gt[(gt == 0) & ball(SHAPE, (32, 32, 32), 30.0)] = 1  # a liver label around; it must be ignored
    pred = label_map(blob, huge, fp)
    res = evaluate_case(pred, gt, spacing=1.0, case_id="c")
    return res, dict(big=big, small=small, huge=huge, blob=blob, fp=fp)


def test_detection_and_iou50(three_lesions):
    res, m = three_lesions
    assert res.n_lesions == 3 and res.n_pred_components == 3 and res.false_positives == 1
    by_size = {round(les.diameter_mm / 8): les for les in res.lesions}  # 1: small, 2: big, 3: huge
    big, small, huge = by_size[2], by_size[1], by_size[3]
    assert big.detected and not big.detected_iou50
    nb, nblob = int(m["big"].sum()), int(m["blob"].sum())
    assert big.dice == pytest.approx(2 * nblob / (nb + nblob))
    assert big.iou == pytest.approx(nblob / nb)
    assert not small.detected and not small.detected_iou50 and small.dice == 0.0
    assert huge.detected and huge.detected_iou50 and huge.dice == 1.0 and huge.iou == 1.0
    assert res.sensitivity == pytest.approx(2 / 3)
    assert res.sensitivity_iou50 == pytest.approx(1 / 3)


def test_diameters_and_bins(three_lesions):
    res, m = three_lesions
    for les in res.lesions:
        assert les.diameter_mm == pytest.approx((6 * les.voxels / math.pi) ** (1 / 3))
        assert les.radius_mm == pytest.approx(les.diameter_mm / 2)
    assert sorted(round(les.diameter_mm) for les in res.lesions) == [8, 16, 24]
    assert res.sensitivity_by_diameter == {"<10": 0.0, "10-20": 1.0, ">=20": 1.0}
    assert res.sensitivity_iou50_by_diameter == {"<10": 0.0, "10-20": 0.0, ">=20": 1.0}
    assert res.sensitivity_by_radius == {
        "[0,5)": 0.0, "[5,10)": 1.0, "[10,15)": 1.0, "[15,20)": None, ">=20": None
    }


def test_case_dice_and_json(three_lesions):
    res, m = three_lesions
    gt = m["big"] | m["small"] | m["huge"]
    pred = m["blob"] | m["huge"] | m["fp"]
    expected = 2 * (gt & pred).sum() / (gt.sum() + pred.sum())
    assert res.dice == pytest.approx(expected)
    d = strict_json(res.to_dict())
    assert {"dice", "false_positives", "sensitivity_by_diameter", "sensitivity_by_radius"} <= set(d)
    assert {"diameter_mm", "detected", "detected_iou50", "dice"} <= set(d["lesions"][0])


# --- matching rules -----------------------------------------------------------------------------


def test_partial_overlap_dice_uses_whole_component():
    gt = np.zeros((12, 12, 12), bool)
    pred = np.zeros_like(gt)
    gt[2:6, 2:6, 2:6] = True
    pred[4:8, 2:6, 2:6] = True  # 64 voxels, 32 of them inside the lesion
    (les,) = evaluate_case(pred, gt).lesions
    assert les.detected and not les.detected_iou50
    assert les.dice == pytest.approx(0.5) and les.iou == pytest.approx(1 / 3)


def test_iou50_merges_components():
    gt = np.zeros((14, 8, 8), bool)
    gt[1:11, 2:6, 2:6] = True  # 160 voxels
    pred = np.zeros_like(gt)
    pred[1:5, 2:6, 2:6] = True  # 64
    pred[7:11, 2:6, 2:6] = True  # 64, separate component
    res = evaluate_case(pred, gt)
    (les,) = res.lesions
    assert res.n_pred_components == 2 and les.matched_components == 2
    assert les.iou == pytest.approx(128 / 160) and les.detected_iou50  # each alone: 0.4
    assert res.false_positives == 0


def test_26_connectivity():
    gt = np.zeros((5, 5, 5), bool)
    gt[1, 1, 1] = gt[2, 2, 2] = True  # corner-touching: one lesion
    gt[4, 4, 4] = True  # separate
    res = evaluate_case(gt, gt)
    assert res.n_lesions == 2 and sorted(lesion.voxels for lesion in res.lesions) == [1, 2]


def test_component_overlapping_two_lesions_is_not_fp():
    gt = np.zeros((12, 6, 6), bool)
    gt[1:4, 1:4, 1:4] = gt[7:10, 1:4, 1:4] = True
    pred = np.zeros_like(gt)
    pred[2:9, 2, 2] = True  # one bar through both lesions
    res = evaluate_case(pred, gt)
    assert res.n_lesions == 2 and res.false_positives == 0
    assert all(lesion.detected and lesion.matched_components == 1 for lesion in res.lesions)


def test_tumour_label_option():
    gt = np.zeros((6, 6, 6), np.int16)
    gt[1:3, 1:3, 1:3] = 5
    gt[4, 4, 4] = 2
    res = evaluate_case(gt, gt, tumor_label=5)
    assert res.n_lesions == 1 and res.lesions[0].voxels == 8


# --- anisotropic spacing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spacing, volume, bin_",
    [((1, 1, 1), 1000.0, "10-20"), ((1, 1, 3), 3000.0, "10-20"), ((2, 2, 3), 12000.0, ">=20"),
     ((0.5, 0.5, 1), 250.0, "<10")],
)
def test_spacing_changes_diameter(spacing, volume, bin_):
    gt = np.zeros((14, 14, 14), bool)
    gt[2:12, 2:12, 2:12] = True
    res = evaluate_case(gt, gt, spacing=spacing)
    (les,) = res.lesions
    assert les.volume_mm3 == pytest.approx(volume)
    assert les.diameter_mm == pytest.approx(equivalent_diameter_mm(volume))
    assert res.sensitivity_by_diameter[bin_] == 1.0
    assert [k for k, v in res.sensitivity_by_diameter.items() if v is not None] == [bin_]


def test_distances_known_answer_anisotropic():
    gt = np.zeros((4, 4, 6), bool)
    pred = np.zeros_like(gt)
    gt[1, 1, 1] = True
    pred[1, 1, 3] = True  # two slices apart at 2.5 mm
    assd, hd95 = assd_hd95(pred, gt, (1.0, 1.0, 2.5))
    assert assd == pytest.approx(5.0) and hd95 == pytest.approx(5.0)
    assert assd_hd95(gt, gt, (1.0, 1.0, 2.5)) == (0.0, 0.0)


def test_distances_shifted_slab():
    # Two 6-voxel-thick slabs filling the plane, shifted by one voxel along z (3 mm): the surface
    # is the two faces (plus the array border); every surface voxel is 0 or 3 mm from the other.
    gt = np.zeros((8, 8, 12), bool)
    pred = np.zeros_like(gt)
    gt[:, :, 2:8] = True
    pred[:, :, 3:9] = True
    assd, hd95 = assd_hd95(pred, gt, (1.0, 1.0, 3.0))
    assert 0 < assd < 3.0 and hd95 == pytest.approx(3.0)


# --- empty cases ----------------------------------------------------------------------------


def test_both_empty():
    z = np.zeros((8, 8, 8), np.uint8)
    res = evaluate_case(z, z)
    assert res.dice == 1.0 and res.n_lesions == 0 and res.false_positives == 0
    assert res.assd_mm == 0.0 and res.hd95_mm == 0.0
    assert res.sensitivity is None and res.sensitivity_iou50 is None
    assert set(res.sensitivity_by_diameter.values()) == {None}
    strict_json(res.to_dict())


def test_gt_empty_prediction_not():
    z = np.zeros((12, 12, 12), np.uint8)
    pred = z.copy()
    pred[1:3, 1:3, 1:3] = 2
    pred[8:10, 8:10, 8:10] = 2
    res = evaluate_case(pred, z)
    assert res.dice == 0.0 and res.false_positives == 2 and res.n_lesions == 0
    assert res.sensitivity is None and res.assd_mm is None and res.hd95_mm is None
    strict_json(res.to_dict())


def test_prediction_empty_gt_not():
    z = np.zeros((12, 12, 12), np.uint8)
    gt = z.copy()
    gt[1:3, 1:3, 1:3] = 2
    res = evaluate_case(z, gt)
    assert res.dice == 0.0 and res.false_positives == 0 and res.sensitivity == 0.0
    assert res.sensitivity_by_diameter == {"<10": 0.0, "10-20": None, ">=20": None}
    assert res.lesions[0].dice == 0.0 and not res.lesions[0].detected
    assert res.assd_mm is None and res.hd95_mm is None
    strict_json(res.to_dict())


# --- aggregation ----------------------------------------------------------------------------


def test_evaluate_cases_aggregates():
    a = np.zeros((10, 10, 10), bool)
    a[1:5, 1:5, 1:5] = True  # 64 voxels
    b = np.zeros_like(a)
    b[1:3, 1:5, 1:5] = True  # 32 voxels inside a
    z = np.zeros_like(a)
    out = evaluate_cases([a, b, z, z], [a, a, z, a], spacings=[1, 1, 1, (1, 1, 2)],
                         case_ids=["exact", "half", "empty", "missed"])
    strict_json(out)
    s = out["summary"]
    assert [c["case_id"] for c in out["cases"]] == ["exact", "half", "empty", "missed"]
    assert s["n_cases"] == 4 and s["n_lesions"] == 3 and s["detected"] == 2
    assert s["detected_iou50"] == 1  # "half": IoU 0.5 exactly is not > 0.5
    # global Dice: intersections 64 + 32 + 0 + 0, volumes 128 + 96 + 0 + 64.
    assert s["global_dice"] == pytest.approx(2 * 96 / 288)
    assert s["mean_dice"] == pytest.approx((1 + 2 * 32 / 96 + 1 + 0) / 4)
    assert s["distance_undefined_cases"] == 1
    assert s["by_diameter"]["<10"] == {"detected": 2, "lesions": 3, "sensitivity": 2 / 3}
    assert s["by_diameter"][">=20"] == {"detected": 0, "lesions": 0, "sensitivity": None}
    assert s["false_positives"] == 0 and s["false_positives_per_case"] == 0.0


def test_aggregate_of_nothing():
    s = aggregate([])
    assert s["n_cases"] == 0 and s["global_dice"] is None and s["sensitivity"] is None


def test_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate_case(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), spacing=(1, 1))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="lengths|predictions"):
        evaluate_cases([np.zeros((4, 4, 4))], [])


# --- invariants and the MONAI cross-check ------------------------------------------------------


def random_blobs(rng, shape=(40, 36, 32), sigma=2.5, level=0.6):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > level * field.std()


@pytest.mark.parametrize("seed", range(6))
def test_invariants_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_blobs(rng), random_blobs(rng)
    res = evaluate_case(pred, gt, spacing=tuple(rng.uniform(0.5, 3.0, 3)))
    for les in res.lesions:
        assert 0.0 <= les.dice <= 1.0 and 0.0 <= les.iou <= 1.0
        assert les.detected or not les.detected_iou50
        assert les.detected == (les.matched_components > 0)
    assert 0 <= res.false_positives <= res.n_pred_components
    assert sum(lesion.voxels for lesion in res.lesions) == res.gt_voxels


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI-internal deprecation notice
@pytest.mark.parametrize("seed", range(8))
def test_matches_monai(seed):
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(100 + seed)
    gt, pred = random_blobs(rng), random_blobs(rng)
    if seed % 2:  # half the cases: a prediction close to the truth
        pred = ndimage.binary_dilation(gt, iterations=1) & ~random_blobs(rng, sigma=1.0, level=1.5)
    spacing = tuple(float(s) for s in rng.uniform(0.6, 3.0, 3))
    res = evaluate_case(pred, gt, spacing=spacing)

    def onehot(m):
        t = torch.from_numpy(m.astype(np.float32))
        return torch.stack([1 - t, t])[None]

    yp, y = onehot(pred), onehot(gt)
    dice = monai_metrics.compute_dice(yp, y, include_background=False).item()
    assd = monai_metrics.compute_average_surface_distance(
        yp, y, include_background=False, symmetric=True, spacing=spacing
    ).item()
    hd95 = monai_metrics.compute_hausdorff_distance(
        yp, y, include_background=False, percentile=95, spacing=spacing
    ).item()
    # MONAI works in float32; ours in float64. Same surface, same distances, same percentile rule.
    assert res.dice == pytest.approx(dice, rel=1e-5)
    assert res.assd_mm == pytest.approx(assd, rel=1e-4)
    assert res.hd95_mm == pytest.approx(hd95, rel=1e-4)
