"""One case, files in to files out: the path of ``insert`` and ``demo``; ``synthesize`` reuses
its steps for every variant.

load the CT and mask pair -> prepare the host -> insert lesions -> write ``ct.nii.gz``,
``label.nii.gz``, (``preview.png``) and, last, ``lesions.json`` -> print one line per lesion.
The synthesiser, the phantom and matplotlib are imported inside the functions that use them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError, input_errors
from .io import NiftiVolume, check_same_space, load_nifti, remove_stale_temporaries, save_nifti, write_json_atomic
from .options import SynthesisOptions
from .preview import DEFAULT_WINDOW as WINDOW_HU  # abdominal soft-tissue window, W 250 / L 65

CT_NAME, LABEL_NAME, LESIONS_NAME, PREVIEW_NAME = (
    "ct.nii.gz",
    "label.nii.gz",
    "lesions.json",
    "preview.png",
)


def load_pair(image: Path, mask: Path) -> tuple[NiftiVolume, NiftiVolume]:
    """Load a CT and its mask and check that they share one voxel grid (raises UsageError)."""
    with input_errors():
        ct = load_nifti(image)
        liver = load_nifti(mask)
        check_same_space(ct, liver)
    return ct, liver


def prepare(ct: NiftiVolume, liver: NiftiVolume):
    """Validate a loaded pair for the synthesiser (raises UsageError for input it refuses)."""
    from .host import prepare_host

    with input_errors():
        return prepare_host(ct.array, liver.array, spacing=ct.spacing)


def insert_lesions(host: Any, options: SynthesisOptions, seed: int, *, in_place: bool = False):
    """One insertion on a prepared host (raises UsageError for settings it refuses).

    ``in_place`` writes into the host's own arrays (no copy of the scan); the caller puts the scan
    back with ``host.restore(result)`` before the next insertion.
    """
    with input_errors():
        if options.method == "diffusion" and not options.model:
            raise ValueError("--method diffusion needs --model MODEL_DIR")
        if options.method == "copy-paste" and not options.bank:
            raise ValueError("--method copy-paste needs --bank BANK_DIR (build one with 'tumorsynth bank build')")
        if options.method != "copy-paste" and options.bank:
            raise ValueError("--bank only applies to --method copy-paste")
        return host.insert(
            size=options.size, count=options.count, phenotype=options.phenotype, phase=options.phase, seed=seed,
            out=(host.volume, host.label) if in_place else None, quality_filter=options.quality_gate,
            **options.method_options(),
        )


def check_quality_gate(options: SynthesisOptions) -> None:
    """Read ``--quality-gate`` before any work (raises UsageError naming the option): a missing or
    bad file is refused at once, not as the failure of every lesion. The read is cached, so the
    insertions that follow in this process do not read it again."""
    if options.quality_gate is None:
        return
    from .realism.gate import cached_gate

    try:
        cached_gate(options.quality_gate)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--quality-gate: {exc}") from exc


def world_mm(affine: np.ndarray, voxel: Sequence[int]) -> list[float]:
    """World (scanner, RAS+) position in mm of a voxel index, rounded to 0.001 mm."""
    point = np.asarray(affine, dtype=np.float64) @ np.array([*map(float, voxel), 1.0])
    return [round(float(v), 3) for v in point[:3]]


def lesion_report(
    ct: NiftiVolume,
    mask_path: Path,
    options: SynthesisOptions,
    seed: int,
    lesions: Sequence[Any],
    **extra: Any,
) -> dict[str, Any]:
    """The content of ``lesions.json``: inputs, settings and one record per lesion."""
    records = []
    for lesion in lesions:
        record = lesion.to_dict()
        record["center_world_mm"] = world_mm(ct.affine, lesion.center_voxel)
        records.append(record)
    return {
        "image": str(Path(ct.path).resolve()),
        "mask": str(Path(mask_path).resolve()),
        "spacing_mm": [round(float(s), 6) for s in ct.spacing],
        "seed": int(seed),
        **options.as_json(),
        "window_hu": list(WINDOW_HU),
        **extra,
        "lesions": records,
    }


def output_paths(out_dir: Path, *, preview: bool) -> dict[str, Path]:
    """The files :func:`write_case_outputs` writes into ``out_dir``, by key."""
    names = {"ct": CT_NAME, "label": LABEL_NAME, "lesions": LESIONS_NAME}
    if preview:
        names["preview"] = PREVIEW_NAME
    return {key: Path(out_dir) / name for key, name in names.items()}


def check_outputs_spare_inputs(outputs: dict[str, Path], inputs: Sequence[Path]) -> None:
    """Refuse, before any work, an output file that is one of the input files."""
    resolved = {Path(p).resolve(): Path(p) for p in inputs}
    for path in outputs.values():
        if path.resolve() in resolved:
            raise UsageError(f"writing the output {path.name} into {path.parent} would overwrite the input "
                             f"{resolved[path.resolve()]}; choose another --out folder")


def write_case_outputs(
    out_dir: Path,
    ct: NiftiVolume,
    result: Any,
    report: dict[str, Any],
    *,
    preview: bool,
) -> dict[str, Path]:
    """Write ct, label, (preview) and lesions.json into ``out_dir``; lesions.json comes last.

    lesions.json marks a complete output (``synthesize`` resumes on it), so it is written only
    after every other file is in place. Every write is atomic.
    """
    paths = output_paths(out_dir, preview=preview)
    remove_stale_temporaries(out_dir)
    # The synthesiser returns the input's dtype and a uint8 label map: saved as they are.
    save_nifti(result.volume, ct.affine, paths["ct"])
    save_nifti(result.label, ct.affine, paths["label"])
    if preview:
        from .preview import save_lesion_preview

        save_lesion_preview(
            result.volume, result.label, result.lesions, ct.spacing, paths["preview"],
            window=WINDOW_HU,
        )
    write_json_atomic(report, paths["lesions"])
    return paths


def lesion_line(lesion: Any, affine: np.ndarray) -> str:
    """One printed line per lesion: size, phenotype, contrast, voxel and world position."""
    x, y, z = world_mm(affine, lesion.center_voxel)
    return (
        f"  lesion {lesion.index}: {float(lesion.diameter_mm):5.1f} mm {lesion.size_class:<6} "
        f"{lesion.phenotype:<13} {float(lesion.mean_hu_change):+6.0f} HU  "
        f"voxel {tuple(int(v) for v in lesion.center_voxel)}  "
        f"world ({x:.1f}, {y:.1f}, {z:.1f}) mm"
    )


def run_insert(
    image: Path,
    mask: Path,
    out_dir: Path,
    options: SynthesisOptions,
    seed: int | None = None,
) -> dict[str, Path]:
    """Load, insert, write the four outputs and print a summary; return the written paths."""
    if seed is None:
        seed = secrets.randbelow(2**32)  # drawn here so it can be recorded and reproduced
    check_outputs_spare_inputs(output_paths(Path(out_dir), preview=True), [image, mask])
    check_quality_gate(options)
    ct, liver = load_pair(image, mask)
    result = insert_lesions(prepare(ct, liver), options, seed)
    report = lesion_report(ct, mask, options, seed, result.lesions)
    paths = write_case_outputs(Path(out_dir), ct, result, report, preview=True)
    n = len(result.lesions)
    print(f"inserted {n} lesion{'s' if n != 1 else ''} into {image} (seed {seed}):")
    for lesion in result.lesions:
        print(lesion_line(lesion, ct.affine))
    for key in ("ct", "label", "lesions", "preview"):
        print(f"  {key:<8} {paths[key]}")
    return paths


def run_demo(out_dir: Path, options: SynthesisOptions, seed: int) -> dict[str, Path]:
    """Write the built-in phantom and its liver mask as NIfTI into ``out_dir``, then run_insert."""
    from .phantom import make_phantom

    check_quality_gate(options)  # before the phantom is written
    out_dir = Path(out_dir)
    phantom = make_phantom()
    image = save_nifti(np.asarray(phantom.volume), phantom.affine, out_dir / "phantom_ct.nii.gz")
    mask = save_nifti(
        np.asarray(phantom.label, dtype=np.uint8), phantom.affine, out_dir / "phantom_liver.nii.gz"
    )
    paths = run_insert(image, mask, out_dir, options, seed)
    print(f"  phantom  {image}\n  liver    {mask}")
    return paths
