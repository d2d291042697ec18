"""augment's CT intensity transforms (HU window, correlated noise) and class-name uniqueness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from torchio.utils import get_subclasses

import augment
from augment import ContrastPhase, CTNoise, HUWindow, RandomContrastPhase, RandomCTNoise

SPACING = (2.0, 2.0, 3.0)


def make_subject(value_hu: float = 50.0) -> tio.Subject:
    """A flat CT (one HU value everywhere) with a label map, small enough to be instant."""
    affine = np.diag([*SPACING, 1.0])
    ct = torch.full((1, 48, 48, 24), value_hu, dtype=torch.float32)
    ct[:, :8] = -1000.0  # a slab of air
    ct[:, 8:12] = 1200.0  # and of bone
    label = torch.zeros((1, 48, 48, 24), dtype=torch.uint8)
    label[:, 20:36, 20:36, 6:18] = 1
    label[:, 26:30, 26:30, 10:14] = 2
    return tio.Subject(ct=tio.ScalarImage(tensor=ct, affine=affine),
                       seg=tio.LabelMap(tensor=label, affine=affine))


def test_class_names_are_unique_among_torchio_transforms():
    """The history is replayed by class name: ours must not shadow TorchIO's or each other."""
    # A class with two Transform bases is listed twice by get_subclasses: count classes once.
    names = [cls.__name__ for cls in set(get_subclasses(tio.Transform))]
    for name in ("TumorInsertion", "RandomTumorInsertion", "CTNoise", "RandomCTNoise", "HUWindow",
                 "ContrastPhase", "RandomContrastPhase"):
        assert names.count(name) == 1, name
        assert getattr(augment, name).__name__ == name


def test_hu_window_clips_and_scales():
    subject = make_subject(value_hu=40.0)
    out = HUWindow(window_hu=(-160, 240), out_range=(0, 1))(subject)
    ct = out.ct.data
    assert torch.allclose(ct[:, 20, 20, 10], torch.tensor(0.5))  # the level maps to the middle
    assert float(ct[:, :8].max()) == 0.0 and float(ct[:, 8:12].min()) == 1.0
    assert torch.equal(out.seg.data, subject.seg.data)
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed.ct.data, ct)


@pytest.mark.parametrize("window", [(240, -160), (0, 0), (float("nan"), 1), "wide"])
def test_hu_window_rejects_bad_windows(window):
    with pytest.raises(ValueError, match="window_hu"):
        HUWindow(window_hu=window)


def test_ct_noise_has_the_asked_strength_and_grain():
    subject = make_subject()
    white = CTNoise(std_hu=12.0, correlation_mm=0.0, seed=1)(subject).ct.data - subject.ct.data
    grainy = CTNoise(std_hu=12.0, correlation_mm=2.0, seed=1)(subject).ct.data - subject.ct.data
    for noise in (white, grainy):
        assert float(noise.std()) == pytest.approx(12.0, rel=1e-3)

    def neighbour_correlation(noise):
        a, b = noise[0, :-1].flatten(), noise[0, 1:].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    assert abs(neighbour_correlation(white)) < 0.05
    assert neighbour_correlation(grainy) > 0.5
    assert torch.equal(CTNoise(std_hu=12.0, correlation_mm=0.0, seed=1)(subject).seg.data,
                       subject.seg.data)


def test_random_ct_noise_replays_and_follows_torch_seed():
    subject = make_subject()
    transform = RandomCTNoise(std_hu=(5, 15), correlation_mm=(0.5, 1.5))
    torch.manual_seed(0)
    first = transform(subject)
    torch.manual_seed(0)
    second = transform(subject)
    torch.manual_seed(1)
    other = transform(subject)
    assert torch.equal(first.ct.data, second.ct.data)
    assert not torch.equal(first.ct.data, other.ct.data)
    (recorded,) = first.history
    assert recorded.name == "CTNoise" and 5 <= recorded.std_hu["ct"] <= 15
    replayed = first.get_composed_history()(subject)
    assert torch.allclose(replayed.ct.data, first.ct.data)


def test_tumour_insertion_before_noise_and_window_replays():
    from synth.phantom import make_phantom

    case = make_phantom(shape=(64, 56, 28), spacing=(4.5, 4.5, 6.0))
    subject = tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(case.volume)[None], affine=case.affine),
                          seg=tio.LabelMap(tensor=torch.from_numpy(case.label)[None], affine=case.affine))
    pipeline = tio.Compose([augment.RandomTumorInsertion(size=(10, 20), count=1), RandomCTNoise(),
                            HUWindow()])
    torch.manual_seed(3)
    out = pipeline(subject)
    assert [t.name for t in out.history] == ["TumorInsertion", "CTNoise", "HUWindow"]
    assert float(out.ct.data.min()) >= 0.0 and float(out.ct.data.max()) <= 1.0
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed.seg.data, out.seg.data)
    assert torch.allclose(replayed.ct.data, out.ct.data, atol=1e-6)


def test_contrast_phase_shifts_liver_and_tumour_separately():
    subject = make_subject(value_hu=100.0)
    out = ContrastPhase(liver_shift_hu=-30.0, tumor_shift_hu=20.0, edge_mm=0.5)(subject)
    change = out.ct.data - subject.ct.data
    assert float(change[0, 22, 22, 8]) == pytest.approx(-30.0, abs=0.5)  # liver, away from tumour
    assert float(change[0, 27, 27, 11]) == pytest.approx(20.0, abs=1.0)  # tumour centre
    assert float(change[0, 44, 44, 2]) == 0.0  # background far away
    assert torch.equal(out.seg.data, subject.seg.data)


def test_random_contrast_phase_replays_and_is_an_intensity_transform():
    subject = make_subject()
    torch.manual_seed(2)
    out = RandomContrastPhase()(subject)
    (recorded,) = out.history
    assert recorded.name == "ContrastPhase" and -40 <= recorded.liver_shift_hu <= 20
    assert torch.equal(out.get_composed_history()(subject).ct.data, out.ct.data)
    assert len(out.get_applied_transforms(ignore_intensity=True)) == 0  # labels untouched
