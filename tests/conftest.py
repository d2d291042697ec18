"""Shared fixtures: a fast synthetic host scan built in millimetres, and the two real CT cases.

The synthetic host is numpy only (no dependency on ``synth.phantom``) so the insertion tests do
not break when the phantom changes. It is built on a physical grid: the liver keeps its size in mm
whatever the spacing, including thick-slice anisotropic spacings such as (0.7, 0.7, 5.0).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# --- synthetic host -------------------------------------------------------------------------

LIVER_HU = 110.0
VESSEL_HU = 190.0
BODY_HU = -100.0
AIR_HU = -1000.0
NOISE_HU = 12.0
TUMOUR_HU = 60.0
FOV_MM = (150.0, 130.0, 115.0)  # field of view: the liver plus a margin of body
LIVER_SEMI_AXES_MM = (60.0, 50.0, 45.0)  # a 120 x 100 x 90 mm ellipsoid, about 565 mL
# Existing tumour (when asked for): a 14 mm sphere off the liver's centre.
TUMOUR_CENTER_MM = (-25.0, 12.0, -8.0)
TUMOUR_RADIUS_MM = 7.0
# Vessels: (start mm, end mm, radius mm), relative to the liver's centre. Thin and off the
# centre so that large lesions still find room.
VESSELS = (
    ((-55.0, -30.0, 20.0), (50.0, -25.0, 25.0), 2.5),
    ((30.0, 35.0, -35.0), (35.0, 25.0, 35.0), 2.0),
    ((-40.0, 30.0, 25.0), (10.0, 40.0, 10.0), 1.5),
)


@dataclass(frozen=True)
class SyntheticHost:
    """A synthetic CT volume, its label map (0/1/2) and spacing in mm. Arrays are read-only."""

    volume: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def voxel_volume(self) -> float:
        return float(np.prod(self.spacing))


def _segment_distance(points: np.ndarray, start, end) -> np.ndarray:
    """Distance in mm from each of the (..., 3) ``points`` to the segment start-end."""
    start, end = np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)
    direction = end - start
    t = np.clip(((points - start) @ direction) / float(direction @ direction), 0.0, 1.0)
    nearest = start + t[..., None] * direction
    return np.sqrt(np.square(points - nearest).sum(axis=-1))


@functools.lru_cache(maxsize=16)
def _build_host(spacing: tuple[float, float, float], dtype_name: str, tumour: bool, seed: int) -> SyntheticHost:
    shape = tuple(int(round(f / s)) for f, s in zip(FOV_MM, spacing))
    # Voxel centres in mm, with the liver's centre at the origin.
    axes = [((np.arange(n, dtype=np.float32) + 0.5) * np.float32(s) - np.float32(f / 2.0))
            for n, s, f in zip(shape, spacing, FOV_MM)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    a, b, c = LIVER_SEMI_AXES_MM
    liver = (x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1.0
    body = (x / (0.5 * FOV_MM[0])) ** 2 + (y / (0.5 * FOV_MM[1])) ** 2 <= 1.0
    body = np.broadcast_to(body, shape)

    volume = np.where(body, np.float32(BODY_HU), np.float32(AIR_HU)).astype(np.float32)
    volume[liver] = LIVER_HU
    points = np.stack(np.broadcast_arrays(x, y, z), axis=-1)
    for start, end, radius in VESSELS:
        vessel = liver & (_segment_distance(points, start, end) <= radius)
        volume[vessel] = VESSEL_HU
    label = liver.astype(np.uint8)
    if tumour:
        c = TUMOUR_CENTER_MM
        in_tumour = liver & (((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) <= TUMOUR_RADIUS_MM**2)
        label[in_tumour] = 2
        volume[in_tumour] = TUMOUR_HU
    volume += np.random.default_rng(seed).normal(0.0, NOISE_HU, size=shape).astype(np.float32)
    dtype = np.dtype(dtype_name)
    if dtype.kind in "iu":
        volume = np.rint(volume).astype(dtype)
    else:
        volume = volume.astype(dtype)
    volume.setflags(write=False)
    label.setflags(write=False)
    return SyntheticHost(volume=volume, label=label, spacing=tuple(float(s) for s in spacing))


def build_host(spacing=(1.5, 1.5, 2.5), dtype=np.int16, *, tumour: bool = False, seed: int = 0) -> SyntheticHost:
    """A synthetic abdomen with a 120 x 100 x 90 mm ellipsoidal liver (~110 HU, noise sigma 12)
    in a -100 HU body, three bright (~190 HU) tubular vessels inside the liver and, optionally, one
    existing 14 mm tumour (label 2, ~60 HU). Cached per arguments; the arrays are read-only, so a
    test (or the library) that writes to them fails loudly instead of corrupting other tests."""
    return _build_host(tuple(float(s) for s in spacing), np.dtype(dtype).name, bool(tumour), int(seed))


@pytest.fixture(scope="session")
def make_host():
    """The synthetic host builder: ``make_host(spacing=..., dtype=..., tumour=False, seed=0)``."""
    return build_host


@pytest.fixture(scope="session")
def host(make_host) -> SyntheticHost:
    """The default synthetic host: 1.5 x 1.5 x 2.5 mm, int16, no existing tumour."""
    return make_host()


@pytest.fixture(scope="session")
def host_with_tumour(make_host) -> SyntheticHost:
    """The default synthetic host with one existing 14 mm tumour (label 2)."""
    return make_host(tumour=True)


@pytest.fixture(scope="session")
def anisotropic_host(make_host) -> SyntheticHost:
    """The synthetic host on a thick-slice grid, 0.7 x 0.7 x 5.0 mm."""
    return make_host(spacing=(0.7, 0.7, 5.0))


# --- real CT cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class RealCase:
    """A real CT case as arrays, with its spacing (mm) and the nibabel images they came from."""

    volume: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    volume_image: object
    label_image: object


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with the real CT cases (../shared/data beside the project); skips if absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real CT cases not found: {path} does not exist (expected ../shared/data "
                    f"beside the project root)")
    return path


def _load_case(folder: Path, volume_name: str, label_name: str) -> RealCase:
    nib = pytest.importorskip("nibabel")
    paths = [folder / volume_name, folder / label_name]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"real CT case files missing: {', '.join(missing)}")
    volume_image, label_image = (nib.load(str(p)) for p in paths)
    volume = np.asanyarray(volume_image.dataobj)
    label = np.asanyarray(label_image.dataobj)
    spacing = tuple(float(z) for z in volume_image.header.get_zooms()[:3])
    volume.setflags(write=False)  # shared by the session's tests: nothing may write to them
    label.setflags(write=False)
    return RealCase(volume, label, spacing, volume_image, label_image)


@pytest.fixture(scope="session")
def totalseg_example(shared_data) -> RealCase:
    """TotalSegmentator's example CT: int16 HU, a healthy liver mask (0/1), 3 mm isotropic."""
    return _load_case(shared_data / "totalseg_example", "ct.nii.gz", "liver.nii.gz")


@pytest.fixture(scope="session")
def lits117(shared_data) -> RealCase:
    """LiTS case 117 (cropped, 128^3, int16 HU): labels 0/1/2 with ~70 tumours, 1.4 mm nominal."""
    return _load_case(shared_data / "lits117", "volume-117.nii.gz", "segmentation-117.nii.gz")


# --- examples ---------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def load_example():
    """Import a script of examples/ by name (they are scripts, not a package)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


# --- trainer ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def phantom_case():
    """Make a small phantom ``train.data.Case`` (64 x 56 x 40 voxels at 3 mm): ``phantom_case(seed,
    lesions=3)``; with ``lesions=0`` a tumour-free host."""
    from synth.phantom import make_phantom
    from train.data import Case

    def make(seed: int, lesions: int = 3):
        ph = make_phantom(shape=(64, 56, 40), spacing=(3, 3, 3), lesions=lesions, seed=seed)
        return Case(f"phantom-{seed}", ph.volume.astype(np.float32), ph.label, tuple(ph.spacing),
                    ph.affine, source="phantom")

    return make


# --- torch ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module of tiny networks: on a small shared CPU, torch's OpenMP
    threads wait on one another and a step can take 10-20x longer with 2 threads than with 1."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
