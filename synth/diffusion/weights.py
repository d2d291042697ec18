"""A model folder: ``config.json`` plus ``weights.safetensors``; never pickle.

Loading checks, in this order, and raises a ValueError (FileNotFoundError for a missing file)
that names the file and the problem: the config's format and version, that the config's network
is not larger than :data:`MAX_PARAMETERS` (counted before any weight is allocated), that the
weights file is a readable safetensors file, that it holds exactly the tensors the config's
network has (missing and unexpected names listed), that every tensor has the expected shape, and
that no tensor holds NaN or infinite values.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..io import atomic_output_path
from .config import CONFIG_NAME, WEIGHTS_NAME, DiffusionConfig, read_config_json

MAX_PARAMETERS = 500_000_000
"""The largest network :func:`build_unet` builds: 2 GB of float32 weights (the default config has
2.9 M parameters). A ``config.json`` asking for more is refused before anything is allocated."""


class DiffusionModel:
    """A MONAI ``DiffusionModelUNet`` and the :class:`DiffusionConfig` that gives its meaning.

    Build a new one with :func:`build_model`, read one with :func:`load_model`.
    ``info`` holds what was recorded at training time (steps, data, loss), for reports.
    """

    def __init__(self, config: DiffusionConfig, unet: torch.nn.Module, info: dict | None = None):
        self.config = config
        self.unet = unet
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device) -> DiffusionModel:
        self.unet.to(device)
        return self

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.unet.parameters())
        return (f"DiffusionModel(crop {self.config.crop_size}^3 at {self.config.spacing_mm:g} mm, "
                f"channels {self.config.channels}, {n / 1e6:.2f} M parameters)")


def parameter_count(config: DiffusionConfig) -> int:
    """The number of weights of ``config``'s network, counted on PyTorch's meta device (the
    network is built without allocating any memory for its weights)."""
    from monai.networks.nets import DiffusionModelUNet

    with torch.device("meta"):
        unet = DiffusionModelUNet(**config.unet_arguments())
    return sum(p.numel() for p in unet.parameters())


def build_unet(config: DiffusionConfig, *, seed: int = 0, source: str = "config") -> torch.nn.Module:
    """A freshly initialised network for ``config`` (initialisation seeded, CPU).

    Raises ValueError, naming ``source``, when the network would have more than
    :data:`MAX_PARAMETERS` parameters.
    """
    from monai.networks.nets import DiffusionModelUNet

    count = parameter_count(config)
    if count > MAX_PARAMETERS:
        raise ValueError(f"{source}: channels {list(config.channels)} (with num_res_blocks "
                         f"{config.num_res_blocks}) make a network of {count:,} parameters "
                         f"({count * 4 / 1e9:.3g} GB as float32), above the limit of "
                         f"{MAX_PARAMETERS:,}; use fewer channels (the default "
                         f"{list(DiffusionConfig().channels)} has {parameter_count(DiffusionConfig()):,})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionModelUNet(**config.unet_arguments())


def build_model(config: DiffusionConfig | None = None, *, seed: int = 0) -> DiffusionModel:
    """An untrained model (useful for timing and tests)."""
    config = config or DiffusionConfig()
    return DiffusionModel(config, build_unet(config, seed=seed))


def save_model(model: DiffusionModel, folder, *, state_dict: dict | None = None) -> Path:
    """Write ``weights.safetensors`` then ``config.json`` into ``folder``, each atomically.

    ``state_dict`` replaces the network's own weights (the trainer saves its EMA weights).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = state_dict if state_dict is not None else model.unet.state_dict()
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_tensors_atomic(tensors, folder / WEIGHTS_NAME)
    model.config.save(folder, extra={"info": model.info} if model.info else None)
    return folder


def save_tensors_atomic(tensors: dict, path: Path) -> None:
    """safetensors ``save_file`` to a temporary name in the same folder, then ``os.replace``."""
    from safetensors.torch import save_file

    with atomic_output_path(path) as tmp:
        save_file(tensors, str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file, not the private one safetensors makes


def read_tensors(path: Path) -> dict:
    """All tensors of a safetensors file; a clear error when it is missing or unreadable."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError and others
        raise ValueError(f"{path}: corrupt or unreadable safetensors file ({type(error).__name__}: "
                         f"{error})") from None


def check_tensors(tensors: dict, expected: dict, path: Path) -> None:
    """Raise ValueError unless ``tensors`` matches the names and shapes of ``expected``."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
        raise ValueError(f"{path}: tensors do not match the network of {CONFIG_NAME}: "
                         f"{'; '.join(parts)}")
    for name, value in expected.items():
        if tuple(tensors[name].shape) != tuple(value.shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, the "
                             f"network of {CONFIG_NAME} needs {tuple(value.shape)}")


def check_finite(tensors: dict, path: Path) -> None:
    """Raise ValueError naming the tensors of ``tensors`` that hold NaN or infinite values."""
    bad = [name for name, value in tensors.items()
           if value.dtype.is_floating_point and not bool(torch.isfinite(value).all())]
    if bad:
        shown = ", ".join(repr(name) for name in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ValueError(f"{path}: {len(bad)} of {len(tensors)} tensors hold NaN or infinite values "
                         f"({shown}); such weights paint meaningless lesions. The training that wrote "
                         f"them diverged or the file is damaged: retrain, or use another copy of the model")


def load_model(model, *, device=None) -> DiffusionModel:
    """Read a model folder (or return ``model`` itself when it is already a DiffusionModel).

    Parameters
    ----------
    model : str, os.PathLike or DiffusionModel
        Folder with ``config.json`` and ``weights.safetensors``.
    device : str or torch.device, optional
        Where to put the network; default CUDA when available, else CPU.
    """
    if isinstance(model, DiffusionModel):
        return model if device is None else model.to(device)
    if model is None:
        raise ValueError("method='diffusion' needs model=: a model folder (config.json + "
                         "weights.safetensors) or a loaded synth.diffusion.DiffusionModel")
    folder = Path(model)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    data = read_config_json(folder)  # read once: the settings and the training record
    config = DiffusionConfig.from_dict(data, source=str(folder / CONFIG_NAME))
    info = data.get("info", {})
    unet = build_unet(config, source=str(folder / CONFIG_NAME))
    path = folder / WEIGHTS_NAME
    tensors = read_tensors(path)
    expected = unet.state_dict()
    check_tensors(tensors, expected, path)
    for name, value in tensors.items():
        if not value.dtype.is_floating_point and expected[name].dtype.is_floating_point:
            raise ValueError(f"{path}: tensor {name!r} has dtype {value.dtype}, expected floating point")
    check_finite(tensors, path)
    unet.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    unet.eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return DiffusionModel(config, unet.to(device), info)
