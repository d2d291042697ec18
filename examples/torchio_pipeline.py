"""Train-time patches for liver CT with TorchIO: the ready training pipeline, a Queue with a
LabelSampler, and history replay of one augmented subject.

    python examples/torchio_pipeline.py                 # LiTS-117 if at hand, else the phantom
    python examples/torchio_pipeline.py --image ct.nii.gz --label seg.nii.gz
    python examples/torchio_pipeline.py --quick         # small patches on the phantom, seconds

Labels: 0 background, 1 liver, 2 tumour; the CT in HU. Prints (and returns) a summary: what the
pipeline did to one subject, whether its history replays it exactly, and what the patches that
reach the network look like.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torchio as tio

from augment.pipelines import label_sampler, training_pipeline
from synth.phantom import make_phantom
from train.data import cached_lits117

SHARED_LITS117 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lits117"


def find_lits117() -> Path | None:
    """The LiTS-117 folder: the sample fetched into the user cache (``tumorsynth data fetch
    lits117``; nothing is downloaded here), else ../shared/data/lits117 beside the project, else None."""
    cached = cached_lits117()
    if cached is not None:
        return cached
    shared = [SHARED_LITS117 / "volume-117.nii.gz", SHARED_LITS117 / "segmentation-117.nii.gz"]
    return SHARED_LITS117 if all(path.is_file() for path in shared) else None


def load_subjects(args) -> list[tio.Subject]:
    """The subjects to train on: the given NIfTI pair, LiTS-117, or the phantom."""
    if args.image or args.label:
        if not (args.image and args.label):
            raise SystemExit("give both --image and --label")
        print(f"data: {args.image} with labels {args.label}")
        return [tio.Subject(ct=tio.ScalarImage(args.image), seg=tio.LabelMap(args.label))]
    lits117 = find_lits117() if args.data == "lits117" else None
    if lits117 is not None:
        print(f"data: LiTS-117 from {lits117}")
        return [tio.Subject(ct=tio.ScalarImage(lits117 / "volume-117.nii.gz"),
                            seg=tio.LabelMap(lits117 / "segmentation-117.nii.gz"))]
    print("data: the phantom" + (" (no LiTS-117 found; `tumorsynth data fetch lits117` fetches it)"
                                 if args.data == "lits117" else ""))
    # The phantom: a healthy liver, so every tumour in the patches is a synthetic one.
    shape, spacing = ((96, 80, 40), (3.0, 3.0, 4.0)) if args.quick else ((224, 176, 80), (1.6, 1.6, 2.5))
    subjects = []
    for seed in range(1 if args.quick else 2):  # quick: one scan, patches from it
        case = make_phantom(shape=shape, spacing=spacing, seed=seed)
        subjects.append(tio.Subject(
            ct=tio.ScalarImage(tensor=torch.from_numpy(case.volume)[None], affine=case.affine),
            seg=tio.LabelMap(tensor=torch.from_numpy(case.label)[None], affine=case.affine)))
    return subjects


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="CT NIfTI in HU")
    parser.add_argument("--label", type=Path, help="label NIfTI (0/1/2)")
    parser.add_argument("--data", choices=["lits117", "phantom"], default="lits117",
                        help="built-in data when no --image/--label: lits117 (fetched into the user cache, else "
                             "../shared/data/lits117, else the phantom) or phantom")
    parser.add_argument("--quick", action="store_true", help="small patches, few batches, phantom")
    parser.add_argument("--batches", type=int, default=None, help="batches to draw (default 8, quick 2)")
    parser.add_argument("--workers", type=int, default=0, help="Queue subject-loading processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the summary as JSON into this folder")
    args = parser.parse_args(argv)
    if args.quick and not (args.image or args.label):
        args.data = "phantom"
    patch_size = (32, 32, 16) if args.quick else (128, 128, 64)
    batches = args.batches or (2 if args.quick else 8)
    torch.manual_seed(args.seed)  # every random value of the pipeline comes from the torch RNG

    subjects = load_subjects(args)
    # In quick mode every subject gets lesions and the elastic step (so both are exercised).
    options = {"tumor_probability": 1.0, "elastic_probability": 1.0} if args.quick else {}
    pipeline = training_pipeline(patch_size, tumor_size="mix", tumor_count=(1, 3), **options)

    # 1. One subject through the pipeline, and its history replayed on the original.
    augmented = pipeline(subjects[0])
    replayed = augmented.get_composed_history()(subjects[0])
    steps = [name for name, _ in augmented.applied_transforms]
    replay_difference = float((replayed.ct.data - augmented.ct.data).abs().max())
    replay_labels_equal = bool(torch.equal(replayed.seg.data, augmented.seg.data))
    print(f"steps applied: {' -> '.join(steps)}")
    print(f"replay: largest CT difference {replay_difference:.2e}, labels identical: {replay_labels_equal}")

    # 2. Patches for training: subjects are augmented whole (cropped first), then the Queue cuts
    # patches centred on liver and tumour voxels.
    dataset = tio.SubjectsDataset(subjects, transform=pipeline)
    queue = tio.Queue(dataset, max_length=16, samples_per_volume=4, sampler=label_sampler(patch_size),
                      num_workers=args.workers, shuffle_subjects=True, shuffle_patches=True)
    loader = tio.SubjectsLoader(queue, batch_size=2, num_workers=0)  # the Queue loads, not this
    shapes, values, label_values, tumor_patches, patches = set(), [], set(), 0, 0
    for _, batch in zip(range(batches), loader):
        ct, seg = batch["ct"][tio.DATA], batch["seg"][tio.DATA]
        shapes.add(tuple(ct.shape[1:]))
        values += [float(ct.min()), float(ct.max())]
        label_values |= set(int(v) for v in seg.unique())
        tumor_patches += int(sum(bool((patch == 2).any()) for patch in seg))
        patches += ct.shape[0]
    summary = {
        "steps": steps,
        "augmented_shape": list(augmented.ct.shape[1:]),
        "replay_max_abs_difference": replay_difference,
        "replay_labels_equal": replay_labels_equal,
        "patches": patches,
        "patch_shapes": sorted(list(s) for s in shapes),
        "ct_range": [min(values), max(values)],
        "label_values": sorted(label_values),
        "patches_with_tumor": tumor_patches,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "torchio_pipeline.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
