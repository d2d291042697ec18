"""The diffusion model's config, weights files and sampler (tiny CPU network, no training)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from synth.diffusion import TINY, DiffusionConfig, build_model, inpaint, load_model, save_model  # noqa: E402
from synth.diffusion.config import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scrambled_model(seed: int = 0):
    """A tiny untrained model whose weights are all perturbed: its output layer is not zero (as
    MONAI initialises it), so its samples depend on every weight."""
    model = build_model(DiffusionConfig(**TINY), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.to("cpu")


def crop_inputs(n: int = 16, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    known = torch.rand((1, 1, n, n, n), generator=generator) * 2 - 1
    lesion = torch.zeros_like(known)
    lesion[..., 5:11, 5:11, 5:11] = 1
    region = torch.zeros_like(known)
    region[..., 3:13, 3:13, 3:13] = 1
    return known, region, lesion


def test_import_synth_does_not_import_torch():
    code = ("import sys, synth, synth.insert, synth.commands, synth.cases, synth.realism, tumorsynth.cli; "
            "print(any(m in sys.modules for m in ('torch', 'monai', 'diffusers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_round_trip_and_validation(tmp_path):
    config = DiffusionConfig(**TINY)
    config.save(tmp_path)
    assert DiffusionConfig.load(tmp_path) == config
    assert config.in_channels == 4
    with pytest.raises(ValueError, match="multiple of 2"):
        DiffusionConfig(crop_size=17, channels=(8, 16), attention_levels=(False, False), norm_num_groups=8)
    with pytest.raises(ValueError, match="sampler"):
        DiffusionConfig(sampler="euler")
    with pytest.raises(ValueError, match="hu_window"):
        DiffusionConfig(hu_window=(300, -200))


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver"])
def test_sampling_shape_dtype_known_region_and_seed(sampler):
    model = scrambled_model()
    known, region, lesion = crop_inputs()
    a = inpaint(model, known, region, lesion, seed=3, steps=4, sampler=sampler)
    b = inpaint(model, known, region, lesion, seed=3, steps=4, sampler=sampler)
    c = inpaint(model, known, region, lesion, seed=4, steps=4, sampler=sampler)
    assert a.shape == known.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a[region.bool()], c[region.bool()])
    outside = ~region.bool()
    assert torch.equal(a[outside], known[outside])  # the known region is the host's
    assert a.abs().max() <= 1.0
    assert (a[region.bool()] - known[region.bool()]).abs().mean() > 1e-3  # it did generate


def test_sampling_rejects_wrong_shapes():
    model = scrambled_model()
    known, region, lesion = crop_inputs()
    with pytest.raises(ValueError, match="known must be"):
        inpaint(model, known[0], region, lesion, seed=0)
    with pytest.raises(ValueError, match="region must have"):
        inpaint(model, known, region[..., :8], lesion, seed=0)
    with pytest.raises(ValueError, match="sampling steps"):
        inpaint(model, known, region, lesion, seed=0, steps=0)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = scrambled_model(seed=1)
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.config == model.config
    known, region, lesion = crop_inputs()
    assert torch.equal(inpaint(model, known, region, lesion, seed=0, steps=3),
                       inpaint(loaded, known, region, lesion, seed=0, steps=3))
    assert load_model(loaded) is loaded


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "model"
    save_model(scrambled_model(), folder)
    return folder


def test_corrupt_weights_file_is_a_clear_error(saved):
    path = saved / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}: corrupt or unreadable"):
        load_model(saved)
    # A pickle under the right name is refused the same way, never unpickled.
    torch.save({"x": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_model(saved)


def test_wrong_format_version_is_a_clear_error(saved):
    path = saved / CONFIG_NAME
    data = json.loads(path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{CONFIG_NAME}: format_version {FORMAT_VERSION + 1} is not supported"):
        load_model(saved)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(saved)


def test_missing_extra_and_misshapen_tensors_are_clear_errors(saved):
    from safetensors.torch import load_file, save_file

    path = saved / WEIGHTS_NAME
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    save_file({k: v for k, v in tensors.items() if k != name}, str(path))
    with pytest.raises(ValueError, match=r"1 missing .*" + name.replace(".", r"\.")):
        load_model(saved)
    save_file({**tensors, "extra.weight": torch.zeros(3)}, str(path))
    with pytest.raises(ValueError, match=r"1 unexpected .*extra\.weight"):
        load_model(saved)
    save_file({**tensors, name: torch.zeros(tuple(tensors[name].shape) + (2,))}, str(path))
    with pytest.raises(ValueError, match=rf"tensor '{name}' has shape"):
        load_model(saved)


def test_other_network_size_is_a_clear_error(saved, tmp_path):
    config = json.loads((saved / CONFIG_NAME).read_text())
    config["config"]["channels"] = [8, 24]
    (saved / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match the network|has shape"):
        load_model(saved)


def test_missing_files_are_clear_errors(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_model(tmp_path / "nothing")
    (saved / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_model(saved)
    with pytest.raises(ValueError, match="needs model="):
        load_model(None)
