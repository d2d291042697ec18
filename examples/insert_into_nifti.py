"""Insert lesions of every size class into a CT and save the results as NIfTI with previews.

    python examples/insert_into_nifti.py --image ct.nii.gz --mask liver.nii.gz --out out/
    python examples/insert_into_nifti.py --out out/            # on the built-in phantom
    python examples/insert_into_nifti.py --out out/ --quick    # small phantom, two classes (CI)

The scan is prepared once and reused for every size class, as an offline data-set builder or an
augmentation pipeline would do. A class whose lesions find no room in the liver (a large one beside
many existing tumours, say) is reported with the reason and skipped; the others are still written.
Exit status: 0 when every class was written, 1 when some could not be placed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from synth import LesionPlacementError, prepare_host
from synth.io import load_nifti, save_nifti, write_json_atomic
from synth.phantom import make_phantom
from synth.preview import save_lesion_preview


def load_case(image: Path | None, mask: Path | None, quick: bool):
    """Array, mask, spacing and affine of the user's case, or of the phantom."""
    if image is None:
        case = make_phantom(shape=(112, 96, 48), spacing=(3.0, 3.0, 4.0)) if quick else make_phantom()
        return case.volume, case.label, case.spacing, case.affine
    ct, liver = load_nifti(image), load_nifti(mask)
    return ct.array, liver.array, ct.spacing, ct.affine


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="CT in HU (NIfTI); default: the phantom")
    parser.add_argument("--mask", type=Path, help="liver mask or 0/1/2 labels (NIfTI)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small phantom, two size classes")
    args = parser.parse_args(argv)
    if (args.image is None) != (args.mask is None):
        parser.error("give --image and --mask together, or neither for the phantom")

    volume, mask, spacing, affine = load_case(args.image, args.mask, args.quick)
    host = prepare_host(volume, mask, spacing=spacing)
    print(f"liver: {host.stats.volume_ml:.0f} mL, median {host.stats.median_hu:.0f} HU, "
          f"noise {host.stats.noise_hu:.0f} HU")

    classes = ("small", "medium") if args.quick else ("tiny", "small", "medium", "large")
    rng = np.random.default_rng(args.seed)
    summary = {}  # size class -> lesion diameters (mm), or why it could not be placed (str)
    for size in classes:
        try:
            result = host.insert(size=size, count=(1, 3), rng=rng)
        except LesionPlacementError as exc:  # no room in this liver: report it, go on with the others
            summary[size] = str(exc)
            print(f"{size:6s}: not placed, nothing written: {exc}")
            continue
        folder = args.out / size
        save_nifti(result.volume, affine, folder / "ct.nii.gz")
        save_nifti(result.label, affine, folder / "label.nii.gz")
        save_lesion_preview(result.volume, result.label, result.lesions, spacing, folder / "preview.png")
        records = [lesion.to_dict() for lesion in result.lesions]
        write_json_atomic(records, folder / "lesions.json")
        summary[size] = [round(r["diameter_mm"], 1) for r in records]
        print(f"{size:6s}: {len(records)} lesion(s), diameters {summary[size]} mm -> {folder}")
    failed = [size for size, value in summary.items() if isinstance(value, str)]
    print(f"{len(classes) - len(failed)} of {len(classes)} size classes written to {args.out}"
          + (f"; not placed: {', '.join(failed)}" if failed else ""))
    return summary


if __name__ == "__main__":
    summary = main()
    sys.exit(1 if any(isinstance(value, str) for value in summary.values()) else 0)
