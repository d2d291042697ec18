"""Outputs pinned by hash, so that a refactoring can show it changed no result.

``python tests/pinned_outputs.py --write`` records the hashes in ``tests/data/pinned_outputs.json``
together with the versions of the numerical packages that made them; ``test_pinned_outputs.py``
recomputes them and compares. Floating-point results can differ in the last bit between numpy,
scipy or torch releases, so the comparison only runs on the versions that wrote the pins. Pins
made with torch arithmetic also depend on the processor: torch picks its CPU kernels by the vector
extensions it finds (AVX2, AVX512, ...), so those are compared only on the kernels that wrote them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PINS_PATH = Path(__file__).parent / "data" / "pinned_outputs.json"
VERSIONED_PACKAGES = ("numpy", "scipy", "scikit-image", "torch", "torchio", "monai", "connected-components-3d")
# Pins whose values come through torch's CPU kernels (measured: the same code and versions gave other
# hashes on an AVX512 Intel Xeon than on the AMD EPYC that first recorded them; the others matched).
TORCH_KERNEL_PINS = ("RandomTumorInsertion", "train_model/3-steps")


def digest(*arrays: Any) -> str:
    """SHA-256 of arrays' dtype, shape and bytes (or of a JSON-able value), first 16 hex digits."""
    sha = hashlib.sha256()
    for value in arrays:
        if isinstance(value, np.ndarray):
            sha.update(f"{value.dtype.str}{value.shape}".encode())
            sha.update(np.ascontiguousarray(value).tobytes())
        else:
            sha.update(json.dumps(value, sort_keys=True, default=str).encode())
    return sha.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def torch_cpu_capability() -> str:
    """The vector extensions torch's CPU kernels were chosen for here (e.g. ``"AVX2"``)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def _phantom():
    from synth.phantom import make_phantom

    return make_phantom(shape=(96, 80, 64), spacing=(2.0, 2.0, 2.5), lesions=0, seed=3)


def pin_insert_tumor() -> dict[str, str]:
    from synth import insert_tumor

    ph = _phantom()
    pins = {}
    for size, phenotype, seed in (("tiny", "hypodense", 0), ("small", "mix", 1), ("medium", "rim-enhancing", 2),
                                  ("large", "necrotic", 3), ("mix", "mix", 4)):
        volume, label = insert_tumor(ph.volume, ph.label, spacing=ph.spacing, size=size, count=(1, 2),
                                     phenotype=phenotype, seed=seed)
        pins[f"insert_tumor/{size}/{phenotype}/{seed}"] = digest(volume, label)
    return pins


def pin_host_records() -> dict[str, str]:
    from synth import prepare_host

    ph = _phantom()
    host = prepare_host(ph.volume, ph.label, spacing=ph.spacing)
    result = host.insert(size="small", count=3, phenotype="mix", seed=11)
    return {"host.insert/records": digest([lesion.to_dict() for lesion in result.lesions]),
            "host.insert/arrays": digest(result.volume, result.label)}


def pin_realism_features() -> dict[str, str]:
    from synth import prepare_host
    try:
        from synth.realism import lesion_features
    except ImportError:  # before the move under synth/
        from realism import lesion_features  # type: ignore[no-redef]

    ph = _phantom()
    result = prepare_host(ph.volume, ph.label, spacing=ph.spacing).insert(size="medium", count=1, seed=5)
    lesion = result.label == 2
    features = lesion_features(result.volume, lesion, ph.spacing, liver=result.label >= 1)
    return {"realism/lesion_features": digest({k: round(float(v), 6) for k, v in features.items()})}


def pin_evaluation() -> dict[str, str]:
    from scipy import ndimage

    from train.metrics import aggregate, evaluate_case

    ph = _phantom()
    from synth import insert_tumor

    _, label = insert_tumor(ph.volume, ph.label, spacing=ph.spacing, size="mix", count=6, seed=7)
    gt = label == 2
    pred = ndimage.binary_dilation(gt, iterations=1)
    pred[:, :, : pred.shape[2] // 2] = False  # half the lesions missed
    pred[5:8, 5:8, 5:8] = True  # one false positive
    case = evaluate_case(pred, gt, spacing=ph.spacing)
    summary = aggregate([case])
    return {"evaluate_case/summary": digest(json.loads(json.dumps(summary, default=float)))}


def pin_torchio_transform() -> dict[str, str]:
    import torch
    import torchio as tio

    from augment import RandomTumorInsertion

    ph = _phantom()
    affine = np.diag([*ph.spacing, 1.0])
    subject = tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(ph.volume[None].astype(np.float32)),
                                             affine=affine),
                          seg=tio.LabelMap(tensor=torch.from_numpy(ph.label[None].astype(np.uint8)), affine=affine))
    torch.manual_seed(0)
    out = RandomTumorInsertion(size="small", count=(1, 2))(subject)
    return {"RandomTumorInsertion": digest(out["ct"].data.numpy(), out["seg"].data.numpy())}


def pin_training() -> dict[str, str]:
    import tempfile

    import torch

    from synth.phantom import make_phantom
    from train.data import Case
    from train.loop import TrainConfig, train_model

    ph = make_phantom(shape=(64, 56, 40), spacing=(3, 3, 3), lesions=3, seed=0)
    case = Case("phantom-0", ph.volume.astype(np.float32), ph.label, tuple(ph.spacing), ph.affine)
    host = make_phantom(shape=(64, 56, 40), spacing=(3, 3, 3), lesions=0, seed=1)
    host_case = Case("phantom-1", host.volume.astype(np.float32), host.label, tuple(host.spacing), host.affine)
    config = TrainConfig(patch_size=(32, 32, 32), batch_size=2, filters=(4, 8, 16), device="cpu", steps=3,
                         synthetic_probability=0.5, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as out:
            train_model(config, [case], hosts=[host_case], out_dir=out, progress=False)
            weights = torch.load(Path(out) / "checkpoint.pt", weights_only=True)["model"]
    finally:
        torch.set_num_threads(threads)
    return {"train_model/3-steps": digest(*(weights[k].numpy() for k in sorted(weights)))}


def pin_synthesize_command() -> dict[str, str]:
    import contextlib
    import io
    import tempfile

    from synth.io import load_nifti, save_nifti
    try:
        from tumorsynth.cli import main
    except ImportError:  # before the front door existed
        from synth.cli import main  # type: ignore[no-redef]

    ph = _phantom()
    affine = np.diag([*ph.spacing, 1.0])
    pins = {}
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        save_nifti(ph.volume, affine, data / "volume-0.nii.gz")
        save_nifti(ph.label.astype(np.uint8), affine, data / "segmentation-0.nii.gz")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = main(["synthesize", "--data", str(data), "--out", str(out), "--variants", "2",
                           "--workers", "1", "--size", "small", "--count", "2", "--seed", "9"])
        assert status == 0, status
        for variant in (0, 1):
            folder = out / "volume-0" / f"variant-{variant}"
            lesions = json.loads((folder / "lesions.json").read_text())["lesions"]
            pins[f"synthesize/variant-{variant}"] = digest(load_nifti(folder / "ct.nii.gz").array,
                                                          load_nifti(folder / "label.nii.gz").array, lesions)
    return pins


PINNERS: tuple[Callable[[], dict[str, str]], ...] = (
    pin_insert_tumor, pin_host_records, pin_realism_features, pin_evaluation, pin_torchio_transform,
    pin_training, pin_synthesize_command,
)


def compute() -> dict[str, str]:
    pins: dict[str, str] = {}
    for pinner in PINNERS:
        pins.update(pinner())
    return pins


if __name__ == "__main__":
    values = compute()
    if "--write" in sys.argv:
        PINS_PATH.parent.mkdir(exist_ok=True)
        record = {"versions": package_versions(), "torch_cpu_capability": torch_cpu_capability(), "pins": values}
        PINS_PATH.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(values, indent=1))
