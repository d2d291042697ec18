"""Insert lesions of every size class into a CT and save the results as NIfTI with previews.

    python examples/insert_into_nifti.py --image ct.nii.gz --mask liver.nii.gz --out out/
    python examples/insert_into_nifti.py --out out/            # on the built-in phantom
    python examples/insert_into_nifti.py --out out/ --quick    # small phantom, two classes (CI)

The scan is prepared once and reused for every size class, as an offline data-set builder or an
augmentation pipeline would do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from synth import prepare_host
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
    summary = {}
    for size in classes:
        result = host.insert(size=size, count=(1, 3), rng=rng)
        folder = args.out / size
        save_nifti(result.volume, affine, folder / "ct.nii.gz")
        save_nifti(result.label, affine, folder / "label.nii.gz")
        save_lesion_preview(result.volume, result.label, result.lesions, spacing, folder / "preview.png")
        records = [lesion.to_dict() for lesion in result.lesions]
        write_json_atomic(records, folder / "lesions.json")
        summary[size] = [round(r["diameter_mm"], 1) for r in records]
        print(f"{size:6s}: {len(records)} lesion(s), diameters {summary[size]} mm -> {folder}")
    return summary


if __name__ == "__main__":
    main()
