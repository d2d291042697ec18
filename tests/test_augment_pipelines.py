"""augment.pipelines: shapes and ranges, label values, history replay, determinism of the
evaluation pipeline, the liver crop, gamma's frame and a Queue run. A small phantom for most
tests, LiTS-117 (real anatomy, many real tumours) where it is at hand."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torchio as tio

from augment import HUWindow
from augment.pipelines import (
    DEFAULT_WINDOW_HU,
    LiverCrop,
    RandomLiverCrop,
    WindowScale,
    crop_bounds,
    evaluation_pipeline,
    label_sampler,
    training_pipeline,
)
from synth.phantom import make_phantom

PATCH = (32, 32, 16)
CROP = (40, 40, 20)  # the default crop for PATCH: a quarter more on each axis


@functools.lru_cache(maxsize=1)
def _phantom():
    return make_phantom(shape=(96, 80, 40), spacing=(3.0, 3.0, 4.0))


def phantom_subject() -> tio.Subject:
    """A fresh subject (CT int16 in HU, label map uint8 0/1) on the phantom's grid."""
    case = _phantom()
    return tio.Subject(
        ct=tio.ScalarImage(tensor=torch.from_numpy(case.volume.copy())[None], affine=case.affine),
        seg=tio.LabelMap(tensor=torch.from_numpy(case.label.copy())[None], affine=case.affine),
    )


@pytest.fixture(scope="module")
def lits_subject(lits117):
    """LiTS-117 as a TorchIO subject (skips, with the reason, when the data are absent)."""
    affine = lits117.volume_image.affine
    return tio.Subject(
        ct=tio.ScalarImage(tensor=torch.from_numpy(np.array(lits117.volume))[None], affine=affine),
        seg=tio.LabelMap(tensor=torch.from_numpy(np.array(lits117.label))[None], affine=affine),
    )


def every_step(**options) -> tio.Compose:
    """The training pipeline with insertion and elastic always on (the rest at their defaults)."""
    return training_pipeline(PATCH, tumor_probability=1.0, elastic_probability=1.0, **options)


def assert_network_ready(out: tio.Subject, crop_size) -> None:
    assert out.ct.shape == (1, *crop_size)
    assert out.seg.shape == (1, *crop_size)
    assert out.ct.data.dtype == torch.float32
    assert 0.0 <= float(out.ct.data.min()) and float(out.ct.data.max()) <= 1.0
    assert set(out.seg.data.unique().tolist()) <= {0, 1, 2}
    np.testing.assert_allclose(out.ct.affine, out.seg.affine)


def test_training_output_is_the_crop_in_window_range_with_labels_kept():
    subject = phantom_subject()
    before = subject.ct.data.clone(), subject.seg.data.clone()
    torch.manual_seed(0)
    out = every_step()(subject)
    assert_network_ready(out, CROP)
    assert (out.seg.data == 2).any()  # lesions were inserted into the crop's liver
    assert (out.seg.data == 1).any()
    # The caller's subject is untouched (the steps work in place on the Compose's copy).
    assert torch.equal(subject.ct.data, before[0]) and torch.equal(subject.seg.data, before[1])
    names = [name for name, _ in out.applied_transforms]
    assert names[0] == "LiverCrop" and names[-1] == "HUWindow"
    assert names.index("ElasticDeformation") < names.index("TumorInsertion")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_history_replays_the_whole_pipeline(seed):
    torch.manual_seed(seed)
    out = every_step()(phantom_subject())
    replayed = out.get_composed_history()(phantom_subject())
    torch.testing.assert_close(replayed.ct.data, out.ct.data, atol=1e-5, rtol=0)
    assert torch.equal(replayed.seg.data, out.seg.data)


def test_torch_seed_reproduces_and_seeds_differ():
    pipeline = every_step()
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outputs.append(pipeline(phantom_subject()))
    assert torch.equal(outputs[0].ct.data, outputs[1].ct.data)
    assert not torch.equal(outputs[0].ct.data, outputs[2].ct.data)


def test_inserted_lesions_get_the_later_intensity_steps():
    # Noise after insertion: the image inside the new lesions differs between two runs that
    # insert the same lesions (same crop, same seed) but draw different noise.
    subject = phantom_subject()
    torch.manual_seed(4)
    out = every_step()(subject)
    history = out.get_composed_history()
    without_noise = tio.Compose([t for t in history if t.name != "CTNoise"])(phantom_subject())
    if "CTNoise" not in [name for name, _ in out.applied_transforms]:
        pytest.skip("the noise step did not run for this seed")
    lesion = out.seg.data == 2
    assert torch.equal(without_noise.seg.data, out.seg.data)
    assert not torch.allclose(without_noise.ct.data[lesion], out.ct.data[lesion])


def test_without_insertion_no_tumour_appears():
    torch.manual_seed(5)
    out = training_pipeline(PATCH, tumor_probability=0.0, elastic_probability=1.0)(phantom_subject())
    assert "TumorInsertion" not in [name for name, _ in out.applied_transforms]
    assert not (out.seg.data == 2).any()


def test_evaluation_pipeline_is_deterministic_and_windows_hu():
    subject = phantom_subject()
    pipeline = evaluation_pipeline()
    first, second = pipeline(subject), pipeline(subject)
    assert torch.equal(first.ct.data, second.ct.data)
    low, high = DEFAULT_WINDOW_HU
    expected = (subject.ct.data.float().clamp(low, high) - low) / (high - low)
    torch.testing.assert_close(first.ct.data, expected)
    assert torch.equal(first.seg.data, subject.seg.data)
    cropped = evaluation_pipeline(CROP)(subject)
    assert torch.equal(cropped.ct.data, evaluation_pipeline(CROP)(subject).ct.data)
    assert cropped.ct.shape == (1, *CROP)
    replayed = cropped.get_composed_history()(subject)
    assert torch.equal(replayed.ct.data, cropped.ct.data)


def test_liver_crop_centres_on_the_liver_box_and_keeps_world_positions():
    subject = phantom_subject()
    out = LiverCrop(CROP, label_name="seg")(subject)
    liver = np.argwhere(subject.seg.data[0].numpy() > 0)
    box_center = (liver.min(0) + liver.max(0)) // 2
    # The output voxel at the block's centre is the input's liver-box centre, in mm too.
    center_out = np.array(CROP) // 2
    world_out = out.ct.affine @ np.append(center_out, 1.0)
    world_in = subject.ct.affine @ np.append(box_center, 1.0)
    np.testing.assert_allclose(world_out, world_in, atol=1e-6)
    assert torch.equal(out.seg.data[0, center_out[0], center_out[1], center_out[2]],
                       subject.seg.data[0, box_center[0], box_center[1], box_center[2]])


def test_liver_crop_pads_small_scans_with_air_and_background():
    subject = phantom_subject()
    big = (120, 90, 48)
    out = LiverCrop(big, label_name="seg")(subject)
    assert out.ct.shape == (1, *big)
    # 24 voxels of padding along x, 12 on each side: air in the CT, background in the labels.
    assert torch.all(out.ct.data[:, :12] == -1024)
    assert torch.all(out.seg.data[:, :12] == 0)
    assert torch.equal(out.ct.data[:, 12:108, 5:85, 4:44], subject.ct.data)


def test_random_liver_crop_always_holds_liver_and_covers_it_over_draws():
    subject = phantom_subject()
    crop = RandomLiverCrop((16, 16, 8), label_name="seg")
    torch.manual_seed(0)
    origins = set()
    for _ in range(20):
        out = crop(subject)
        assert (out.seg.data > 0).any()
        origins.add(tuple(np.round(out.ct.affine[:3, 3], 3)))
    assert len(origins) > 10  # the crop moves around the liver


def test_crop_bounds_stay_inside_the_scan():
    for shape, size, center in [((50, 50, 20), (32, 32, 16), (0, 49, 10)),
                                ((10, 60, 5), (32, 32, 16), (5, 30, 2))]:
        padding, cropping = crop_bounds(shape, size, center)
        for axis in range(3):
            padded = shape[axis] + padding[2 * axis] + padding[2 * axis + 1]
            assert min(cropping[2 * axis], cropping[2 * axis + 1]) >= 0
            assert padded - cropping[2 * axis] - cropping[2 * axis + 1] == size[axis]


def test_gamma_runs_on_the_window_scale():
    values = torch.tensor([-1000.0, -160.0, 40.0, 240.0, 1000.0]).reshape(1, 5, 1, 1)
    subject = tio.Subject(ct=tio.ScalarImage(tensor=values))
    window = (-160.0, 240.0)
    gamma = tio.Compose([WindowScale(window), tio.Gamma(gamma=0.5), WindowScale(window, to_hu=True)])
    out = gamma(subject).ct.data.flatten()
    # The window's edges stay put, mid-window is brightened, below the window is clipped to its
    # edge (the final window would clip it anyway), above it stays above.
    torch.testing.assert_close(out[:2], torch.tensor([-160.0, -160.0]))
    torch.testing.assert_close(out[2], torch.tensor(-160.0 + 400.0 * 0.5**0.5))
    torch.testing.assert_close(out[3], torch.tensor(240.0))
    assert out[4] > 240.0
    windowed = HUWindow(window)(gamma(subject)).ct.data.flatten()
    assert windowed[0] == 0.0 and windowed[4] == 1.0


@pytest.mark.parametrize("options, message", [
    ({"crop_size": (16, 40, 20)}, "at least patch_size"),
    ({"tumor_probability": 1.5}, "tumor_probability"),
    ({"elastic_probability": -0.1}, "elastic_probability"),
    ({"tumor_size": "huge"}, "huge"),
])
def test_bad_options_fail_when_the_pipeline_is_built(options, message):
    with pytest.raises(ValueError, match=message):
        training_pipeline(PATCH, **options)


def test_queue_with_label_sampler_yields_network_ready_patches():
    subjects = [phantom_subject() for _ in range(3)]
    dataset = tio.SubjectsDataset(subjects, transform=every_step())
    queue = tio.Queue(dataset, max_length=8, samples_per_volume=4, sampler=label_sampler(PATCH),
                      num_workers=0, shuffle_subjects=False, shuffle_patches=True)
    torch.manual_seed(6)
    batches = list(tio.SubjectsLoader(queue, batch_size=4, num_workers=0))
    assert len(batches) == 3
    tumor_patches = 0
    for batch in batches:
        ct, seg = batch["ct"][tio.DATA], batch["seg"][tio.DATA]
        assert ct.shape == seg.shape == (4, 1, *PATCH)
        assert 0.0 <= float(ct.min()) and float(ct.max()) <= 1.0
        assert set(seg.unique().tolist()) <= {0, 1, 2}
        tumor_patches += int(sum(bool((patch == 2).any()) for patch in seg))
    assert tumor_patches >= 3  # the sampler centres about half the patches on tumour


def test_lits117_through_the_training_pipeline(lits_subject):
    patch = (64, 64, 32)
    pipeline = training_pipeline(patch, tumor_probability=1.0, tumor_size="small",
                                 elastic_probability=0.0)
    torch.manual_seed(0)
    out = pipeline(lits_subject)
    assert_network_ready(out, (80, 80, 40))
    replayed = out.get_composed_history()(lits_subject)
    torch.testing.assert_close(replayed.ct.data, out.ct.data, atol=1e-5, rtol=0)
    assert torch.equal(replayed.seg.data, out.seg.data)
    # The real tumours are kept: tumour voxels of the crop without insertion are still tumour.
    history = [t for t in out.get_composed_history() if t.name != "TumorInsertion"]
    real_only = tio.Compose(history)(lits_subject)
    assert torch.all(out.seg.data[real_only.seg.data == 2] == 2)


def test_lits117_evaluation_crop(lits_subject):
    out = evaluation_pipeline((96, 96, 48))(lits_subject)
    assert_network_ready(out, (96, 96, 48))
    assert torch.equal(out.ct.data, evaluation_pipeline((96, 96, 48))(lits_subject).ct.data)
