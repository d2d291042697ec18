"""train.model (DynUNet builder) and train.losses (Dice+CE, composite, deep supervision)."""

import pytest
import torch
import torch.nn.functional as F

from train.losses import LOSSES, FocalTverskyLoss, build_loss, deep_supervision_weights, head_outputs
from train.model import build_model, count_parameters

TINY = (4, 8, 16)
PATCH = (32, 32, 32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_model_output_shape_without_deep_supervision():
    model = build_model(filters=TINY, patch_size=PATCH)
    x = torch.rand(2, 1, *PATCH)
    assert model(x).shape == (2, 3, *PATCH)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, *PATCH)


def test_model_deep_supervision_stacks_heads_in_training_only():
    model = build_model(filters=(4, 8, 16, 32), patch_size=PATCH, deep_supervision=True)
    x = torch.rand(2, 1, *PATCH)
    assert model(x).shape == (2, 3, 3, *PATCH)  # full resolution + 2 heads, all upsampled
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, *PATCH)


def test_model_parameter_count_of_the_benchmarked_net():
    # docs/training.md quotes 0.35M parameters for filters (8, 16, 32, 64).
    assert 340_000 < count_parameters(build_model(filters=(8, 16, 32, 64), patch_size=(48, 48, 48))) < 360_000


@pytest.mark.parametrize("kwargs, words", [
    ({"filters": (4, 8, 16), "patch_size": (30, 32, 32)}, "divisible by 4"),
    ({"filters": (4,), "patch_size": PATCH}, "at least two"),
    ({"filters": (4, 8), "patch_size": PATCH, "deep_supervision": True}, "at least 3 levels"),
])
def test_model_rejects_bad_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        build_model(**kwargs)


def _target(seed=0, shape=(2, 1, 12, 12, 12)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, shape, generator=g)


def _logits_for(target, scale=10.0):
    return (F.one_hot(target[:, 0], 3).movedim(-1, 1).float() * 2 - 1) * scale


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_finite_has_gradients_and_prefers_the_truth(name):
    loss_fn = build_loss(name)
    target = _target()
    logits = torch.randn(2, 3, 12, 12, 12, requires_grad=True)
    value = loss_fn(logits, target)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    perfect = loss_fn(_logits_for(target), target)
    wrong = loss_fn(_logits_for((target + 1) % 3), target)
    assert perfect < value.detach() < wrong
    assert perfect < 0.01


@pytest.mark.parametrize("name", LOSSES)
def test_loss_handles_a_deep_supervision_stack(name):
    loss_fn = build_loss(name, heads=3)
    target = _target(1)
    good, bad = _logits_for(target), _logits_for((target + 1) % 3)
    stack = torch.stack([good, bad, bad], dim=1)  # (B, heads, C, X, Y, Z)
    weights = deep_supervision_weights(3)
    expected = weights[0] * loss_fn(good, target) + (weights[1] + weights[2]) * loss_fn(bad, target)
    assert torch.allclose(loss_fn(head_outputs(stack, target), target), expected, atol=1e-5)


def test_deep_supervision_weights_halve_and_sum_to_one():
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert deep_supervision_weights(1) == [1.0]


def test_unknown_loss_lists_the_choices():
    with pytest.raises(ValueError, match="dice_ce, composite"):
        build_loss("dice")


def test_loss_rejects_a_target_without_channel_axis():
    with pytest.raises(ValueError, match="target must be"):
        head_outputs(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 4, 4, 4, dtype=torch.long))


def test_focal_tversky_weighs_missed_tumour_more_than_false_alarm():
    truth = torch.zeros(1, 1, 10, 10, 10)
    truth[0, 0, :4] = 1.0  # 400 tumour voxels
    missed = truth.clone()
    missed[0, 0, :2] = 0.0  # 200 false negatives
    extra = truth.clone()
    extra[0, 0, 4:6] = 1.0  # 200 false positives
    loss = FocalTverskyLoss()
    assert loss(missed, truth) > loss(extra, truth) > loss(truth, truth)
    # TI = 200 / (200 + 0.7 * 200) and the focal exponent 1 / gamma = 0.75
    assert loss(missed, truth).item() == pytest.approx((1 - 200 / 340) ** 0.75, rel=1e-4)


def test_focal_tversky_rejects_bad_parameters():
    with pytest.raises(ValueError, match="gamma"):
        FocalTverskyLoss(gamma=0)
