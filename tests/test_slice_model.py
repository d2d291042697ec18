"""The 2.5D slice model (network "unet2d"): building, training a few steps, slice-wise prediction."""

import numpy as np
import pytest
import torch

from train.loop import TrainConfig, load_model, predict_case, train_model
from train.model import SliceUNet, build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_2D = dict(network="unet2d", patch_size=(32, 32, 3), batch_size=2, filters=(4, 4, 8, 8, 16), device="cpu",
               optimizer="adamw", learning_rate=1e-3, amp=False)


def test_slice_model_maps_a_stack_to_its_centre_slice():
    model = build_model(network="unet2d", filters=(4, 4, 8, 8, 16), patch_size=(32, 32, 5))
    assert isinstance(model, SliceUNet)
    out = model(torch.zeros(2, 1, 32, 32, 5))
    assert out.shape == (2, 3, 32, 32, 1)
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, 5\)"):
        model(torch.zeros(2, 1, 32, 32, 3))


@pytest.mark.parametrize("kwargs, words", [
    (dict(filters=(4, 8, 16)), "needs 5 filter counts"),
    (dict(patch_size=(32, 32, 4)), "odd number of slices"),
    (dict(patch_size=(48, 24, 3)), "multiples of 16, at least 32"),
    (dict(deep_supervision=True), "no deep supervision"),
])
def test_bad_slice_model_settings_are_named(kwargs, words):
    settings = dict(network="unet2d", filters=(4, 4, 8, 8, 16), patch_size=(32, 32, 3)) | kwargs
    with pytest.raises(ValueError, match=words):
        build_model(**settings)


def test_config_checks_network_optimizer_and_slices():
    with pytest.raises(ValueError, match="network must be one of"):
        TrainConfig(network="vnet")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="odd number of slices"):
        TrainConfig(network="unet2d", patch_size=(32, 32, 2))


def test_train_resume_and_predict_slice_by_slice(phantom_case, tmp_path):
    case = phantom_case(0)
    config = TrainConfig(**TINY_2D, steps=4, checkpoint_every=2)
    first = train_model(config, [case], out_dir=tmp_path / "a", stop_after=2, progress=False)
    assert first.steps == 2
    resumed = train_model(config, [case], out_dir=tmp_path / "a", resume=True, progress=False)
    whole = train_model(config, [case], out_dir=tmp_path / "b", progress=False)
    a = torch.load(resumed.model_path, weights_only=True)["model"]
    b = torch.load(whole.model_path, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # resume is bit-identical for the slice model too
    model, loaded = load_model(whole.model_path)
    assert loaded.network == "unet2d"
    prediction = predict_case(model, case, loaded)
    assert prediction.shape == case.image.shape and prediction.dtype == np.uint8
    assert set(np.unique(prediction)) <= {0, 1, 2}


def test_host_tumors_ignore_leaves_real_tumours_out_of_the_loss(phantom_case):
    from synth.labels import IGNORE
    from train.loop import PatchSampler
    from train.losses import build_loss

    host = phantom_case(0)  # a liver with real (phantom) tumours
    assert host.has_tumor
    config = TrainConfig(**TINY_2D, steps=1, synthetic_probability=1.0, host_tumors="ignore")
    sampler = PatchSampler([], config, hosts=[host])
    labels = np.concatenate([sampler.batch(step)[1] for step in range(12)])
    assert (labels == IGNORE).any()  # real tumours in the patches are marked
    assert (labels == 2).any()  # synthetic ones are tumour
    keep = TrainConfig(**TINY_2D, steps=1, synthetic_probability=1.0)
    assert not (np.concatenate([PatchSampler([], keep, hosts=[host]).batch(s)[1] for s in range(12)])
                == IGNORE).any()
    # The loss leaves ignored voxels out: changing the logits there changes nothing.
    loss = build_loss("dice_ce")
    with_ignored = [i for i in range(len(labels)) if (labels[i, :, :, :, 1] == IGNORE).any()]
    target = torch.from_numpy(labels[with_ignored[:2], :, :, :, 1:2].astype(np.int64))
    logits = torch.randn(len(target), 3, *target.shape[2:])
    other = torch.where((target == IGNORE).expand_as(logits), torch.tensor(50.0), logits)
    assert torch.allclose(loss([logits], target), loss([other], target))
    changed = torch.where((target != IGNORE).expand_as(logits), torch.tensor(50.0), logits)
    assert not torch.allclose(loss([logits], target), loss([changed], target))
    with pytest.raises(ValueError, match="needs loss='dice_ce'"):
        TrainConfig(host_tumors="ignore", loss="composite")
