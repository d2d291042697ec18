"""train.loop options of the ablation: synthetic_method="diffusion" and augmentation="torchio"."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("torchio")

from synth.diffusion import TINY as TINY_DIFFUSION  # noqa: E402
from synth.diffusion import DiffusionConfig, build_model, save_model  # noqa: E402
from train.loop import PatchSampler, TrainConfig, train_model  # noqa: E402
from train.loop.augmentation import augmentation_block, denormalise_hu  # noqa: E402
from train.loop.sampling import normalise_hu  # noqa: E402

TINY = dict(patch_size=(32, 32, 32), batch_size=2, filters=(4, 8, 16), device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tumour_case(phantom_case):
    return phantom_case(0)


@pytest.fixture(scope="module")
def healthy_host(phantom_case):
    return phantom_case(1, lesions=0)


@pytest.fixture(scope="module")
def diffusion_dir(tmp_path_factory):
    """A tiny untrained diffusion model with jittered weights (its lesions are noise-like, but
    every contract of the insertion holds whatever the weights), saved as a model folder."""
    model = build_model(DiffusionConfig(**{**TINY_DIFFUSION, "sampling_steps": 2}), seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return save_model(model.to("cpu"), tmp_path_factory.mktemp("tiny_diffusion"))


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- config -------------------------------------------------------------------------------------
def test_new_settings_round_trip_through_json(diffusion_dir):
    config = TrainConfig(**TINY, synthetic_method="diffusion", synthetic_model=diffusion_dir,
                         augmentation="torchio")
    assert isinstance(config.synthetic_model, str)  # a Path is stored as a string
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_defaults_are_the_heuristic_without_augmentation():
    config = TrainConfig()
    assert (config.synthetic_method, config.synthetic_model, config.augmentation) == ("heuristic", None, "none")


@pytest.mark.parametrize("kwargs, words", [
    ({"synthetic_method": "gan"}, "synthetic_method must be one of heuristic, diffusion"),
    ({"synthetic_method": "diffusion"}, "needs synthetic_model"),
    ({"synthetic_model": "models/x"}, "only used with synthetic_method='diffusion'"),
    ({"augmentation": "monai"}, "augmentation must be one of none, torchio"),
])
def test_config_rejects_bad_new_values(kwargs, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**kwargs)


def test_a_missing_model_folder_fails_when_training_starts(tumour_case, healthy_host, tmp_path):
    config = TrainConfig(**TINY, steps=500, synthetic_probability=0.5, synthetic_method="diffusion",
                         synthetic_model=str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match="no-such-model.*no such folder"):
        train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing started


def test_a_folder_that_is_not_a_model_is_a_clear_error(tumour_case, healthy_host, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = TrainConfig(**TINY, synthetic_probability=1.0, synthetic_method="diffusion",
                         synthetic_model=str(empty))
    with pytest.raises(ValueError, match="empty"):
        PatchSampler([tumour_case], config, hosts=[healthy_host])


# --- diffusion ----------------------------------------------------------------------------------
def test_diffusion_synthetic_sample_has_new_tumour(healthy_host, diffusion_dir):
    config = TrainConfig(**TINY, synthetic_probability=1.0, synthetic_method="diffusion",
                         synthetic_model=str(diffusion_dir), synthetic_size="small", synthetic_count=(1, 1))
    sampler = PatchSampler([], config, hosts=[healthy_host])
    assert sampler.insert_options["method"] == "diffusion"
    model = sampler.insert_options["model"]
    found = 0
    for seed in range(3):
        image, label = sampler.synthetic_patch(np.random.default_rng(seed))
        assert image.shape == label.shape == (32, 32, 32) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 2}
        found += int((label == 2).any())  # the host has no tumour: any label 2 is new
    assert found >= 2
    # The same model object for every sample: loaded once, not per call.
    sampler.synthetic_patch(np.random.default_rng(9))
    assert sampler.insert_options["model"] is model


def test_diffusion_patch_differs_from_the_heuristic_one(healthy_host, diffusion_dir):
    common = dict(**TINY, synthetic_probability=1.0, synthetic_size="small", synthetic_count=(1, 1))
    heuristic = PatchSampler([], TrainConfig(**common), hosts=[healthy_host])
    diffusion = PatchSampler([], TrainConfig(**common, synthetic_method="diffusion",
                                             synthetic_model=str(diffusion_dir)), hosts=[healthy_host])
    a_image, a_label = heuristic.synthetic_patch(np.random.default_rng(0))
    b_image, b_label = diffusion.synthetic_patch(np.random.default_rng(0))
    assert (a_label == 2).any() and np.array_equal(a_label, b_label)  # same place, same shape
    tumour = a_label == 2
    assert not np.allclose(a_image[tumour], b_image[tumour])  # another appearance


def test_training_with_diffusion_tumours_finishes_and_resumes_identically(tumour_case, healthy_host,
                                                                          diffusion_dir, tmp_path):
    config = TrainConfig(**TINY, steps=3, synthetic_probability=0.5, synthetic_method="diffusion",
                         synthetic_model=str(diffusion_dir), synthetic_size="small", synthetic_count=(1, 1),
                         checkpoint_every=1, seed=2)
    whole = train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "whole", progress=False)
    assert whole.steps == 3 and whole.model_path.name == "model.pt"
    assert all(np.isfinite(row["loss"]) for row in whole.history)
    part = train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "part",
                       stop_after=2, progress=False)
    assert part.steps == 2
    resumed = train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "part",
                          resume=True, progress=False)
    assert resumed.steps == 3
    assert _same_weights(_weights(whole.model_path), _weights(resumed.model_path))


# --- augmentation -------------------------------------------------------------------------------
def test_augmentation_block_is_the_pipelines_crop_rule():
    assert augmentation_block((32, 32, 32)) == (40, 40, 40)
    assert augmentation_block((96, 96, 48)) == (120, 120, 60)


def test_denormalise_inverts_normalise_inside_the_window():
    hu = np.array([-200.0, -50.0, 0.0, 120.0, 300.0], dtype=np.float32)
    assert np.allclose(denormalise_hu(normalise_hu(hu, (-200, 300)), (-200, 300)), hu, atol=1e-3)


def test_augmented_batches_differ_keep_labels_and_shapes(tumour_case, healthy_host):
    plain = PatchSampler([tumour_case], TrainConfig(**TINY, synthetic_probability=0.5, seed=4),
                         hosts=[healthy_host])
    augmented = PatchSampler([tumour_case], TrainConfig(**TINY, synthetic_probability=0.5, seed=4,
                                                        augmentation="torchio"), hosts=[healthy_host])
    differing = 0
    for step in range(3):
        images, labels = augmented.batch(step)
        plain_images, _ = plain.batch(step)
        assert images.shape == labels.shape == (2, 1, 32, 32, 32)
        assert images.dtype == np.float32 and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1, 2}
        assert images.min() >= 0.0 and images.max() <= 1.0
        differing += int(not np.array_equal(images, plain_images))
    assert differing == 3


def test_augmentation_changes_the_patch_cut_at_the_same_place(tumour_case):
    """With one case and one patch centre, the augmented patch differs from the plain patch at the
    same centre, yet keeps mostly its label (a mild deformation, not another place)."""
    config = TrainConfig(**TINY, augmentation="torchio", foreground_share=1.0, tumor_share=0.0)
    sampler = PatchSampler([tumour_case], config)
    case = sampler.cases[0]
    replay = np.random.default_rng(1)
    replay.integers(1)  # real_patch's choice of the (only) case
    _, centre = sampler.draw_centre(case, replay)
    image, label = sampler.real_patch(np.random.default_rng(1))
    from train.loop.sampling import _crop

    block_image, block_label = _crop([case.image, case.label], centre, sampler.block)
    plain_image, plain_label = block_image[4:36, 4:36, 4:36], block_label[4:36, 4:36, 4:36]
    assert not np.array_equal(image, plain_image)
    assert np.mean(label == plain_label) > 0.6


def test_same_seed_same_augmented_batch_and_torch_rng_untouched(tumour_case, healthy_host):
    config = TrainConfig(**TINY, synthetic_probability=0.5, seed=7, augmentation="torchio")
    first = PatchSampler([tumour_case], config, hosts=[healthy_host])
    second = PatchSampler([tumour_case], config, hosts=[healthy_host])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a_images, a_labels = first.batch(5)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's torch RNG is left alone
    b_images, b_labels = second.batch(5)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    c_images, _ = first.batch(6)
    assert not np.array_equal(a_images, c_images)


def test_resume_with_augmentation_is_bit_identical(tumour_case, healthy_host, tmp_path):
    config = TrainConfig(**TINY, steps=3, synthetic_probability=0.5, augmentation="torchio",
                         checkpoint_every=1, seed=3)
    whole = train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "whole", progress=False)
    train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "part", stop_after=1,
                progress=False)
    resumed = train_model(config, [tumour_case], hosts=[healthy_host], out_dir=tmp_path / "part",
                          resume=True, progress=False)
    assert resumed.steps == whole.steps == 3
    assert _same_weights(_weights(whole.model_path), _weights(resumed.model_path))
    plain = train_model(TrainConfig(**{**config.to_dict(), "augmentation": "none"}), [tumour_case],
                        hosts=[healthy_host], out_dir=tmp_path / "plain", progress=False)
    assert not _same_weights(_weights(whole.model_path), _weights(plain.model_path))


# --- command line -------------------------------------------------------------------------------
def test_train_command_options_reach_the_config(tmp_path):
    import argparse

    from train.loop import commands

    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--synthetic-method", "diffusion",
                              "--synthetic-model", str(tmp_path / "m"), "--augmentation", "torchio"])
    config = commands._config(args)
    assert (config.synthetic_method, config.synthetic_model, config.augmentation) == (
        "diffusion", str(tmp_path / "m"), "torchio")
    assert commands._config(parser.parse_args(["--data", "d", "--out", "o"])) == TrainConfig()
    for bad in (["--synthetic-method", "gan"], ["--augmentation", "monai"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--data", "d", "--out", "o", *bad])
    with pytest.raises(ValueError, match="needs synthetic_model"):
        commands._config(parser.parse_args(["--data", "d", "--out", "o", "--synthetic-method", "diffusion"]))


def test_defaults_import_neither_torchio_nor_the_diffusion_model():
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from synth.phantom import make_phantom\n"
            "from train.data import Case\n"
            "from train.loop import PatchSampler, TrainConfig\n"
            "ph = make_phantom(shape=(40, 36, 24), spacing=(3, 3, 3), lesions=1, seed=0)\n"
            "case = Case('p', ph.volume.astype(np.float32), ph.label, (3.0, 3.0, 3.0), ph.affine)\n"
            "PatchSampler([case], TrainConfig(patch_size=(16, 16, 16), synthetic_probability=0.5),\n"
            "             hosts=[case]).batch(0)\n"
            "print(sorted(m for m in ('torchio', 'synth.diffusion', 'diffusers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
