"""Writing an insertion where the caller says (``out=``), undoing it, and working inside the
liver's box: results never depend on the scan outside that box, nor on earlier in-place calls."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_host

from synth import insert_tumor, prepare_host
from synth._arrays import bounding_slices
from synth.heuristic import shape as shape_module
from synth.heuristic.shape import rasterize, sample_shape

SEEDS = (0, 1, 2)


def same_result(a, b) -> bool:
    return (np.array_equal(a.volume, b.volume) and np.array_equal(a.label, b.label)
            and [les.to_dict() for les in a.lesions] == [les.to_dict() for les in b.lesions])


@pytest.fixture()
def scan():
    case = build_host(tumour=True)
    return case.volume.copy(), case.label.copy(), case.spacing


def test_out_buffers_receive_the_same_result_as_a_pure_call(scan):
    volume, label, spacing = scan
    host = prepare_host(volume, label, spacing=spacing)
    buffers = (np.full_like(volume, 7), np.full_like(label, 9))  # garbage: must be overwritten
    for seed in SEEDS:
        pure = host.insert(size="mix", count=(2, 4), seed=seed)
        written = host.insert(size="mix", count=(2, 4), seed=seed, out=buffers)
        assert written.volume is buffers[0] and written.label is buffers[1]
        assert same_result(pure, written)
    assert np.array_equal(host.volume, volume) and np.array_equal(host.label, label)


def test_in_place_then_restore_matches_pure_calls_whatever_came_before(scan):
    volume, label, spacing = scan
    original = (volume.copy(), label.copy())
    pure_host = prepare_host(original[0].copy(), original[1].copy(), spacing=spacing)
    host = prepare_host(volume, label, spacing=spacing)
    for seed in SEEDS:
        result = host.insert(size="mix", count=(2, 4), seed=seed, out=(volume, label))
        assert result.volume is volume and result.label is label
        assert not np.array_equal(volume, original[0])  # written in place
        # Decisions read the host's private copy of the liver box: earlier in-place calls,
        # since undone, leave no trace.
        assert same_result(result, pure_host.insert(size="mix", count=(2, 4), seed=seed))
        host.restore(result)
        assert np.array_equal(volume, original[0]) and np.array_equal(label, original[1])


def test_without_restore_later_in_place_lesions_avoid_earlier_ones(scan):
    volume, label, spacing = scan
    host = prepare_host(volume, label, spacing=spacing)
    first = host.insert(size="small", count=3, seed=0, out=(volume, label))
    tumour_after_first = int(np.count_nonzero(label == 2))
    host.insert(size="small", count=3, seed=1, out=(volume, label))
    assert np.count_nonzero(label == 2) > tumour_after_first
    for lesion in first.lesions:  # the first call's lesions are still there, untouched
        assert label[tuple(lesion.center_voxel)] == 2


def test_insert_tumor_in_place_on_the_callers_arrays(scan):
    volume, label, spacing = scan
    expected = insert_tumor(volume, label, spacing=spacing, size="small", count=2, seed=3)
    out = insert_tumor(volume, label, spacing=spacing, size="small", count=2, seed=3, out=(volume, label))
    assert out[0] is volume and out[1] is label
    assert np.array_equal(volume, expected[0]) and np.array_equal(label, expected[1])


def test_changed_boxes_hold_every_changed_voxel(scan):
    volume, label, spacing = scan
    result = prepare_host(volume, label, spacing=spacing).insert(size="large", count=1, seed=4)
    assert result.lesions[0].mass_effect
    outside = np.ones(volume.shape, dtype=bool)
    for box in result.changed_boxes:
        outside[box] = False
    assert np.array_equal(result.volume[outside], volume[outside])
    assert np.array_equal(result.label[outside], label[outside])


@pytest.mark.parametrize(("make_out", "message"), [
    (lambda v, lab: (v[:-1].copy(), lab.copy()), "out volume has shape"),
    (lambda v, lab: (v.astype(np.float32), lab.copy()), "out volume has dtype float32; it must be int16"),
    (lambda v, lab: (v.copy(), lab.astype(np.int16)), "out label has dtype int16; it must be uint8"),
    (lambda v, lab: (v.copy(), np.asfortranarray(lab)), "out label must be C-contiguous"),
    (lambda v, lab: (v.copy(), np.broadcast_to(lab, lab.shape)), "out label is read-only"),
    (lambda v, lab: (v, lab[:, :, ::-1]), "out label must be C-contiguous"),
    (lambda v, lab: (v.copy(), lab.copy().tolist()), "out label must be a numpy array"),
    (lambda v, lab: v.copy(), "out must be a \\(volume, label\\) pair"),
])
def test_bad_out_is_refused_before_anything_is_written(scan, make_out, message):
    volume, label, spacing = scan
    host = prepare_host(volume, label, spacing=spacing)
    out = make_out(volume, label)
    before = [np.array(a, copy=True) for a in (out if isinstance(out, tuple) else (out,))]
    with pytest.raises((ValueError, TypeError), match=message):
        host.insert(size="small", count=1, seed=0, out=out)
    after = out if isinstance(out, tuple) else (out,)
    assert all(np.array_equal(np.asarray(b), np.asarray(a)) for b, a in zip(before, after))
    assert np.array_equal(host.volume, volume)


def test_out_overlapping_the_scan_without_being_it_is_refused(scan):
    volume, label, spacing = scan
    n = volume.shape[0]
    both = np.concatenate([volume, volume])  # the scan, and room for a view shifted by one plane
    host = prepare_host(both[:n], label, spacing=spacing)
    with pytest.raises(ValueError, match="overlaps the scan's volume"):
        host.insert(size="small", count=1, seed=0, out=(both[1:n + 1], label.copy()))
    assert np.array_equal(both[:n], volume)


def test_images_with_out_are_refused():
    nib = pytest.importorskip("nibabel")
    case = build_host()
    image = nib.Nifti1Image(case.volume.copy(), np.eye(4))
    mask = nib.Nifti1Image(case.label.copy(), np.eye(4))
    with pytest.raises(TypeError, match="out= takes numpy arrays"):
        insert_tumor(image, mask, out=(case.volume.copy(), case.label.copy()))


def test_results_do_not_depend_on_the_scan_outside_the_liver_box(scan):
    """The same scan with 40 more slices of air on each side: the same lesions, shifted."""
    volume, label, spacing = scan
    pad = ((0, 0), (0, 0), (40, 40))
    tall = prepare_host(np.pad(volume, pad, constant_values=-1000), np.pad(label, pad), spacing=spacing)
    short = prepare_host(volume, label, spacing=spacing)
    for seed in SEEDS:
        a = short.insert(size="mix", count=(2, 3), seed=seed)
        b = tall.insert(size="mix", count=(2, 3), seed=seed)
        assert np.array_equal(b.volume[:, :, 40:-40], a.volume)
        assert np.array_equal(b.label[:, :, 40:-40], a.label)
        assert [les.center_voxel[2] for les in b.lesions] == [les.center_voxel[2] + 40 for les in a.lesions]


def test_bounding_slices_matches_nonzero_extent():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((23, 17, 11), dtype=np.uint8)
        points = rng.integers(0, mask.shape, size=(int(rng.integers(1, 6)), 3))
        mask[tuple(points.T)] = rng.integers(1, 3, size=len(points))
        expected = tuple(slice(int(p.min()), int(p.max()) + 1) for p in points.T)
        assert bounding_slices(mask) == expected
        assert bounding_slices(mask.astype(np.int16) * -1) == expected  # signed: nonzero, not > 0
    assert bounding_slices(np.zeros((4, 4, 4), dtype=bool)) is None


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 2.5), (1.0, 1.0, 1.0)])
def test_coarse_surface_grid_stays_close_to_the_exact_shape(monkeypatch, spacing):
    """Large lesions evaluate their surface on a coarse grid: the same voxel count, and only a thin
    layer of boundary voxels differs from evaluating it at every voxel."""
    diameter = 45.0
    voxel_count = int(round(np.pi * diameter**3 / 6 / np.prod(spacing)))
    for seed in range(3):
        shape = sample_shape(diameter, np.random.default_rng(seed))
        coarse = rasterize(shape, voxel_count, spacing, pad_mm=3.0)
        with monkeypatch.context() as patch:
            patch.setattr(shape_module, "_CELL_PER_RADIUS", 1e-9)  # one node per voxel: exact
            exact = rasterize(shape, voxel_count, spacing, pad_mm=3.0)
        # Exactly the count asked for, but for voxels tied at the surface's level (float rounding).
        assert abs(coarse.voxel_count - voxel_count) <= 1e-3 * voxel_count
        assert abs(exact.voxel_count - voxel_count) <= 1e-3 * voxel_count
        h = np.minimum(coarse.half_size, exact.half_size)
        crop_c = tuple(slice(c - k, c + k + 1) for c, k in zip(coarse.half_size, h))
        crop_e = tuple(slice(c - k, c + k + 1) for c, k in zip(exact.half_size, h))
        assert coarse.inside.sum() == coarse.inside[crop_c].sum()
        differing = np.count_nonzero(coarse.inside[crop_c] != exact.inside[crop_e])
        assert 0 < differing < 0.02 * voxel_count
        near_surface = np.abs(exact.distance_mm[crop_e]) < 3.0
        error = np.abs(coarse.distance_mm[crop_c] - exact.distance_mm[crop_e])[near_surface]
        assert np.percentile(error, 99) < 1.5


def test_restore_when_the_liver_box_is_the_whole_scan(scan):
    """A scan cropped to its liver: the host's private copy must still be a copy, not a view."""
    volume, label, spacing = scan
    box = bounding_slices(label)
    volume, label = volume[box].copy(), label[box].copy()
    original = (volume.copy(), label.copy())
    host = prepare_host(volume, label, spacing=spacing)
    assert all(b.start == 0 and b.stop == n for b, n in zip(host.box, volume.shape))
    for seed in SEEDS:
        host.restore(host.insert(size="small", count=(1, 2), seed=seed, out=(volume, label)))
        assert np.array_equal(volume, original[0]) and np.array_equal(label, original[1])


def test_vessel_map_is_the_same_from_cached_blocks_computed_directly_and_whole_scan(scan):
    """History must not matter: a box read from cached blocks equals one computed directly, and
    both equal the filter run over the whole scan."""
    from scipy import ndimage

    volume, label, spacing = scan
    fresh = prepare_host(volume, label, spacing=spacing)
    big = tuple(slice(b.start + 6, b.stop - 6) for b in fresh.box)  # spans many blocks
    direct = fresh.vessel_mask(big).copy()  # nothing cached: computed directly
    cached = prepare_host(volume, label, spacing=spacing)
    step = cached._block
    for corner in np.ndindex(*cached._vessels_done.shape):  # fill every block through small boxes
        box = tuple(slice(o + k * n, min(o + (k + 1) * n, b.stop)) for o, k, n, b in
                    zip(cached.origin, corner, step, cached.box))
        cached.vessel_mask(box)
    assert cached._vessels_done.all()
    assert np.array_equal(cached.vessel_mask(big), direct)
    smoothed = ndimage.gaussian_filter(volume.astype(np.float32), [1.0 / s for s in spacing], mode="nearest")
    whole = (smoothed > fresh.vessel_threshold_hu) & (label == 1)
    assert direct.any()
    assert np.array_equal(whole[big], direct)
