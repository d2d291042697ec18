"""Insertion with method="diffusion": the heuristic's invariants, seeds, the CLI and the
augmentation transforms, with a tiny untrained network (its lesions are noise-like, but every
contract of the insertion holds whatever the weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from synth import insert_tumor, prepare_host  # noqa: E402
from synth.diffusion import TINY, DiffusionConfig, build_model, save_model  # noqa: E402
from synth.phantom import make_phantom  # noqa: E402

SPACING = (1.5, 1.5, 2.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    model = build_model(DiffusionConfig(**TINY), seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.to("cpu")


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    return save_model(model, tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def phantom():
    """A small phantom with two real-like tumours already present."""
    return make_phantom((128, 112, 56), SPACING, lesions=2, seed=1)


def boxes_mask(lesions, shape):
    inside = np.zeros(shape, dtype=bool)
    for lesion in lesions:
        inside[tuple(slice(a, b) for a, b in lesion.bbox)] = True
    return inside


def test_invariants_of_the_heuristic_hold(phantom, model):
    volume, label = phantom.volume, phantom.label
    volume_before, label_before = volume.copy(), label.copy()
    result = prepare_host(volume, label, spacing=SPACING).insert(
        size=(6, 14), count=2, seed=5, method="diffusion", model=model, sampling_steps=3, mass_effect=False)
    assert np.array_equal(volume, volume_before) and np.array_equal(label, label_before)  # inputs kept
    assert result.volume.dtype == volume.dtype and result.label.dtype == np.uint8
    assert len(result.lesions) == 2 and {lesion.phenotype for lesion in result.lesions} == {"diffusion"}
    changed = result.volume != volume
    assert changed.any()
    assert not changed[~boxes_mask(result.lesions, volume.shape)].any()  # nothing outside the boxes
    assert (label[changed] == 1).all()  # only tumour-free liver changes
    assert (result.label[label == 2] == 2).all()  # existing tumours kept
    new = (result.label == 2) & (label != 2)
    assert (label[new] == 1).all()
    assert new.sum() == sum(lesion.voxel_count for lesion in result.lesions)
    assert changed[new].mean() > 0.9  # the new tumour voxels are the changed ones
    assert set(np.unique(result.label)) <= {0, 1, 2}


def test_same_seed_same_output_and_different_seed_differs(phantom, model):
    host = prepare_host(phantom.volume, phantom.label, spacing=SPACING)
    options = dict(size="small", count=1, method="diffusion", model=model, sampling_steps=2)
    a, b, c = (host.insert(seed=s, **options) for s in (7, 7, 8))
    assert np.array_equal(a.volume, b.volume) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.volume, c.volume)


def test_placement_is_the_heuristic_one(phantom, model):
    """The first lesion's size, shape and place are drawn exactly as the heuristic draws them."""
    host = prepare_host(phantom.volume, phantom.label, spacing=SPACING)
    heuristic = host.insert(size="medium", count=1, seed=11)
    diffusion = host.insert(size="medium", count=1, seed=11, method="diffusion", model=model, sampling_steps=2)
    assert np.array_equal(heuristic.label, diffusion.label)
    assert heuristic.lesions[0].center_voxel == diffusion.lesions[0].center_voxel


def test_insert_tumor_with_a_model_folder_and_float_volume(phantom, model_dir):
    volume = phantom.volume.astype(np.float32)
    ct, label = insert_tumor(volume, phantom.label, spacing=SPACING, size="small", count=1, seed=0,
                             method="diffusion", model=model_dir, sampling_steps=2)
    assert ct.dtype == np.float32 and ((label == 2) & (phantom.label == 1)).any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="bogus"), "method must be"),
    (dict(model="somewhere"), "only apply to method='diffusion'"),
    (dict(sampling_steps=4), "only apply to method='diffusion'"),
    (dict(method="diffusion"), "needs model="),
    (dict(method="diffusion", model="/nonexistent/model"), "no such model folder"),
])
def test_bad_method_arguments_are_clear_errors(phantom, kwargs, message):
    error = FileNotFoundError if "folder" in message else ValueError
    with pytest.raises(error, match=message):
        insert_tumor(phantom.volume, phantom.label, spacing=SPACING, count=1, seed=0, **kwargs)


def test_bad_sampling_settings_are_clear_errors(phantom, model):
    with pytest.raises(ValueError, match="sampling steps"):
        insert_tumor(phantom.volume, phantom.label, spacing=SPACING, count=1, seed=0, method="diffusion",
                     model=model, sampling_steps=0)
    with pytest.raises(ValueError, match="sampler must be"):
        insert_tumor(phantom.volume, phantom.label, spacing=SPACING, count=1, seed=0, method="diffusion",
                     model=model, sampler="euler")


def test_cli_insert_method_diffusion(tmp_path, phantom, model_dir, capsys):
    from synth.io import save_nifti
    from tumorsynth.cli import main

    image = save_nifti(phantom.volume, phantom.affine, tmp_path / "ct.nii.gz")
    mask = save_nifti(phantom.label, phantom.affine, tmp_path / "mask.nii.gz")
    out = tmp_path / "out"
    status = main(["insert", "--image", str(image), "--mask", str(mask), "--out", str(out), "--size", "small",
                   "--count", "1", "--seed", "3", "--method", "diffusion", "--model", str(model_dir),
                   "--sampling-steps", "2"])
    assert status == 0, capsys.readouterr().err
    report = json.loads((out / "lesions.json").read_text())
    assert report["method"] == "diffusion" and report["sampling_steps"] == 2
    assert Path(report["model"]) == Path(model_dir)
    assert [lesion["phenotype"] for lesion in report["lesions"]] == ["diffusion"]
    assert {p.name for p in out.iterdir()} >= {"ct.nii.gz", "label.nii.gz", "lesions.json", "preview.png"}

    status = main(["insert", "--image", str(image), "--mask", str(mask), "--out", str(tmp_path / "o2"),
                   "--method", "diffusion"])
    assert status == 2 and "needs --model" in capsys.readouterr().err


def test_cli_synthesize_method_diffusion(tmp_path, phantom, model_dir, capsys):
    from synth.io import save_nifti
    from tumorsynth.cli import main

    data = tmp_path / "lits"
    data.mkdir()
    save_nifti(phantom.volume, phantom.affine, data / "volume-1.nii.gz")
    save_nifti(phantom.label, phantom.affine, data / "segmentation-1.nii.gz")
    status = main(["synthesize", "--data", str(data), "--out", str(tmp_path / "out"), "--variants", "1",
                   "--workers", "1", "--size", "small", "--count", "1", "--method", "diffusion",
                   "--model", str(model_dir), "--sampling-steps", "2"])
    assert status == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "volume-1" / "variant-0" / "lesions.json").read_text())
    assert report["method"] == "diffusion"
    assert [lesion["phenotype"] for lesion in report["lesions"]] == ["diffusion"]


def test_torchio_transform_passes_the_model_and_replays(phantom, model):
    import torchio as tio

    from augment import RandomTumorInsertion

    subject = tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(phantom.volume)[None], affine=phantom.affine),
                          seg=tio.LabelMap(tensor=torch.from_numpy(phantom.label)[None], affine=phantom.affine))
    transform = RandomTumorInsertion(size="small", count=1, method="diffusion", model=model,
                                     synthesis_options={"sampling_steps": 2})
    torch.manual_seed(0)
    out = transform(subject)
    new = (out["seg"].data == 2) & (subject["seg"].data == 1)
    assert new.any()
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed["ct"].data, out["ct"].data)
    with pytest.raises(ValueError, match="needs model="):
        RandomTumorInsertion(method="diffusion")


def test_monai_transform_passes_the_model(phantom, model_dir):
    from augment.monai_transforms import RandTumorInsertiond

    transform = RandTumorInsertiond(keys="image", label_key="label", size="small", count=1, spacing=SPACING,
                                    method="diffusion", model=model_dir, synthesis_options={"sampling_steps": 2})
    transform.set_random_state(seed=0)
    out = transform({"image": phantom.volume[None], "label": phantom.label[None]})
    assert ((out["label"][0] == 2) & (phantom.label == 1)).any()
    assert out["image"].dtype == phantom.volume.dtype
