"""Faults found in a sweep, each reproduced as a user meets it: damaged NIfTI files, damaged
training checkpoints, broken diffusion models, absurd CT values, 0/255 label maps."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synth.io import load_nifti, save_nifti

# --- 1. a truncated or corrupt NIfTI file is one ValueError naming it ----------------------------

UNREADABLE = "cannot read this NIfTI file"


def _nifti_pair(folder: Path, suffix: str = ".nii.gz") -> tuple[Path, Path]:
    """A small LiTS-style image/label pair (liver block, int16 CT) in ``folder``."""
    rng = np.random.default_rng(0)
    image = rng.integers(-100, 200, (24, 20, 16)).astype(np.int16)
    label = np.zeros(image.shape, np.uint8)
    label[6:18, 5:15, 4:12] = 1
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    return (save_nifti(image, affine, folder / f"volume-1{suffix}"),
            save_nifti(label, affine, folder / f"segmentation-1{suffix}"))


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_middle(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("suffix, damage, words", [
    (".nii.gz", _truncate, "truncated or corrupt gzip: EOFError"),
    (".nii.gz", _corrupt_middle, "truncated or corrupt gzip"),
    (".nii", _truncate, "truncated or corrupt file: OSError"),
])
def test_damaged_nifti_load_nifti_names_the_file(tmp_path, suffix, damage, words):
    image, _ = _nifti_pair(tmp_path, suffix)
    damage(image)
    with pytest.raises(ValueError) as info:
        load_nifti(image)
    message = str(info.value)
    assert message.startswith(f"{image}: {UNREADABLE} ({words}")
    assert message.endswith("re-export or re-download it")


@pytest.mark.parametrize("which", ["image", "label"])
def test_truncated_nifti_preprocess_names_the_file(tmp_path, which):
    from train.data import CaseFiles, preprocess_case

    image, label = _nifti_pair(tmp_path)
    damaged = _truncate(image if which == "image" else label)
    # Half of the small label file cuts its header too: nibabel then cannot tell the file type.
    with pytest.raises(ValueError, match=rf"^case lits-1 cannot be preprocessed: {re.escape(str(damaged))}: "
                                         rf"{UNREADABLE} \(.*; re-export or re-download it$"):
        preprocess_case(CaseFiles("lits-1", image, label))


def test_truncated_nifti_is_a_fatal_case_problem_naming_the_file(tmp_path):
    from train.data import CaseFiles, find_problems

    image, label = _nifti_pair(tmp_path)
    _truncate(image)
    problems = find_problems(CaseFiles("lits-1", image, label))
    assert len(problems) == 1 and problems[0].fatal
    assert problems[0].message.startswith(f"case lits-1: the image file is unreadable: {image}: {UNREADABLE} "
                                          f"(truncated or corrupt gzip: EOFError")


def test_truncated_nifti_image_given_to_insert_tumor_names_the_file(tmp_path):
    from synth import insert_tumor

    image, label = _nifti_pair(tmp_path)
    _truncate(image)
    with pytest.raises(ValueError, match=rf"{re.escape(str(image))}: {UNREADABLE} \(truncated or corrupt gzip"):
        insert_tumor(nib.load(image), nib.load(label), seed=0)


# --- 2. a truncated or corrupt training checkpoint or model file names the file ------------------

TINY_TRAIN = dict(patch_size=(32, 32, 32), batch_size=2, filters=(4, 8, 16), device="cpu")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, phantom_case):
    """A finished 2-step run: its folder holds checkpoint.pt and model.pt."""
    torch = pytest.importorskip("torch")
    from train.loop import TrainConfig, train_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_torch_thread fixture, for a module-scoped fixture
    try:
        config = TrainConfig(**TINY_TRAIN, steps=2)
        case = phantom_case(0)
        out = tmp_path_factory.mktemp("tiny_run")
        train_model(config, [case], out_dir=out, progress=False)
    finally:
        torch.set_num_threads(before)
    return config, case, out


def _copy_run(run_dir: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, to))


@pytest.mark.usefixtures("one_torch_thread")
def test_truncated_checkpoint_on_resume_names_the_file(tmp_path, tiny_run):
    from train.loop import train_model

    config, case, run_dir = tiny_run
    out = _copy_run(run_dir, tmp_path / "run")
    _truncate(out / "checkpoint.pt")
    with pytest.raises(ValueError) as info:
        train_model(config, [case], out_dir=out, resume=True, progress=False)
    message = str(info.value)
    assert message.startswith(f"{out / 'checkpoint.pt'}: cannot read this file: it is truncated, corrupt")
    assert "delete it to start the run over from step 0" in message
    assert "weights_only" not in message and "weights_only" not in repr(info.value.__cause__)


@pytest.mark.usefixtures("one_torch_thread")
def test_truncated_model_file_names_the_file(tmp_path, tiny_run):
    from train.loop import load_model

    _, _, run_dir = tiny_run
    out = _copy_run(run_dir, tmp_path / "run")
    load_model(out / "model.pt")  # the intact file loads
    _truncate(out / "model.pt")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(out / 'model.pt'))}: cannot read this file: "
                                         rf"it is truncated, corrupt .*; copy it again, or load another"):
        load_model(out / "model.pt")


@pytest.mark.parametrize("damage", ["empty", "garbage", "half", "drop-tail"])
def test_every_kind_of_damaged_torch_file_is_a_clear_error(tmp_path, damage):
    torch = pytest.importorskip("torch")
    from train.loop.files import load_torch

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.arange(2000.0)}, "step": 3}, path)
    good = path.read_bytes()
    path.write_bytes({"empty": b"", "garbage": b"\x80\x02not a pickle" * 40, "half": good[: len(good) // 2],
                      "drop-tail": good[:-200]}[damage])  # half, drop-tail: a bare "[Errno 22] Invalid argument"
    with pytest.raises(ValueError) as info:
        load_torch(path, "cpu", advice="do this")
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read this file") and message.endswith("; do this")
    assert "weights_only" not in message and info.value.__cause__ is None
    assert info.value.__suppress_context__  # torch's advice to unpickle is not shown either


# --- 3. a diffusion model with NaN weights or an absurd config.json is refused on load ------------


@pytest.fixture
def saved_diffusion_model(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from synth.diffusion import TINY, DiffusionConfig, build_model, save_model

    return save_model(build_model(DiffusionConfig(**TINY)), tmp_path / "model")


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_diffusion_weights_with_nan_or_inf_are_refused(saved_diffusion_model, value):
    from safetensors.torch import load_file, save_file

    from synth.diffusion import load_model
    from synth.diffusion.config import WEIGHTS_NAME

    path = saved_diffusion_model / WEIGHTS_NAME
    tensors = load_file(str(path))
    names = sorted(tensors)[:2]
    for name in names:
        tensors[name].view(-1)[0] = value
    save_file(tensors, str(path))
    shown = ", ".join(f"'{re.escape(name)}'" for name in names)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: 2 of {len(tensors)} tensors hold NaN "
                                         rf"or infinite values \({shown}\)"):
        load_model(saved_diffusion_model, device="cpu")


def _edit_config(folder: Path, **changes) -> Path:
    import json

    from synth.diffusion.config import CONFIG_NAME

    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    data["config"].update(changes)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.usefixtures("one_torch_thread")
def test_diffusion_config_with_absurd_channels_is_refused_before_allocating(saved_diffusion_model, monkeypatch):
    import torch

    from synth.diffusion import load_model
    from synth.diffusion.weights import MAX_PARAMETERS

    # 4096/8192 channels: about 47 billion parameters, 188 GB of float32 weights.
    path = _edit_config(saved_diffusion_model, channels=[4096, 8192])

    def allocate(*args, **kwargs):  # build_unet enters this just before allocating the network
        raise AssertionError("the network was about to be built")

    monkeypatch.setattr(torch.random, "fork_rng", allocate)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: channels \[4096, 8192\] "
                                         rf"\(with num_res_blocks 1\) make a network of [\d,]+ parameters "
                                         rf".* above the limit of "
                                         rf"{MAX_PARAMETERS:,}; use fewer channels"):
        load_model(saved_diffusion_model, device="cpu")


def test_diffusion_config_with_absurd_crop_size_is_refused(saved_diffusion_model):
    from synth.diffusion import TINY, DiffusionConfig, load_model

    path = _edit_config(saved_diffusion_model, crop_size=100000)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: crop_size 100000 is above the limit "
                                         rf"of 128 voxels"):
        load_model(saved_diffusion_model, device="cpu")
    with pytest.raises(ValueError, match="crop_size 256 is above the limit of 128"):
        DiffusionConfig(**{**TINY, "crop_size": 256})
    assert DiffusionConfig(**{**TINY, "crop_size": 128}).crop_size == 128


# --- 4. CT values far outside any HU scale are named as such, not as "0 NaN or infinite" ----------


@pytest.fixture
def small_host():
    from synth.phantom import make_phantom

    ph = make_phantom(shape=(48, 40, 24), spacing=(3.0, 3.0, 4.0), lesions=0, seed=0)
    return ph.volume, ph.label, ph.spacing


def test_huge_finite_ct_values_are_named_with_the_hu_range(small_host):
    from synth import insert_tumor

    volume, label, spacing = small_host
    volume = volume.astype(np.float64)
    volume[1, 1, 1] = volume[2, 1, 1] = 1e308  # their float64 sum overflows to inf
    with np.errstate(all="raise"):  # as under TorchIO: no FloatingPointError from the check either
        with pytest.raises(ValueError) as info:
            insert_tumor(volume, label, spacing=spacing, seed=0)
    message = str(info.value)
    assert message.startswith("volume contains 2 values outside the plausible HU range [-32768, 65535] "
                              "(lowest 1e+308, highest 1e+308)")
    assert "NaN" not in message


@pytest.mark.parametrize("dtype, value", [(np.float64, 1e300), (np.float32, -1e5), (np.int32, 10**6)])
def test_any_value_outside_the_hu_range_is_refused(small_host, dtype, value):
    from synth.validation import check_volume

    volume = small_host[0].astype(dtype)
    volume[3, 3, 3] = value  # no overflow: refused all the same
    with pytest.raises(ValueError, match=r"^volume contains 1 values outside the plausible HU range "
                                         r"\[-32768, 65535\]"):
        check_volume(volume)


def test_nan_and_out_of_range_values_are_counted_separately(small_host):
    from synth.validation import check_volume

    volume = small_host[0].astype(np.float64)
    volume[0, 0, :3] = np.nan
    volume[1, 0, :2] = 1e308
    with pytest.raises(ValueError, match=r"^volume contains 3 NaN or infinite values, and 2 values outside "
                                         r"the plausible HU range \[-32768, 65535\]; CT must be finite HU$"):
        check_volume(volume)


@pytest.mark.parametrize("dtype, low, high", [(np.int16, -32768, 32767), (np.uint16, 0, 65535),
                                              (np.float32, -32768, 65535)])
def test_the_whole_16_bit_range_is_still_accepted(small_host, dtype, low, high):
    from synth.validation import check_volume

    volume = small_host[0].astype(dtype)
    volume[0, 0, 0], volume[0, 0, 1] = low, high
    assert check_volume(volume) is not None


# --- 5. the TorchIO and MONAI transforms refuse a label map saved as 0/255 ------------------------

AUGMENT_SHAPE, AUGMENT_SPACING = (96, 80, 40), (3.0, 3.0, 4.0)


@pytest.fixture(scope="module")
def augment_phantom():
    from synth.phantom import make_phantom

    return make_phantom(shape=AUGMENT_SHAPE, spacing=AUGMENT_SPACING)


def _torchio_subject(ph, labels):
    import torch
    import torchio as tio

    return tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(ph.volume.copy())[None], affine=ph.affine),
                       seg=tio.LabelMap(tensor=torch.from_numpy(labels)[None], affine=ph.affine))


def _binary_255(ph, dtype=np.uint8):
    return ((ph.label > 0) * 255).astype(dtype)


MASK_255 = (r"label map '{name}' has no liver \(label 1\) or tumour \(label 2\) voxel: found label values "
            r"0, 255; expected 0 background, 1 liver, 2 tumour \(or a binary liver mask 0/1\), as set by "
            r"liver_label and tumor_label\. A mask saved as 0/255 needs converting")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_torchio_transform_refuses_a_0_255_label_map(augment_phantom, dtype):
    pytest.importorskip("torchio")
    import torch

    from augment import RandomTumorInsertion, TumorInsertion

    subject = _torchio_subject(augment_phantom, _binary_255(augment_phantom, dtype))
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=MASK_255.format(name="seg")):
        RandomTumorInsertion(size="small", count=2)(subject)
    with pytest.raises(ValueError, match=MASK_255.format(name="seg")):
        TumorInsertion(seed=0, size="small", count=2)(subject)


def test_torchio_transform_takes_a_0_255_mask_with_liver_label_255(augment_phantom):
    pytest.importorskip("torchio")
    import torch

    from augment import TumorInsertion

    subject = _torchio_subject(augment_phantom, _binary_255(augment_phantom))
    out = TumorInsertion(seed=0, size="small", count=2, liver_label=255)(subject)
    assert int((out.seg.data == 2).sum()) > 0
    assert set(torch.unique(out.seg.data).tolist()) == {0, 2, 255}


def test_torchio_transform_still_skips_a_crop_without_liver_of_a_multi_organ_map(augment_phantom):
    pytest.importorskip("torchio")
    import torch

    from augment import TumorInsertion

    labels = np.where(augment_phantom.label > 0, 0, 3).astype(np.uint8)  # organ 3 only, no liver
    subject = _torchio_subject(augment_phantom, labels)
    out = TumorInsertion(seed=0)(subject)
    assert torch.equal(out.seg.data, subject.seg.data) and torch.equal(out.ct.data, subject.ct.data)


def test_monai_transform_refuses_a_0_255_label_map(augment_phantom):
    pytest.importorskip("monai")
    import torch
    from monai.data import MetaTensor

    from augment import RandTumorInsertiond

    affine = torch.as_tensor(augment_phantom.affine, dtype=torch.float64)
    data = {"image": MetaTensor(torch.from_numpy(augment_phantom.volume.astype(np.float32))[None], affine=affine),
            "mask": MetaTensor(torch.from_numpy(_binary_255(augment_phantom))[None], affine=affine)}
    transform = RandTumorInsertiond(keys="image", label_key="mask", size="small")
    transform.set_random_state(seed=0)
    with pytest.raises(ValueError, match=MASK_255.format(name="mask")):
        transform(data)
