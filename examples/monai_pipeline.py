"""Train-time patches for liver CT with MONAI: a dictionary pipeline with
``augment.RandTumorInsertiond``, seeded with ``set_random_state``.

    python examples/monai_pipeline.py                   # LiTS-117 if at hand, else the phantom
    python examples/monai_pipeline.py --image ct.nii.gz --label seg.nii.gz
    python examples/monai_pipeline.py --quick           # small patches on the phantom, seconds

Labels: 0 background, 1 liver, 2 tumour; the CT in HU. The order follows the TorchIO pipeline:
crop first (patches around liver voxels), then the spatial transform, then tumour insertion (so
the lesions get every later intensity change), then noise in HU, the HU window, and gamma and
blur on the window's [0, 1] scale. Prints (and returns) a summary of the patches and checks that
the same seed gives the same patches.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandGaussianNoised,
    RandGaussianSmoothd,
    ScaleIntensityRanged,
)

from augment import RandTumorInsertiond
from synth.phantom import make_phantom
from train.data import cached_lits117

SHARED_LITS117 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lits117"
WINDOW_HU = (-160.0, 240.0)  # abdominal soft-tissue window (level 40, width 400)


def find_lits117() -> Path | None:
    """The LiTS-117 folder: the sample fetched into the user cache (``tumorsynth data fetch
    lits117``; nothing is downloaded here), else ../shared/data/lits117 beside the project, else None."""
    cached = cached_lits117()
    if cached is not None:
        return cached
    shared = [SHARED_LITS117 / "volume-117.nii.gz", SHARED_LITS117 / "segmentation-117.nii.gz"]
    return SHARED_LITS117 if all(path.is_file() for path in shared) else None


def monai_pipeline(patch_size, tumor_probability=0.5, tumor_size="mix", tumor_count=(1, 3),
                   patches_per_scan=2) -> Compose:
    """The MONAI counterpart of ``augment.pipelines.training_pipeline`` (ranges as there).

    MONAI's gamma (``RandAdjustContrastd``) rescales by the image's own minimum and maximum, so it
    runs after the window, on [0, 1]; MONAI's blur sigma is in voxels, not mm.
    """
    keys = ["image", "label"]
    return Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS", labels=None),  # labels=None: the MetaTensor's own space
        EnsureTyped(keys="image", dtype=torch.float32),
        # Crop first: patches centred on liver or tumour voxels (pos) or elsewhere (neg).
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=patch_size, pos=9, neg=1,
                               num_samples=patches_per_scan, allow_smaller=True),
        # Rotation in radians: 15 degrees in-plane (about z), 5 degrees about x and y; scale
        # 0.9-1.1; translation in voxels. "border" pads with the edge values, not with 0 HU.
        RandAffined(keys=keys, prob=0.8, rotate_range=(math.radians(5), math.radians(5), math.radians(15)),
                    scale_range=(0.1, 0.1, 0.1), translate_range=(3, 3, 2), mode=("bilinear", "nearest"),
                    padding_mode="border"),
        RandTumorInsertiond(keys="image", label_key="label", prob=tumor_probability, size=tumor_size,
                            count=tumor_count, on_failure="ignore"),
        RandGaussianNoised(keys="image", prob=0.5, std=15.0),  # white noise, up to 15 HU
        ScaleIntensityRanged(keys="image", a_min=WINDOW_HU[0], a_max=WINDOW_HU[1], b_min=0.0, b_max=1.0,
                             clip=True),
        RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.74, 1.35)),
        RandGaussianSmoothd(keys="image", prob=0.2, sigma_x=(0.0, 0.7), sigma_y=(0.0, 0.7), sigma_z=(0.0, 0.4)),
    ])


def data_dicts(args, folder: Path) -> list[dict]:
    """``[{"image": path, "label": path}]``: the given pair, LiTS-117, or phantoms written to
    ``folder`` as NIfTI (MONAI pipelines usually start from files)."""
    if args.image or args.label:
        if not (args.image and args.label):
            raise SystemExit("give both --image and --label")
        print(f"data: {args.image} with labels {args.label}")
        return [{"image": str(args.image), "label": str(args.label)}]
    lits117 = find_lits117() if args.data == "lits117" else None
    if lits117 is not None:
        print(f"data: LiTS-117 from {lits117}")
        return [{"image": str(lits117 / "volume-117.nii.gz"), "label": str(lits117 / "segmentation-117.nii.gz")}]
    print("data: the phantom" + (" (no LiTS-117 found; `tumorsynth data fetch lits117` fetches it)"
                                 if args.data == "lits117" else ""))
    shape, spacing = ((96, 80, 40), (3.0, 3.0, 4.0)) if args.quick else ((224, 176, 80), (1.6, 1.6, 2.5))
    items = []
    for seed in range(1 if args.quick else 2):  # quick: one scan, patches from it
        case = make_phantom(shape=shape, spacing=spacing, seed=seed)
        image, label = folder / f"phantom{seed}_ct.nii.gz", folder / f"phantom{seed}_label.nii.gz"
        nib.save(nib.Nifti1Image(case.volume, case.affine), image)
        nib.save(nib.Nifti1Image(case.label, case.affine), label)
        items.append({"image": str(image), "label": str(label)})
    return items


def draw_batches(items, patch_size, tumor_probability, seed, batches) -> list[dict]:
    pipeline = monai_pipeline(patch_size, tumor_probability=tumor_probability)
    # MONAI's DataLoader re-seeds every random transform (RandTumorInsertiond included) from the
    # torch RNG when it is built (num_workers=0) or in each worker, which overrides
    # pipeline.set_random_state(...): seed torch (or monai.utils.set_determinism) instead.
    # Without a DataLoader, pipeline.set_random_state(seed=...) is the way.
    torch.manual_seed(seed)
    loader = DataLoader(Dataset(items, transform=pipeline), batch_size=2, shuffle=False, num_workers=0)
    out = []
    while len(out) < batches:
        for batch in loader:
            out.append(batch)
            if len(out) == batches:
                break
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="CT NIfTI in HU")
    parser.add_argument("--label", type=Path, help="label NIfTI (0/1/2)")
    parser.add_argument("--data", choices=["lits117", "phantom"], default="lits117",
                        help="built-in data when no --image/--label: lits117 (fetched into the user cache, else "
                             "../shared/data/lits117, else the phantom) or phantom")
    parser.add_argument("--quick", action="store_true", help="small patches, few batches, phantom")
    parser.add_argument("--batches", type=int, default=None, help="batches to draw (default 4, quick 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the summary as JSON into this folder")
    args = parser.parse_args(argv)
    if args.quick and not (args.image or args.label):
        args.data = "phantom"
    patch_size = (32, 32, 16) if args.quick else (128, 128, 64)
    batches = args.batches or (2 if args.quick else 4)
    tumor_probability = 1.0 if args.quick else 0.5

    with tempfile.TemporaryDirectory() as folder:
        items = data_dicts(args, Path(folder))
        first = draw_batches(items, patch_size, tumor_probability, args.seed, batches)
        again = draw_batches(items, patch_size, tumor_probability, args.seed, batches)
    images = torch.cat([b["image"].as_tensor() for b in first])
    labels = torch.cat([b["label"].as_tensor() for b in first])
    same = all(torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
               and torch.equal(a["label"].as_tensor(), b["label"].as_tensor()) for a, b in zip(first, again))
    summary = {
        "patches": int(images.shape[0]),
        "patch_shape": list(images.shape[2:]),
        "ct_range": [float(images.min()), float(images.max())],
        "label_values": sorted(int(v) for v in np.unique(labels.numpy())),
        "patches_with_tumor": int(sum(bool((patch == 2).any()) for patch in labels)),
        "tumor_voxels": int((labels == 2).sum()),
        "same_seed_same_patches": bool(same),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "monai_pipeline.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
