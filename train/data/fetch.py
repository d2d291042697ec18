"""``fetch_lits117``: the small real LiTS sample shipped inside a PyPI wheel, converted to NIfTI.

The wheel ``liver-ct-segmentation-package==1.6.0`` carries LiTS case 117, cropped to the liver and
resampled to 128^3, as two MRC files (``data/img_117.mrc`` float32 HU, ``data/lab_117.mrc``
uint16 labels). pip downloads the wheel (no install, no dependencies), its SHA-256 is checked,
the two files are read straight from the zip and written as NIfTI into the user cache.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from synth.io import atomic_output_path

from .cache import default_cache_dir
from .mrc import read_mrc

__all__ = ["FetchError", "cached_lits117", "fetch_lits117", "LITS117_WHEEL", "LITS117_SHA256",
           "LITS117_SPACING_MM"]

LITS117_WHEEL = "liver-ct-segmentation-package==1.6.0"
LITS117_SHA256 = "67ffa526d8500ce5e3d9f2c96c1690543d811d352d93d531301d35791b9d6bba"
# The source gives no spacing; 1.4 mm isotropic gives the cropped liver a plausible volume.
LITS117_SPACING_MM = 1.4
_MEMBERS = {"image": "liver_ct_segmentation_package/data/img_117.mrc",
            "label": "liver_ct_segmentation_package/data/lab_117.mrc"}
_FILES = {"image": "volume-117.nii.gz", "label": "segmentation-117.nii.gz"}
_DESCRIPTION = "LiTS-117 sample; 1.4 mm spacing approximate (not in source)"  # NIfTI descrip: <= 80 bytes

_README = f"""LiTS case 117, a small real sample for tumorsynth
=================================================

Files: volume-117.nii.gz (int16 HU, 128^3) and segmentation-117.nii.gz (uint8: 0 background,
1 liver, 2 tumour), RAS, axis 2 axial.

Provenance: the PyPI wheel {LITS117_WHEEL} (SHA-256 {LITS117_SHA256})
ships LiTS case 117 cropped to the liver's bounding box and resampled to 128^3 voxels, as MRC files
liver_ct_segmentation_package/data/img_117.mrc and lab_117.mrc. They were read without installing
the package and converted to NIfTI: MRC columns, rows, sections are X, Y, Z; the image is rounded
to whole HU.

Spacing: APPROXIMATE. The source gives no voxel size; the files state 1.4 mm isotropic, the value
that gives the liver a plausible volume. Treat every size in mm from this case as approximate.

Licence: CC BY-SA 4.0, as the Liver Tumor Segmentation Benchmark (LiTS; Bilic et al., Medical
Image Analysis 84, 2023) and the Medical Segmentation Decathlon Task03 (Liver) data it comes from.
Share derivatives under the same licence and cite LiTS.
"""


class FetchError(RuntimeError):
    """The sample could not be fetched (offline, checksum mismatch, broken file); the message says
    what to do."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--timeout", "30", "-d", str(folder), LITS117_WHEEL]
    advice = (f"check the network (or a proxy), or download the wheel on a connected machine with "
              f"`pip download --no-deps {LITS117_WHEEL}` and pass it with --wheel FILE")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"downloading {LITS117_WHEEL} took more than 15 minutes; {advice}") from exc
    except OSError as exc:
        raise FetchError(f"could not run pip to download {LITS117_WHEEL} ({exc}); {advice}") from exc
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise FetchError(f"pip could not download {LITS117_WHEEL} (offline?); {advice}.\npip said:\n{tail}")
    return wheels[0]


def _read_members(wheel: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = {kind: archive.read(member) for kind, member in _MEMBERS.items()}
    except KeyError as exc:
        raise FetchError(f"{wheel}: the wheel lacks {exc}; is it {LITS117_WHEEL}?") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"{wheel}: not a readable wheel ({exc}); delete it and fetch again") from exc
    try:
        volumes = {kind: read_mrc(data, name=_MEMBERS[kind]).array for kind, data in raw.items()}
    except ValueError as exc:
        raise FetchError(f"{wheel}: a sample file is broken ({exc}); delete the wheel and fetch again") from exc
    image, label = volumes["image"], volumes["label"]
    if image.shape != label.shape:
        raise FetchError(f"{wheel}: image {image.shape} and label {label.shape} differ in shape; the wheel "
                         f"is not the expected one")
    if not np.all(np.isfinite(image)) or image.min() < -32768 or image.max() > 32767:
        raise FetchError(f"{wheel}: the image holds values that are not CT Hounsfield units")
    if label.min() < 0 or label.max() > 2:
        raise FetchError(f"{wheel}: the label holds values outside 0, 1, 2")
    # The MRC stores HU as float32 with quarter-HU steps; whole HU as int16 like LiTS itself.
    return {"image": np.rint(image).astype(np.int16), "label": label.astype(np.uint8)}


def _write_nifti(array: np.ndarray, path: Path) -> None:
    import nibabel as nib

    affine = np.diag([LITS117_SPACING_MM] * 3 + [1.0])
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header["descrip"] = _DESCRIPTION.encode("ascii")
    img.header.set_xyzt_units("mm")
    with atomic_output_path(path, suffix=".nii.gz") as tmp:
        nib.save(img, tmp)


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (*_FILES.values(), "README.txt"))


def cached_lits117(cache_dir: Path | None = None) -> Path | None:
    """The folder ``<cache_dir>/lits117`` when :func:`fetch_lits117` has already fetched the sample
    there (its files are all present), else None. Never downloads anything.

    Args:
        cache_dir: the cache root; default ``default_cache_dir()`` (``$TUMORSYNTH_CACHE``, ...).
    """
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "lits117"
    return folder if _complete(folder) else None


def fetch_lits117(cache_dir: Path | None = None, *, wheel: Path | None = None, progress: bool = True,
                  sha256: str = LITS117_SHA256) -> Path:
    """The folder ``<cache_dir>/lits117`` holding ``volume-117.nii.gz``, ``segmentation-117.nii.gz``
    and a ``README.txt`` (provenance, approximate 1.4 mm spacing, CC BY-SA 4.0 licence).

    A folder that already holds them is returned at once (nothing is downloaded). Otherwise the wheel
    is downloaded with pip (or taken from ``wheel``), its SHA-256 checked against ``sha256``, and its
    two MRC files converted. Each file is written atomically.

    Args:
        cache_dir: the cache root; default ``default_cache_dir()``.
        wheel: a copy of the wheel already on disk (offline use).
        progress: show a progress bar over the steps.
        sha256: the expected SHA-256 of the wheel (tests pass their own).

    Raises:
        FetchError: offline, checksum mismatch or a broken wheel; the message says what to do.
    """
    from tqdm.auto import tqdm

    cached = cached_lits117(cache_dir)
    if cached is not None:
        return cached
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "lits117"
    folder.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=3, desc="fetching LiTS-117", unit="step", disable=not progress)
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
            if wheel is None:
                steps.set_postfix_str("pip download")
                wheel_path = _download_wheel(Path(tmp))
            else:
                wheel_path = Path(wheel)
                if not wheel_path.is_file():
                    raise FetchError(f"{wheel_path}: no such wheel file; download it with "
                                     f"`pip download --no-deps {LITS117_WHEEL}`")
            steps.update()
            steps.set_postfix_str("checksum")
            found = _sha256(wheel_path)
            if found != sha256.lower():
                raise FetchError(f"{wheel_path}: SHA-256 {found} does not match the expected {sha256}; the "
                                 f"file is corrupt or not {LITS117_WHEEL}: delete it and fetch again")
            steps.update()
            steps.set_postfix_str("MRC to NIfTI")
            arrays = _read_members(wheel_path)
        for kind, name in _FILES.items():
            _write_nifti(arrays[kind], folder / name)
        with atomic_output_path(folder / "README.txt") as tmp_readme:
            tmp_readme.write_text(_README, encoding="utf-8")
        steps.update()
    finally:
        steps.close()
    return folder
