"""Copy-paste beyond the core: the TorchIO and MONAI transforms, the trainer's synthetic_bank, and
the ablation arm real+copy-paste, whose bank per fold holds the training part's lesions only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torchio")

import torchio as tio  # noqa: E402

from augment import RandomTumorInsertion, RandTumorInsertiond  # noqa: E402
from synth.cases import Case  # noqa: E402
from synth.copy_paste import LesionBank, build_bank  # noqa: E402
from synth.labels import Label  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bank_dir(lits117, tmp_path_factory):
    case = Case("lits117", np.asarray(lits117.volume), np.asarray(lits117.label), lits117.spacing, np.eye(4))
    return build_bank([case], tmp_path_factory.mktemp("bank") / "lits117")


def _subject(case) -> tio.Subject:
    affine = case.volume_image.affine
    return tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(np.array(case.volume))[None], affine=affine),
                       seg=tio.LabelMap(tensor=torch.from_numpy(np.array(case.label))[None], affine=affine))


# --- transforms -------------------------------------------------------------------------------


def test_torchio_transform_pastes_banked_lesions_and_replays(totalseg_example, bank_dir):
    subject = _subject(totalseg_example)
    torch.manual_seed(0)
    out = RandomTumorInsertion(size="medium", count=2, method="copy-paste", bank=bank_dir, on_failure="raise")(subject)
    new = (out.seg.data == Label.TUMOR) & (subject.seg.data != Label.TUMOR)
    assert new.any() and torch.all(subject.seg.data[new] == Label.LIVER)
    assert not (subject.seg.data == Label.TUMOR).any()  # the input is not modified
    # The bank travels in the recorded settings: the history replays the same lesions.
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed.seg.data, out.seg.data)
    assert torch.allclose(replayed.ct.data.float(), out.ct.data.float())
    heuristic = out.get_applied_transforms()[0]
    assert heuristic.synthesis_options == {"method": "copy-paste", "bank": str(bank_dir)}


def test_monai_transform_pastes_banked_lesions(totalseg_example, bank_dir):
    bank = LesionBank.load(bank_dir)  # a loaded bank works as well as its folder
    transform = RandTumorInsertiond(keys="image", label_key="label", size="small", count=1,
                                    spacing=totalseg_example.spacing, method="copy-paste", bank=bank,
                                    on_failure="raise")
    transform.set_random_state(seed=3)
    data = {"image": np.array(totalseg_example.volume)[None], "label": np.array(totalseg_example.label)[None]}
    out = transform(data)
    new = (np.asarray(out["label"]) == Label.TUMOR) & (data["label"] != Label.TUMOR)
    assert new.any() and (data["label"][new] == Label.LIVER).all()


@pytest.mark.parametrize("options, message", [
    (dict(method="copy-paste"), "needs bank="),
    (dict(bank="bank/"), "bank= only applies to method='copy-paste'"),
    (dict(method="copy-paste", bank="bank/", model="model/"), "model= only applies to method='diffusion'"),
    (dict(method="cut-paste"), "method must be 'heuristic', 'diffusion' or 'copy-paste'"),
])
def test_bad_transform_methods_fail_when_built(options, message):
    with pytest.raises(ValueError, match=message):
        RandomTumorInsertion(**options)


# --- trainer ----------------------------------------------------------------------------------


def test_train_config_needs_a_bank_for_copy_paste_only(bank_dir):
    from train.loop import TrainConfig

    with pytest.raises(ValueError, match="needs synthetic_bank"):
        TrainConfig(synthetic_method="copy-paste")
    with pytest.raises(ValueError, match="synthetic_bank is only used with synthetic_method='copy-paste'"):
        TrainConfig(synthetic_bank=str(bank_dir))
    config = TrainConfig(synthetic_method="copy-paste", synthetic_bank=bank_dir)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_sampler_draws_copy_paste_patches(phantom_case, bank_dir, tmp_path):
    from train.loop import PatchSampler, TrainConfig

    config = TrainConfig(patch_size=(32, 32, 32), batch_size=2, filters=(4, 8, 16), device="cpu",
                         synthetic_probability=1.0, synthetic_method="copy-paste", synthetic_bank=str(bank_dir),
                         synthetic_size="small", synthetic_count=(1, 1))
    sampler = PatchSampler([], config, hosts=[phantom_case(1, lesions=0)])
    assert sampler.insert_options["method"] == "copy-paste"
    found = sum(int((sampler.synthetic_patch(np.random.default_rng(seed))[1] == Label.TUMOR).any())
                for seed in range(3))
    assert found >= 2  # the host has no tumour: every label 2 is pasted
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is empty"):
        PatchSampler([], TrainConfig(**{**config.to_dict(), "synthetic_bank": str(empty)}),
                     hosts=[phantom_case(1, lesions=0)])


# --- ablation ---------------------------------------------------------------------------------

TINY_KFOLD = {
    "name": "tiny-copy-paste",
    "data": {"source": "lits117-kfold", "preprocessing": {"target_spacing": [2.0, 2.0, 2.0], "crop_margin_mm": 4.0},
             "split": {"folds": 3, "gap_mm": 4.0}},
    "hosts": {"phantoms": 0, "training part": True},
    "arms": ["real", "real+copy-paste"],
    "seeds": [0],
    "train": {"network": "unet2d", "patch_size": [32, 32, 3], "batch_size": 2, "steps": 2, "filters": [4, 4, 8, 8, 8],
              "optimizer": "adamw", "learning_rate": 0.001, "checkpoint_every": 2, "device": "cpu", "amp": False},
    "synthetic": {"probability": 0.5, "size": "small"},
    "bootstrap": 50,
}


@pytest.fixture(scope="module")
def folds(shared_data):
    from train.ablation.config import validate_config
    from train.ablation.data import prepare_data

    cfg = validate_config(dict(TINY_KFOLD, data=dict(TINY_KFOLD["data"], path=str(shared_data / "lits117"))))
    return cfg, prepare_data(cfg, progress=False, say=lambda _: None)


def _world_z(case, voxel_z: float) -> float:
    return float((case.affine @ np.array([0.0, 0.0, voxel_z, 1.0]))[2])


def test_each_fold_bank_holds_training_lesions_only(folds, tmp_path):
    from train.ablation.bank import fold_bank
    from train.ablation.runner import train_config

    cfg, data = folds
    assert len(data) == 3
    for fold in data:
        folder = fold_bank(tmp_path, fold)
        bank = LesionBank.load(folder)
        train_ids = {case.case_id for case in fold.train}
        (test,) = fold.test
        # Only the training slabs gave lesions, and every one of their banked lesions came from them.
        assert set(bank.index["cases"]) == train_ids and test.case_id not in {d.case for d in bank.lesions}
        expected = len(LesionBank.load(build_bank(fold.train, tmp_path / f"again-{fold.fold}")))
        assert len(bank) == expected > 0
        # No banked lesion reaches the test slab: compare extents along z in world mm.
        test_low, test_high = sorted(_world_z(test, z) for z in (-0.5, test.image.shape[2] - 0.5))
        by_id = {case.case_id: case for case in fold.train}
        for entry in bank.index["lesions"]:
            slab = by_id[entry["case"]]
            start, stop = entry["crop_box"][2]
            low, high = sorted(_world_z(slab, z) for z in (start - 0.5, stop - 0.5))
            assert high <= test_low or low >= test_high, (entry["id"], fold.fold)
        # No banked lesion is one of the fold's test lesions (same voxels and values).
        test_lesions = {(int(s.lesion.sum()), round(float(s.volume[s.lesion].mean()), 2))
                        for s in _real_lesions(test)}
        assert not test_lesions & {(e["voxel_count"], round(e["lesion_mean_hu"], 2)) for e in bank.index["lesions"]}
        config = train_config(cfg, "real+copy-paste", 0, bank=folder)
        assert (config.synthetic_method, config.synthetic_bank) == ("copy-paste", str(folder))
        assert config.synthetic_probability == cfg["synthetic"]["probability"]


def _real_lesions(case):
    from synth.realism.compare import extract_real_lesions

    return extract_real_lesions(case.image, case.label, case.spacing, exclude_border=False)


def test_copy_paste_arm_needs_its_bank(folds):
    from train.ablation.config import ConfigError, validate_config
    from train.ablation.runner import train_config

    cfg, _ = folds
    with pytest.raises(ValueError, match="needs its fold's lesion bank"):
        train_config(cfg, "real+copy-paste", 0)
    with pytest.raises(ConfigError, match="train.synthetic_bank is set by the ablation itself"):
        validate_config(dict(cfg, train=dict(cfg["train"], synthetic_bank="somewhere")))


def test_copy_paste_arm_runs_on_one_fold(folds, tmp_path):
    from train.ablation.runner import EVAL_FILE, run_dir, run_one

    cfg, data = folds
    evaluation = run_one(cfg, "real+copy-paste", 0, data[0], tmp_path, progress=False)
    assert evaluation["train_config"]["synthetic_method"] == "copy-paste"
    assert evaluation["train_config"]["synthetic_bank"] == str(tmp_path / "banks" / "fold-0")
    assert (run_dir(tmp_path, "real+copy-paste", 0, 0) / EVAL_FILE).is_file()
