"""The quality gate wherever lesions are inserted: ``insert`` / ``demo`` / ``synthesize``
(``--quality-gate``), the TorchIO and MONAI transforms (``quality_filter=``) and the trainer
(``TrainConfig.synthetic_quality_gate``, ``--synthetic-quality-gate``); read once per process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_realism_gate import toy_gate  # the tests' logistic gate with small random weights

from synth.labels import Label
from synth.realism import gate as gate_module
from tumorsynth.cli import main


@pytest.fixture()
def gate_file(tmp_path):
    """A gate that rejects some draws (threshold 0.5 on scores spread around it)."""
    return toy_gate(0.5).save(tmp_path / "gate.json")


# --- the cache ----------------------------------------------------------------------------------


def test_a_gate_file_is_read_once_until_it_changes(gate_file, monkeypatch):
    first = gate_module.cached_gate(gate_file)
    assert gate_module.cached_gate(str(gate_file)) is first  # the same object: not read again
    assert gate_module.as_gate(gate_file) is first
    toy_gate(0.25).save(gate_file)  # rewritten: a new size or time, read again
    assert gate_module.cached_gate(gate_file).threshold == 0.25
    with pytest.raises(FileNotFoundError, match="--save-gate"):
        gate_module.cached_gate(gate_file.parent / "missing.json")


# --- command line -------------------------------------------------------------------------------


def _lesions(path) -> dict:
    return json.loads(path.read_text())


def test_insert_with_a_quality_gate_records_the_gate_and_the_tries(shared_data, gate_file, tmp_path, capsys):
    ts = shared_data / "totalseg_example"
    out = tmp_path / "gated"
    assert main(["insert", "--image", str(ts / "ct.nii.gz"), "--mask", str(ts / "liver.nii.gz"), "--out", str(out),
                 "--size", "small", "--count", "2", "--seed", "3", "--quality-gate", str(gate_file)]) == 0
    report = _lesions(out / "lesions.json")
    assert report["quality_gate"] == str(gate_file)
    assert len(report["lesions"]) == 2
    for lesion in report["lesions"]:
        assert 1 <= lesion["quality_tries"] <= 5 and 0.0 <= lesion["quality_score"] <= 1.0
        # A kept lesion passed, unless all five draws failed (then the best one is kept).
        assert lesion["quality_score"] >= 0.5 or lesion["quality_tries"] == 5
    plain = tmp_path / "plain"
    assert main(["insert", "--image", str(ts / "ct.nii.gz"), "--mask", str(ts / "liver.nii.gz"), "--out", str(plain),
                 "--size", "small", "--count", "2", "--seed", "3"]) == 0
    report = _lesions(plain / "lesions.json")
    assert "quality_gate" not in report and "quality_tries" not in report["lesions"][0]  # as before
    capsys.readouterr()


@pytest.mark.parametrize("content, message", [(None, "not found"), ("", "is empty"), ("[1]", "not a tumorsynth")])
def test_a_missing_or_bad_gate_is_refused_before_any_work(tmp_path, capsys, content, message):
    path = tmp_path / "gate.json"
    if content is not None:
        path.write_text(content)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quality-gate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--quality-gate" in err and message in err
    assert not (tmp_path / "demo").exists()  # refused before the phantom was written


def test_demo_takes_a_quality_gate(gate_file, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--count", "1", "--size", "small",
                 "--quality-gate", str(gate_file)]) == 0
    report = _lesions(tmp_path / "demo" / "lesions.json")
    assert report["quality_gate"] == str(gate_file) and report["lesions"][0]["quality_tries"] >= 1
    capsys.readouterr()


def test_synthesize_passes_the_gate_to_every_variant(shared_data, gate_file, tmp_path, capsys, monkeypatch):
    reads = []
    load = gate_module.QualityGate.load.__func__
    monkeypatch.setattr(gate_module.QualityGate, "load", classmethod(lambda cls, *a, **k: reads.append(a) or
                                                                     load(cls, *a, **k)))
    out = tmp_path / "variants"
    assert main(["synthesize", "--data", str(shared_data / "lits117"), "--out", str(out),
                 "--variants", "3", "--workers", "1", "--engine", "processes", "--size", "small", "--count", "1",
                 "--quality-gate", str(gate_file)]) == 0
    assert len(reads) == 1  # one process (--workers 1): the file is read once for its three variants
    reports = [_lesions(path) for path in sorted(out.glob("*/variant-*/lesions.json"))]
    assert len(reports) == 3
    assert all(r["quality_gate"] == str(gate_file) and r["lesions"][0]["quality_tries"] >= 1 for r in reports)
    assert main(["synthesize", "--data", str(shared_data / "lits117"), "--out", str(tmp_path / "x"),
                 "--variants", "1", "--workers", "1", "--quality-gate", str(tmp_path / "missing.json")]) == 2
    assert "--quality-gate" in capsys.readouterr().err


# --- transforms ---------------------------------------------------------------------------------


def _subject(case):
    import torch
    import torchio as tio

    affine = case.volume_image.affine
    return tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(np.array(case.volume))[None], affine=affine),
                       seg=tio.LabelMap(tensor=torch.from_numpy(np.array(case.label))[None], affine=affine))


def test_torchio_transform_with_a_gate_file_inserts_and_replays(totalseg_example, gate_file):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchio")
    from augment import RandomTumorInsertion

    subject = _subject(totalseg_example)
    torch.manual_seed(1)
    out = RandomTumorInsertion(size="small", count=1, quality_filter=gate_file, on_failure="raise")(subject)
    new = (out.seg.data == Label.TUMOR) & (subject.seg.data != Label.TUMOR)
    assert new.any()
    applied = out.get_applied_transforms()[0]
    assert applied.synthesis_options == {"quality_filter": str(gate_file)}  # the file, recorded for replay
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed.seg.data, out.seg.data)
    with pytest.raises(FileNotFoundError, match="not found"):
        RandomTumorInsertion(quality_filter=gate_file.parent / "missing.json")
    with pytest.raises(TypeError, match="quality_filter"):
        RandomTumorInsertion(quality_filter=0.5)
    with pytest.raises(ValueError, match="as an argument of the transform"):
        RandomTumorInsertion(quality_filter=gate_file, synthesis_options={"quality_filter": gate_file})


def test_monai_transform_redraws_with_an_unpassable_gate(totalseg_example, monkeypatch):
    pytest.importorskip("monai")
    from augment import RandTumorInsertiond

    gate = toy_gate(1.0, max_tries=3)  # nothing passes: every lesion takes all three draws
    scored = []
    original = type(gate).score_inserted
    monkeypatch.setattr(type(gate), "score_inserted",
                        lambda self, *args: scored.append(1) or original(self, *args))
    transform = RandTumorInsertiond(keys="image", label_key="label", size="small", count=1,
                                    spacing=totalseg_example.spacing, quality_filter=gate, on_failure="raise")
    transform.set_random_state(seed=2)
    data = {"image": np.array(totalseg_example.volume)[None], "label": np.array(totalseg_example.label)[None]}
    out = transform(data)
    assert ((np.asarray(out["label"]) == Label.TUMOR) & (data["label"] != Label.TUMOR)).any()
    assert len(scored) == 3


# --- trainer ------------------------------------------------------------------------------------


def test_train_config_carries_the_gate_and_the_sampler_uses_it(phantom_case, gate_file):
    pytest.importorskip("torch")
    from train.loop import PatchSampler, TrainConfig

    config = TrainConfig(patch_size=(32, 32, 32), batch_size=1, filters=(4, 8, 16), device="cpu",
                         synthetic_probability=1.0, synthetic_size="small", synthetic_count=(1, 1),
                         synthetic_quality_gate=gate_file)
    assert config.synthetic_quality_gate == str(gate_file)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    sampler = PatchSampler([], config, hosts=[phantom_case(1, lesions=0)])
    assert sampler.insert_options["quality_filter"] is gate_module.cached_gate(gate_file)
    image, label = sampler.synthetic_patch(np.random.default_rng(0))
    assert (label == Label.TUMOR).any()
    with pytest.raises(ValueError, match="synthetic_quality_gate must be the path"):
        TrainConfig(synthetic_quality_gate=3)


@pytest.mark.parametrize("content, message", [(None, "not found"), ('{"format": "x', "not valid JSON")])
def test_trainer_refuses_a_missing_or_bad_gate_at_the_start(phantom_case, tmp_path, content, message):
    pytest.importorskip("torch")
    from train.loop import TrainConfig, train_model

    path = tmp_path / "gate.json"
    if content is not None:
        path.write_text(content)
    config = TrainConfig(patch_size=(32, 32, 32), batch_size=1, steps=1, filters=(4, 8, 16), device="cpu",
                         synthetic_probability=1.0, synthetic_quality_gate=path)
    with pytest.raises(ValueError, match=f"synthetic_quality_gate: .*{message}"):
        train_model(config, [], hosts=[phantom_case(1, lesions=0)], out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_train_command_refuses_a_missing_gate(shared_data, tmp_path, capsys):
    assert main(["train", "--data", str(shared_data / "lits117"), "--out", str(tmp_path / "run"),
                 "--synthetic-quality-gate", str(tmp_path / "missing.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "synthetic_quality_gate" in err and "not found" in err
