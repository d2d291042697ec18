"""augment's TorchIO transforms: history replay, seeding, workers, image selection, space checks,
patch sampling and alignment through spatial transforms. All on a small, fast phantom."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torchio as tio
from torch.utils.data import DataLoader

import synth
from augment import RandomTumorInsertion, TumorInsertion
from synth.phantom import make_phantom

SHAPE = (96, 80, 40)
SPACING = (3.0, 3.0, 4.0)


@functools.lru_cache(maxsize=1)
def _phantom():
    return make_phantom(shape=SHAPE, spacing=SPACING)


def make_subject(**extra) -> tio.Subject:
    """A fresh subject (CT int16 in HU, label map uint8) on the phantom's grid."""
    case = _phantom()
    return tio.Subject(
        ct=tio.ScalarImage(tensor=torch.from_numpy(case.volume.copy())[None], affine=case.affine),
        seg=tio.LabelMap(tensor=torch.from_numpy(case.label.copy())[None], affine=case.affine),
        **extra,
    )


def tumor_voxels(subject, name="seg") -> int:
    return int((subject[name].data == 2).sum())


def test_insertion_adds_tumour_and_keeps_dtypes():
    subject = make_subject()
    torch.manual_seed(0)
    out = RandomTumorInsertion(size="small", count=2)(subject)
    assert tumor_voxels(out) > 0
    assert tumor_voxels(subject) == 0  # input not modified
    assert out.ct.data.dtype == subject.ct.data.dtype
    assert out.seg.data.dtype == subject.seg.data.dtype
    # Only liver voxels became tumour; nothing else in the label map moved.
    changed = out.seg.data != subject.seg.data
    assert torch.all(subject.seg.data[changed] == 1)
    assert torch.all(out.seg.data[changed] == 2)


def test_history_replays_the_insertion_exactly():
    subject = make_subject()
    torch.manual_seed(1)
    pipeline = tio.Compose([RandomTumorInsertion(count=(2, 3)), tio.RandomNoise(std=(0, 5))])
    out = pipeline(subject)
    names = [t.name for t in out.get_applied_transforms()]
    assert names == ["TumorInsertion", "Noise"]
    history = out.get_composed_history()
    torch.manual_seed(12345)  # a different global state must not matter
    replayed = history(subject)
    assert torch.equal(replayed.seg.data, out.seg.data)
    assert torch.allclose(replayed.ct.data.float(), out.ct.data.float(), atol=1e-4)
    assert tumor_voxels(out) > 0


def test_torch_manual_seed_reproduces_and_seeds_differ():
    subject = make_subject()
    transform = RandomTumorInsertion(count=2)
    torch.manual_seed(7)
    first = transform(subject)
    torch.manual_seed(7)
    second = transform(subject)
    torch.manual_seed(8)
    other = transform(subject)
    assert torch.equal(first.seg.data, second.seg.data)
    assert torch.equal(first.ct.data, second.ct.data)
    assert not torch.equal(first.seg.data, other.seg.data)
    assert first.history[0].seed == second.history[0].seed != other.history[0].seed


def _as_is(subject):
    return subject


def _worker_tumours(seed: int) -> list[torch.Tensor]:
    dataset = tio.SubjectsDataset([make_subject() for _ in range(4)],
                                  transform=RandomTumorInsertion(size="small", count=2))
    loader = DataLoader(dataset, batch_size=None, num_workers=2,
                        generator=torch.Generator().manual_seed(seed), collate_fn=_as_is)
    return [subject.seg.data == 2 for subject in loader]


def test_dataloader_workers_draw_differently_and_reproducibly():
    run = _worker_tumours(seed=3)
    # Items 0 and 1 are the first ones of worker 0 and worker 1: torch seeds each worker
    # differently, so their lesions differ; later items differ from earlier ones too.
    for i in range(len(run)):
        for j in range(i):
            assert not torch.equal(run[i], run[j]), (i, j)
    again = _worker_tumours(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(run, again))


def test_include_and_exclude_choose_the_ct_and_label_map():
    subject = make_subject(pet=tio.ScalarImage(tensor=torch.zeros(1, *SHAPE), affine=_phantom().affine))
    with pytest.raises(ValueError, match="exactly one scalar image.*'ct', 'pet'"):
        TumorInsertion(seed=0)(subject)
    included = TumorInsertion(seed=0, include=["ct", "seg"])(subject)
    excluded = TumorInsertion(seed=0, exclude=["pet"])(subject)
    assert torch.equal(included.seg.data, excluded.seg.data)
    assert torch.equal(included.ct.data, excluded.ct.data)
    assert torch.equal(included.pet.data, subject.pet.data)
    assert tumor_voxels(included) > 0


def test_two_label_maps_need_a_choice():
    subject = make_subject()
    subject.add_image(tio.LabelMap(tensor=subject.seg.data.clone(), affine=subject.seg.affine), "body")
    with pytest.raises(ValueError, match="exactly one label map.*'seg', 'body'"):
        TumorInsertion(seed=0)(subject)
    out = TumorInsertion(seed=0, exclude=["body"])(subject)
    assert tumor_voxels(out) > 0 and tumor_voxels(out, "body") == 0


def test_affine_mismatch_is_a_clear_error():
    subject = make_subject()
    shifted = subject.seg.affine.copy()
    shifted[0, 3] += 1.5
    subject.add_image(tio.LabelMap(tensor=subject.seg.data, affine=shifted), "seg")
    with pytest.raises(ValueError, match=r"not in one space.*1\.5 mm apart"):
        RandomTumorInsertion()(subject)


def test_shape_mismatch_is_a_clear_error():
    subject = make_subject()
    subject.add_image(tio.LabelMap(tensor=subject.seg.data[..., :-2].clone(), affine=subject.seg.affine), "seg")
    with pytest.raises(ValueError, match="spatial shapes .* differ"):
        RandomTumorInsertion()(subject)


def test_affine_difference_within_tolerance_is_accepted():
    subject = make_subject()
    nudged = subject.seg.affine.copy()
    nudged[:3, 3] += 1e-5
    subject.add_image(tio.LabelMap(tensor=subject.seg.data, affine=nudged), "seg")
    assert tumor_voxels(TumorInsertion(seed=0)(subject)) > 0


def test_p_zero_leaves_the_subject_unchanged():
    subject = make_subject()
    out = RandomTumorInsertion(p=0)(subject)
    assert torch.equal(out.ct.data, subject.ct.data)
    assert torch.equal(out.seg.data, subject.seg.data)
    assert out.history == []


def test_crop_without_liver_is_left_unchanged():
    subject = make_subject()
    liver = torch.nonzero(subject.seg.data[0] == 1)
    beyond = int(liver[:, 0].max()) + 1  # every voxel from here on along x is liver-free
    crop = tio.Crop((beyond, 0, 0, 0, 0, 0))(subject)
    out = TumorInsertion(seed=0)(crop)
    assert torch.equal(out.ct.data, crop.ct.data)
    assert torch.equal(out.seg.data, crop.seg.data)


def test_other_label_values_are_kept():
    subject = make_subject()
    # A multi-organ map: liver 5, background 0, and every other voxel of the old map as organ 3.
    labels = subject.seg.data.clone()
    labels[labels == 1] = 5
    labels[(labels == 0) & (subject.ct.data > 0)] = 3
    subject.add_image(tio.LabelMap(tensor=labels, affine=subject.seg.affine), "seg")
    out = TumorInsertion(seed=2, liver_label=5, count=2)(subject)
    changed = out.seg.data != labels
    assert changed.any()
    assert torch.all(labels[changed] == 5) and torch.all(out.seg.data[changed] == 2)


def test_float_label_map_is_accepted():
    subject = make_subject()
    subject.add_image(tio.LabelMap(tensor=subject.seg.data.float(), affine=subject.seg.affine), "seg")
    out = TumorInsertion(seed=0)(subject)
    assert out.seg.data.dtype == torch.float32 and tumor_voxels(out) > 0


def test_no_room_warns_or_raises_as_asked():
    subject = make_subject()
    labels = torch.zeros_like(subject.seg.data)
    labels[0, 40:43, 40:43, 20:22] = 1  # a few voxels of liver: no room for a large lesion
    subject.add_image(tio.LabelMap(tensor=labels, affine=subject.seg.affine), "seg")
    with pytest.raises(synth.LesionPlacementError):
        TumorInsertion(seed=0, size="large", count=1, on_failure="raise")(subject)
    with pytest.warns(RuntimeWarning, match="tumour insertion skipped"):
        out = TumorInsertion(seed=0, size="large", count=1)(subject)
    assert torch.equal(out.seg.data, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TumorInsertion(seed=0, size="large", count=1, on_failure="ignore")(subject)


@pytest.mark.parametrize("settings, message", [
    ({"size": "huge"}, "unknown size"),
    ({"phenotype": "cystic"}, "unknown phenotype"),
    ({"count": (3, 1)}, "count"),
    ({"liver_label": 2}, "must differ"),
    ({"on_failure": "skip"}, "on_failure"),
    ({"synthesis_options": {"seed": 1}}, "synthesis_options"),
])
def test_bad_settings_fail_when_the_transform_is_built(settings, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RandomTumorInsertion(**settings)


def test_synthesis_options_reach_the_synthesiser_and_the_history():
    subject = make_subject()
    torch.manual_seed(4)
    out = RandomTumorInsertion(size="large", count=1,
                               synthesis_options={"mass_effect": False})(subject)
    assert out.history[0].synthesis_options == {"mass_effect": False}
    # Without mass effect, the image changes only where the label changed or at its soft edge:
    # the replay with mass effect on differs.
    with_push = TumorInsertion(seed=out.history[0].seed, size="large", count=1)(subject)
    assert torch.equal(with_push.seg.data, out.seg.data)
    assert not torch.equal(with_push.ct.data, out.ct.data)


def test_queue_with_label_sampler_draws_patches_around_new_tumours():
    dataset = tio.SubjectsDataset(
        [make_subject(), make_subject()],
        transform=RandomTumorInsertion(size="small", count=(2, 3), phenotype="hypodense"))
    sampler = tio.LabelSampler(patch_size=(24, 24, 12), label_name="seg",
                               label_probabilities={0: 0, 1: 0, 2: 1})
    queue = tio.Queue(dataset, max_length=8, samples_per_volume=4, sampler=sampler,
                      num_workers=0, shuffle_subjects=False, shuffle_patches=True)
    torch.manual_seed(5)
    batches = list(tio.SubjectsLoader(queue, batch_size=4, num_workers=0))
    assert len(batches) == 2
    for batch in batches:
        assert batch["ct"][tio.DATA].shape == (4, 1, 24, 24, 12)
        labels = batch["seg"][tio.DATA]
        # Each patch is centred on a tumour voxel, all of them inserted by the transform.
        assert all((patch == 2).any() for patch in labels)


def test_label_and_image_stay_aligned_through_a_spatial_transform():
    subject = make_subject()
    torch.manual_seed(6)
    pipeline = tio.Compose([
        RandomTumorInsertion(size="medium", count=2, phenotype="hypodense"),
        tio.RandomAffine(scales=0.1, degrees=15, translation=6, default_pad_value="minimum"),
    ])
    out = pipeline(subject)
    ct, labels = out.ct.data.float(), out.seg.data
    assert ct.shape == subject.ct.data.shape
    tumour_hu = ct[labels == 2].mean()
    liver_hu = ct[labels == 1].mean()
    # Hypodense lesions are 20-150 HU darker; misaligned labels would average towards liver, so
    # the label as it is must also be darker than the same label moved by two voxels.
    assert tumour_hu < liver_hu - 20, (float(tumour_hu), float(liver_hu))
    for axis in (1, 2, 3):
        moved = torch.roll(labels, 2, dims=axis)
        # Where the shifted label lands on liver, the tissue must be brighter than the lesion;
        # off-liver voxels (fat, air) would say nothing about alignment.
        beside = (moved == 2) & (labels == 1)
        assert tumour_hu < ct[beside].mean() - 10
    # The replayed history resamples the same way.
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed.seg.data, labels)
