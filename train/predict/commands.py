"""``tumorsynth predict``: segment new scans with a model from ``tumorsynth train`` or ``ablate``.

    tumorsynth predict --model RUN_DIR --image CT.nii.gz --out PRED.nii.gz [--liver LIVER.nii.gz]
    tumorsynth predict --model RUN_DIR --image CT_FOLDER/ --out PRED_FOLDER/

torch and MONAI are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synth.errors import UsageError, input_errors

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tumorsynth predict``."""
    parser.description = ("Segment CT scans (NIfTI) with a trained model: resampled to the model's voxel size, "
                          "predicted, written back on each scan's own grid and orientation as 0/1/2 labels.")
    parser.add_argument("--model", required=True, type=Path,
                        help="a run folder (holding model.pt) or a model file")
    parser.add_argument("--image", required=True, type=Path, help="a CT (.nii[.gz]) or a folder of them")
    parser.add_argument("--out", required=True, type=Path,
                        help="the label map to write, or a folder (one file per scan, same names)")
    parser.add_argument("--liver", type=Path,
                        help="the liver mask(s) when known (a file, or a folder of files named as the scans); "
                             "without it the model's own liver")
    parser.add_argument("--liver-opening-mm", type=float, default=0.0,
                        help="take the model's own liver after an opening of this radius, cutting off look-alike "
                             "tissue joined to it by a thin bridge (default 0: none; the cpu-quick profile uses 3)")
    parser.add_argument("--min-tumor-mm3", type=float, default=0.0,
                        help="predicted tumour components below this volume become liver (default 0: keep all)")
    parser.add_argument("--min-contrast-hu", type=float, default=0.0,
                        help="predicted tumour components with less contrast than this to the liver around them "
                             "become liver (default 0: keep all; the cpu-quick profile uses 10)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")


def _pairs(args: argparse.Namespace) -> list[tuple[Path, Path, Path | None]]:
    """(image, output, liver or None) for a file or a folder of scans."""
    from synth.cases import nifti_stem

    if args.image.is_file():
        if args.out.is_dir():
            raise UsageError(f"--out {args.out} is a folder; give the file to write for one --image")
        return [(args.image, args.out, args.liver)]
    if not args.image.is_dir():
        raise UsageError(f"--image {args.image}: no such file or folder")
    images = sorted(p for p in args.image.iterdir() if p.is_file() and nifti_stem(p.name))
    if not images:
        raise UsageError(f"--image {args.image}: the folder holds no .nii or .nii.gz file")
    pairs = []
    for image in images:
        liver = None
        if args.liver is not None:
            liver = args.liver / image.name
            if not liver.is_file():
                raise UsageError(f"--liver {args.liver}: no mask named {image.name} for {image}")
        pairs.append((image, args.out / image.name, liver))
    return pairs


def run(args: argparse.Namespace) -> int:
    """Predict every scan; returns the exit status."""
    from tqdm.auto import tqdm

    from . import find_model_file, predict_image

    pairs = _pairs(args)
    for image, out, _ in pairs:
        if out.resolve() == image.resolve():
            raise UsageError(f"--out {out} would overwrite the input scan; choose another path")
    with input_errors():
        model = find_model_file(args.model)
        for image, out, liver in tqdm(pairs, desc="predict", unit="scan", disable=len(pairs) == 1):
            written = predict_image(model, image, out, liver=liver, liver_opening_mm=args.liver_opening_mm,
                                    min_tumor_mm3=args.min_tumor_mm3, min_contrast_hu=args.min_contrast_hu,
                                    device=args.device)
            print(f"{image} -> {written}")
    return 0
