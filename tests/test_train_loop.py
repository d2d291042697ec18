"""train.loop: patch sampling, synthetic samples, training smoke run, resume, prediction."""

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from synth.phantom import make_phantom
from train.data import Case
from train.loop import PatchSampler, TrainConfig, load_model, predict_case, train_model
from train.loop.sampling import prepare_case

TINY = dict(patch_size=(32, 32, 32), batch_size=2, filters=(4, 8, 16), device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tumour_case(phantom_case):
    case = phantom_case(0)
    assert case.has_tumor
    return case


@pytest.fixture(scope="module")
def healthy_host(phantom_case):
    return phantom_case(1, lesions=0)


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- config -------------------------------------------------------------------------------------
def test_config_round_trips_through_json():
    config = TrainConfig(**TINY, steps=7, hu_window=(-100.0, 200.0), synthetic_size="3,10")
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and isinstance(again.patch_size, tuple)


@pytest.mark.parametrize("kwargs, words", [
    ({"foreground_share": 0.8, "tumor_share": 0.3}, "at most 1"),
    ({"hu_window": (300.0, -200.0)}, "low < high"),
    ({"synthetic_size": "10,3"}, "min_mm <= max_mm"),
    ({"patch_size": (32, 32)}, "three positive"),
])
def test_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown TrainConfig keys: lr"):
        TrainConfig.from_dict({"lr": 0.1})


# --- sampling -----------------------------------------------------------------------------------
def test_sampler_centres_the_requested_shares(tumour_case):
    config = TrainConfig(**TINY, foreground_share=0.4, tumor_share=0.3)
    sampler = PatchSampler([tumour_case], config)
    prepared = sampler.cases[0]
    rng = np.random.default_rng(5)
    draws = [sampler.draw_centre(prepared, rng) for _ in range(3000)]
    labels = np.array([prepared.label[c] for _, c in draws])
    kinds = [k for k, _ in draws]
    tumour_fraction = np.mean(labels == 2)
    foreground_fraction = np.mean(labels >= 1)
    assert kinds.count("tumor") / 3000 == pytest.approx(0.3, abs=0.03)
    assert kinds.count("liver") / 3000 == pytest.approx(0.4, abs=0.03)
    # random centres land in tumour rarely: the share is (almost all) the requested one
    assert 0.27 <= tumour_fraction <= 0.35
    background_share = np.mean(prepared.label >= 1)
    assert foreground_fraction == pytest.approx(0.7 + 0.3 * background_share, abs=0.04)


def test_sampler_gives_tumour_share_to_liver_when_case_has_no_tumour(healthy_host):
    config = TrainConfig(**TINY, foreground_share=0.5, tumor_share=0.33)
    sampler = PatchSampler([healthy_host], config)
    rng = np.random.default_rng(0)
    kinds = [sampler.draw_centre(sampler.cases[0], rng)[0] for _ in range(2000)]
    assert "tumor" not in kinds
    assert kinds.count("liver") / 2000 == pytest.approx(0.83, abs=0.03)


def test_sampler_pads_cases_smaller_than_the_patch(tumour_case):
    small = Case("small", tumour_case.image[20:40, 20:38, 10:22], tumour_case.label[20:40, 20:38, 10:22],
                 tumour_case.spacing, tumour_case.affine)
    sampler = PatchSampler([small], TrainConfig(**TINY))
    images, labels = sampler.batch(0)
    assert images.shape == labels.shape == (2, 1, 32, 32, 32)
    assert images.dtype == np.float32 and labels.dtype == np.uint8
    assert 0.0 <= images.min() and images.max() <= 1.0
    # every small-case voxel is in the (padded) patch; the padding is label 0
    assert (labels[0] >= 1).sum() == (small.label >= 1).sum()


def test_batches_depend_only_on_seed_and_step(tumour_case):
    sampler = PatchSampler([tumour_case], TrainConfig(**TINY, seed=3))
    a, b = sampler.batch(4), sampler.batch(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(sampler.batch(5)[0], a[0])
    assert not np.array_equal(sampler.batch(4, rank=1)[0], a[0])


def test_synthetic_samples_have_new_tumours_in_a_healthy_host(tumour_case, healthy_host):
    before = healthy_host.image.copy(), healthy_host.label.copy()
    assert not healthy_host.has_tumor
    config = TrainConfig(**TINY, synthetic_probability=1.0, synthetic_size="8,15", synthetic_count=(1, 2))
    sampler = PatchSampler([tumour_case], config, hosts=[healthy_host])
    tumor_voxels = [int((sampler.batch(step)[1] == 2).sum()) for step in range(3)]
    assert sum(v > 0 for v in tumor_voxels) >= 2
    assert np.array_equal(healthy_host.image, before[0]) and np.array_equal(healthy_host.label, before[1])


def test_synthetic_batches_do_not_depend_on_the_batches_before(tumour_case, healthy_host):
    """Insertions write into the sampler's host in place and undo it: step 2 is the same whether
    steps 0 and 1 were drawn first or not, and the host ends as it began."""
    config = TrainConfig(**TINY, synthetic_probability=1.0, synthetic_size="8,15", synthetic_count=(1, 2))
    fresh = PatchSampler([tumour_case], config, hosts=[healthy_host])
    alone = fresh.batch(2)
    used = PatchSampler([tumour_case], config, hosts=[healthy_host])
    scan = used.hosts[0].scan
    start = scan.volume.copy(), scan.label.copy()
    used.batch(0), used.batch(1)
    after = used.batch(2)
    assert np.array_equal(alone[0], after[0]) and np.array_equal(alone[1], after[1])
    assert (after[1] == 2).any()
    assert np.array_equal(scan.volume, start[0]) and np.array_equal(scan.label, start[1])


@pytest.mark.parametrize("centre, shares, on_lesion", [
    ("lesion", dict(tumor_share=0.0, foreground_share=0.0), True),  # always on an inserted lesion
    ("shares", dict(tumor_share=1.0, foreground_share=0.0), True),
    ("shares", dict(tumor_share=0.0, foreground_share=1.0), False),  # on host liver, lesions elsewhere
])
def test_synthetic_patch_centres_follow_synthetic_centre(tumour_case, healthy_host, centre, shares, on_lesion):
    config = TrainConfig(**{**TINY, "patch_size": (16, 16, 16)}, **shares, synthetic_probability=1.0,
                         synthetic_size="8,12", synthetic_count=(1, 1), synthetic_centre=centre)
    sampler = PatchSampler([tumour_case], config, hosts=[healthy_host])
    rng = np.random.default_rng(2)
    labels = [sampler.synthetic_patch(rng)[1] for _ in range(16)]
    with_lesion = np.mean([(label == 2).any() for label in labels])  # 16^3 voxels: 48 mm of a 120-190 mm host
    if on_lesion:
        assert with_lesion == 1.0
    else:
        assert with_lesion <= 0.4
        assert np.mean([label[8, 8, 8] >= 1 for label in labels]) >= 0.8  # centred on the host's liver


def test_synthetic_centre_must_be_known():
    with pytest.raises(ValueError, match="synthetic_centre must be one of lesion, shares"):
        TrainConfig(synthetic_centre="middle")


def test_synthetic_probability_needs_hosts(tumour_case):
    with pytest.raises(ValueError, match="no hosts"):
        PatchSampler([tumour_case], TrainConfig(**TINY, synthetic_probability=0.5))


def test_prepare_case_normalises_the_hu_window(tumour_case):
    prepared = prepare_case(tumour_case, (32, 32, 32), (-200.0, 300.0))
    expected = np.clip((tumour_case.image - -200.0) / 500.0, 0, 1)
    assert np.allclose(prepared.image, expected, atol=1e-6)


# --- training -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def six_steps(tmp_path_factory, tumour_case):
    """An uninterrupted 6-step run, the reference for the resume and seed tests."""
    config = TrainConfig(**TINY, steps=6, seed=0)
    out = tmp_path_factory.mktemp("uninterrupted")
    return config, train_model(config, [tumour_case], out_dir=out, progress=False)


def test_smoke_run_writes_checkpoints_and_logs(tmp_path, tumour_case):
    config = TrainConfig(**TINY, steps=10, checkpoint_every=4)
    result = train_model(config, [tumour_case], out_dir=tmp_path, progress=False)
    for name in ("checkpoint.pt", "model.pt", "log.csv", "log.json"):
        assert (tmp_path / name).is_file(), name
    assert result.steps == 10 and result.model_path == tmp_path / "model.pt"
    with open(tmp_path / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = json.loads((tmp_path / "log.json").read_text())
    assert len(rows) == len(logged) == 10
    assert [r["step"] for r in logged] == list(range(1, 11))
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in logged)
    assert logged[0]["lr"] == pytest.approx(config.learning_rate)
    assert logged[-1]["lr"] < logged[0]["lr"]  # poly decay
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10 and TrainConfig.from_dict(state["config"]) == config
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_resume_gives_bit_identical_weights(tmp_path, tumour_case, six_steps):
    config, reference = six_steps
    first = train_model(config, [tumour_case], out_dir=tmp_path, stop_after=3, progress=False)
    assert first.steps == 3 and first.model_path.name == "checkpoint.pt"
    assert not (tmp_path / "model.pt").exists()
    second = train_model(config, [tumour_case], out_dir=tmp_path, resume=True, progress=False)
    assert second.steps == 6 and len(second.history) == 6
    assert _same_weights(_weights(second.model_path), _weights(reference.model_path))
    assert [r["loss"] for r in second.history] == [r["loss"] for r in reference.history]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tumour_case, six_steps):
    config, reference = six_steps
    again = train_model(config, [tumour_case], out_dir=tmp_path / "same", progress=False)
    assert _same_weights(_weights(again.model_path), _weights(reference.model_path))
    other = train_model(TrainConfig(**{**config.to_dict(), "seed": 1}), [tumour_case],
                        out_dir=tmp_path / "other", progress=False)
    assert not _same_weights(_weights(other.model_path), _weights(reference.model_path))


def test_existing_run_needs_resume_and_a_compatible_config(tumour_case, six_steps):
    config, reference = six_steps
    with pytest.raises(ValueError, match="already holds a run"):
        train_model(config, [tumour_case], out_dir=reference.out_dir, progress=False)
    changed = TrainConfig(**{**config.to_dict(), "learning_rate": 0.1})
    with pytest.raises(ValueError, match="differs in learning_rate"):
        train_model(changed, [tumour_case], out_dir=reference.out_dir, resume=True, progress=False)


def test_predict_case_and_load_model_round_trip(tumour_case, six_steps):
    config, reference = six_steps
    model, loaded = load_model(reference.model_path)
    assert loaded == config
    prediction = predict_case(model, tumour_case, loaded)
    assert prediction.shape == tumour_case.image.shape and prediction.dtype == np.uint8
    assert set(np.unique(prediction)) <= {0, 1, 2}


def test_load_model_rejects_a_foreign_file(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a tumorsynth model file"):
        load_model(tmp_path / "x.pt")


def test_validation_with_synthetic_tumours_and_deep_supervision(tmp_path, tumour_case, healthy_host):
    config = TrainConfig(patch_size=(32, 32, 32), batch_size=2, filters=(4, 8, 16), device="cpu",
                         steps=2, val_every=1, loss="composite", deep_supervision=True,
                         synthetic_probability=0.5, synthetic_size="small")
    result = train_model(config, [tumour_case], val_cases=[tumour_case], hosts=[healthy_host],
                         out_dir=tmp_path, progress=False)
    dice = [r["val_dice"] for r in result.history]
    assert all(d is not None and 0.0 <= d <= 1.0 for d in dice)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["val_dice"] == pytest.approx(max(dice))
    model, _ = load_model(tmp_path / "best.pt")
    assert predict_case(model, tumour_case, config).shape == tumour_case.image.shape


# --- command ------------------------------------------------------------------------------------
def test_train_command_on_a_lits_folder(tmp_path, capsys):
    import argparse

    from synth.io import save_nifti
    from train.loop import commands

    data = tmp_path / "lits"
    data.mkdir()
    for i in range(3):
        ph = make_phantom(shape=(40, 36, 24), spacing=(3, 3, 3), lesions=2, seed=10 + i)
        save_nifti(ph.volume, ph.affine, data / f"volume-{i}.nii.gz")
        save_nifti(ph.label, ph.affine, data / f"segmentation-{i}.nii.gz")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"filters": [4, 8, 16], "batch_size": 1, "device": "cpu"}))
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--data", str(data), "--out", str(out), "--config", str(config), "--steps", "2",
                              "--patch", "32", "--synthetic-probability", "0",
                              "--val-fraction", "0", "--test-fraction", "0", "--quiet"])
    assert commands.run(args) == 0
    assert f"model: {out / 'model.pt'}" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 2 and saved["patch_size"] == [32, 32, 32] and saved["synthetic_probability"] == 0
    assert len(json.loads((out / "log.json").read_text())) == 2
    # a second run into the same folder needs --resume
    assert commands.run(args) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_train_command_rejects_bad_options():
    import argparse

    from train.loop import commands

    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--hosts", "phantom:3", "--patch", "48,32,16"])
    assert args.hosts == 3 and args.patch == (48, 32, 16)
    for bad in (["--hosts", "real:3"], ["--patch", "32,32"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--data", "d", "--out", "o", *bad])



# --- DDP ----------------------------------------------------------------------------------------
DDP_SCRIPT = """
import os
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist
from synth.phantom import make_phantom
from train.data import Case
from train.loop import TrainConfig, train_model

ph = make_phantom(shape=(48, 40, 32), spacing=(3, 3, 3), lesions=2, seed=0)
case = Case("p", ph.volume.astype(np.float32), ph.label, (3.0, 3.0, 3.0), ph.affine)
config = TrainConfig(patch_size=(32, 32, 32), batch_size=1, steps=2, filters=(4, 8, 16), device="cpu")
result = train_model(config, [case], out_dir=sys.argv[1], progress=False)
assert not dist.is_initialized()  # the group created for the run is closed again
# each rank reports in a file of its own (printed lines of two processes can interleave)
Path(sys.argv[1], "rank-" + os.environ["RANK"] + ".done").write_text(str(result.steps))
"""


def test_two_process_gloo_ddp_run(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    # A session of its own, so that a hung run is ended with all its worker processes.
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the 2-process DDP run did not finish in 300 s")
    assert process.returncode == 0, stderr[-3000:]
    assert [(out / f"rank-{r}.done").read_text() for r in (0, 1)] == ["2", "2"]
    assert len(json.loads((out / "log.json").read_text())) == 2  # one writer, one row per step
    assert (out / "model.pt").is_file()


def test_loader_workers_do_not_change_the_run(tmp_path, tumour_case):
    weights = []
    for workers in (0, 1):
        config = TrainConfig(**TINY, steps=2, num_workers=workers)
        result = train_model(config, [tumour_case], out_dir=tmp_path / str(workers), progress=False)
        weights.append(_weights(result.model_path))
    assert _same_weights(*weights)
