"""Training the diffusion model: crops, loss going down, outputs, checkpoints and resume."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from synth.diffusion import TINY, DiffusionConfig, build_model, load_model, train_diffusion  # noqa: E402
from synth.diffusion.training import evaluation_loss  # noqa: E402
from synth.diffusion.training_data import case_arrays, collect_crops  # noqa: E402
from synth.phantom import make_phantom  # noqa: E402

CONFIG = DiffusionConfig(**TINY)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def crops():
    phantom = make_phantom((96, 96, 48), (1.5, 1.5, 2.0), lesions=3, seed=0)
    return collect_crops(case_arrays([(phantom.volume, phantom.label, phantom.spacing)]), CONFIG,
                         healthy_crops=3, seed=0)


def test_crops_hold_tumours_and_healthy_liver(crops):
    assert crops.n_tumor == 3 and crops.n_healthy == 3 and len(crops) == 6
    n = CONFIG.crop_size
    assert crops.image.shape == (6, n, n, n) and crops.image.dtype == np.float32
    assert crops.image.min() >= -1.0 and crops.image.max() <= 1.0
    tumour, healthy = slice(0, 3), slice(3, 6)
    assert all(crops.lesion[i].any() for i in range(3)) and not crops.lesion[healthy].any()
    assert (crops.region[tumour] | ~crops.lesion[tumour]).all()  # the region holds the lesion
    assert all(crops.region[i].sum() > crops.lesion[i].sum() for i in range(3))  # plus a margin
    assert all(crops.region[i].any() and not crops.region[i, 0].any() for i in range(6))
    centre = n // 2
    assert all(crops.lesion[i, centre - 2:centre + 2, centre - 2:centre + 2, centre - 2:centre + 2].any()
               for i in range(3))


def test_a_few_training_steps_lower_the_loss_and_write_the_model(crops, tmp_path):
    before = evaluation_loss(build_model(CONFIG, seed=0), crops, batches=2)
    result = train_diffusion(None, tmp_path, config=CONFIG, steps=8, batch_size=2, learning_rate=3e-3,
                             ema_decay=0.5, crops=crops, progress=False, checkpoint_every=8)
    after = evaluation_loss(result.model, crops, batches=2)
    assert after < 0.7 * before
    assert len(result.losses) == 8 and np.isfinite(result.losses).all()
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "weights.safetensors", "losses.csv", "loss_curve.png", "checkpoint"} <= names
    with open(tmp_path / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert np.allclose([float(r["loss"]) for r in rows], result.losses, atol=1e-5)
    assert (tmp_path / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.info["steps"] == 8
    assert evaluation_loss(loaded, crops, batches=2) == pytest.approx(after)


def test_resume_continues_exactly(crops, tmp_path):
    options = dict(batch_size=2, learning_rate=1e-3, crops=crops, progress=False, checkpoint_every=1)
    straight = train_diffusion(None, tmp_path / "a", config=CONFIG, steps=3, **options)
    train_diffusion(None, tmp_path / "b", config=CONFIG, steps=1, **options)
    resumed = train_diffusion(None, tmp_path / "b", steps=3, resume=True, **options)
    assert resumed.losses == straight.losses
    for (name, a), b in zip(straight.model.unet.state_dict().items(), resumed.model.unet.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="another config"):
        train_diffusion(None, tmp_path / "b", config=DiffusionConfig(**{**TINY, "spacing_mm": 2.0}), steps=5,
                        resume=True, **options)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_diffusion(None, tmp_path / "c", steps=2, resume=True, **options)


def test_bad_training_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="steps must be"):
        train_diffusion(None, tmp_path, config=CONFIG, steps=0)
    volume = np.zeros((32, 32, 32), dtype=np.int16)
    with pytest.raises(ValueError, match="mask is empty"):
        case_arrays([(volume, np.zeros_like(volume, dtype=np.uint8), (1, 1, 1))])
    liver = np.zeros_like(volume, dtype=np.uint8)
    liver[8:24, 8:24, 8:24] = 1
    with pytest.raises(ValueError, match="no training crops"):
        collect_crops(case_arrays([(volume, liver, (1, 1, 1))]), CONFIG, healthy_crops=0)
    with pytest.raises(ValueError, match="training case 0"):
        case_arrays(["not a case"])


def test_lits117_tumour_crops(lits117):
    config = DiffusionConfig()  # the default 32^3 crop at 1 mm
    crops = collect_crops([(lits117.volume, lits117.label, lits117.spacing)], config, healthy_crops=4, seed=0)
    assert crops.n_tumor >= 30 and crops.n_healthy == 4
    assert crops.image.shape[1:] == (32, 32, 32)
    tumour = crops.image[:crops.n_tumor][crops.lesion[:crops.n_tumor]]
    healthy_liver = crops.image[crops.n_tumor:][crops.region[crops.n_tumor:]]
    assert np.median(tumour) < np.median(healthy_liver)  # LiTS-117's tumours are hypodense


def test_cli_diffusion_train_on_lits117(shared_data, tmp_path, capsys):
    from tumorsynth.cli import main

    out = tmp_path / "model"
    status = main(["diffusion", "train", "--data", str(shared_data / "lits117"), "--out", str(out),
                   "--steps", "2", "--tiny", "--batch-size", "1"])
    assert status == 0, capsys.readouterr().err
    assert "trained 2 steps" in capsys.readouterr().out
    assert load_model(out, device="cpu").config.crop_size == 16
    status = main(["diffusion", "train", "--data", str(tmp_path / "none"), "--out", str(out)])
    assert status == 2 and "no such file or folder" in capsys.readouterr().err
