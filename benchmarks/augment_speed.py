"""Speed of the TorchIO training pipeline (augment.pipelines), with and without tumour insertion.

On LiTS-117 (128^3 voxels at a nominal 1.4 mm, from ../shared/data) and on the built-in phantom
(224 x 176 x 80 voxels at 1.6 x 1.6 x 2.5 mm), with 2 CPU threads, it measures:
- **direct**: the pipeline called on one subject after another in the main process: subjects per
  second, and the time spent in each step (so the insertion's share is read directly, not only
  as a difference of two noisy totals);
- **queue**: patches per second out of ``tio.Queue`` + ``LabelSampler`` through a
  ``SubjectsLoader``, with the subjects loaded in the main process (``num_workers=0``) or in two
  worker processes (``num_workers=2``).

Variants: insertion off (``tumor_probability=0``: the step is not in the pipeline), at the
default ``tumor_probability=0.5``, and always on (``1.0``, the worst case). Every subject's
transform is seeded by its index (``torch.manual_seed(seed + index)``) and the insertion step
draws from a fork of the torch RNG (:class:`RngNeutral`), so every variant crops, rotates,
deforms, blurs and so on each subject in the same way and only the insertion differs: the
comparison is paired. (In training the insertion draws from the shared stream as usual; the
fork only removes the noise of different elastic and bias-field draws from the comparison.)
Figures are medians over repeats.

Usage: python benchmarks/augment_speed.py [--repeats N] [--subjects N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchio as tio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LITS117, REPO, machine, write_results  # noqa: E402

from augment import RandomTumorInsertion  # noqa: E402
from augment.pipelines import label_sampler, training_pipeline  # noqa: E402
from synth.phantom import make_phantom  # noqa: E402

THREADS = 2
PATCH_SIZE = (128, 128, 64)  # the pipeline's default; the crop is then 160 x 160 x 80
SAMPLES_PER_VOLUME = 4
BATCH_SIZE = 2
VARIANTS = {"without_insertion": 0.0, "default_p0.5": 0.5, "always_p1": 1.0}
TARGET_SHARE = 0.10  # insertion at most 10 % of the pipeline's time


class SeededSubjects(tio.SubjectsDataset):
    """A SubjectsDataset that seeds the torch RNG with ``seed + index`` before transforming subject
    ``index`` (also in a DataLoader worker), so that every variant transforms subject ``index``
    alike up to the insertion."""

    def __init__(self, subjects, transform, seed):
        super().__init__(subjects, transform=transform)
        self.seed = seed

    def __getitem__(self, index):
        torch.manual_seed(self.seed + index)
        return super().__getitem__(index)


class RngNeutral:
    """Call a step with its own fork of the torch RNG, so that the steps after it draw the same
    values whether it runs, is skipped by its probability, or is absent."""

    def __init__(self, step):
        self.step = step

    def __call__(self, subject):
        with torch.random.fork_rng(devices=[]):
            # Reseed from the forked state so the step's draws are not the next step's draws.
            torch.manual_seed(int(torch.randint(0, 2**62, (1,))) ^ 0x5DEECE66D)
            return self.step(subject)


def benchmark_pipeline(probability: float) -> tio.Compose:
    """The training pipeline at its defaults, with the insertion step made RNG-neutral."""
    pipeline = training_pipeline(PATCH_SIZE, tumor_probability=probability)
    pipeline.transforms = [RngNeutral(step) if isinstance(step, RandomTumorInsertion) else step
                           for step in pipeline.transforms]
    return pipeline


def timed_steps(pipeline: tio.Compose) -> dict[str, float]:
    """Wrap each top-level step so that its time accumulates in the returned dict (seconds)."""
    totals: dict[str, float] = {}
    for step in pipeline.transforms:
        step = step.step if isinstance(step, RngNeutral) else step
        name = type(step).__name__ if not isinstance(step, tio.Compose) else "RandomGamma (window scale)"
        totals[name] = 0.0  # in pipeline order, also when the step's probability skips it
        apply = step.apply_transform

        def wrapped(subject, apply=apply, name=name):
            start = time.perf_counter()
            out = apply(subject)
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
            return out

        step.apply_transform = wrapped
    return totals


def direct(subject, probability, subjects, repeats):
    rates, shares, step_seconds = [], [], {}
    for repeat in range(repeats):
        pipeline = benchmark_pipeline(probability)
        totals = timed_steps(pipeline)
        start = time.perf_counter()
        for index in range(subjects):
            torch.manual_seed(1000 * repeat + index)
            pipeline(subject)
        elapsed = time.perf_counter() - start
        rates.append(subjects / elapsed)
        shares.append(totals.get("RandomTumorInsertion", 0.0) / elapsed)
        for name, seconds in totals.items():
            step_seconds.setdefault(name, []).append(1000 * seconds / subjects)
    return {"subjects_per_s": round(statistics.median(rates), 3),
            "insertion_share_of_time": round(statistics.median(shares), 4),
            "ms_per_subject_by_step": {name: round(statistics.median(v), 1)
                                       for name, v in step_seconds.items()}}


def queue(subject, probability, subjects, repeats, workers):
    rates = []
    for repeat in range(repeats):
        dataset = SeededSubjects([subject] * subjects, benchmark_pipeline(probability),
                                 seed=1000 * repeat)
        patches_queue = tio.Queue(dataset, max_length=2 * SAMPLES_PER_VOLUME * max(workers, 1),
                                  samples_per_volume=SAMPLES_PER_VOLUME, sampler=label_sampler(PATCH_SIZE),
                                  num_workers=workers, shuffle_subjects=False, shuffle_patches=True)
        loader = tio.SubjectsLoader(patches_queue, batch_size=BATCH_SIZE, num_workers=0)
        start = time.perf_counter()
        patches = sum(batch["ct"][tio.DATA].shape[0] for batch in loader)
        rates.append(patches / (time.perf_counter() - start))
    return round(statistics.median(rates), 2)


def bench_subject(name, subject, subjects, repeats):
    print(f"{name}: shape {tuple(subject.ct.spatial_shape)}, spacing {subject.ct.spacing}", flush=True)
    entry = {"shape": list(subject.ct.spatial_shape), "spacing_mm": [round(s, 3) for s in subject.ct.spacing],
             "direct": {}, "queue_patches_per_s": {}}
    training_pipeline(PATCH_SIZE, tumor_probability=1.0)(subject)  # first touch of every code path
    for variant, probability in VARIANTS.items():
        entry["direct"][variant] = direct(subject, probability, subjects, repeats)
        print(f"  direct {variant}: {json.dumps(entry['direct'][variant])}", flush=True)
    for workers in (0, 2):
        rates = {variant: queue(subject, VARIANTS[variant], subjects, repeats, workers)
                 for variant in ("without_insertion", "default_p0.5")}
        entry["queue_patches_per_s"][f"num_workers_{workers}"] = rates
        print(f"  queue num_workers={workers}: {rates}", flush=True)
    direct_off = entry["direct"]["without_insertion"]["subjects_per_s"]
    entry["insertion_cost"] = {
        variant: {
            "share_of_pipeline_time": entry["direct"][variant]["insertion_share_of_time"],
            "added_time_vs_without": round(direct_off / entry["direct"][variant]["subjects_per_s"] - 1, 4),
            "meets_target": entry["direct"][variant]["insertion_share_of_time"] <= TARGET_SHARE,
        }
        for variant in ("default_p0.5", "always_p1")
    }
    for workers, rates in entry["queue_patches_per_s"].items():
        entry["insertion_cost"]["default_p0.5"][f"queue_added_time_{workers}"] = round(
            rates["without_insertion"] / rates["default_p0.5"] - 1, 4)
    return entry


def subject_from_arrays(volume, label, affine) -> tio.Subject:
    return tio.Subject(ct=tio.ScalarImage(tensor=torch.from_numpy(np.asarray(volume))[None], affine=affine),
                       seg=tio.LabelMap(tensor=torch.from_numpy(np.asarray(label))[None], affine=affine))


def markdown(results) -> str:
    """The tables docs/benchmarks.md quotes."""
    lines = ["| scan | insertion | subjects/s (direct) | insertion share of time | added time vs without |",
             "|---|---|---|---|---|"]
    for name, entry in results["scans"].items():
        for variant, row in entry["direct"].items():
            cost = entry["insertion_cost"].get(variant)
            share = f"{100 * cost['share_of_pipeline_time']:.1f} %" if cost else "-"
            added = f"{100 * cost['added_time_vs_without']:+.1f} %" if cost else "-"
            lines.append(f"| {name} | {variant} | {row['subjects_per_s']} | {share} | {added} |")
    lines += ["", "| scan | DataLoader workers | patches/s without insertion | patches/s with (p 0.5) "
              "| added time |", "|---|---|---|---|---|"]
    for name, entry in results["scans"].items():
        for workers, rates in entry["queue_patches_per_s"].items():
            added = entry["insertion_cost"]["default_p0.5"][f"queue_added_time_{workers}"]
            lines.append(f"| {name} | {workers.rsplit('_', 1)[1]} | {rates['without_insertion']} "
                         f"| {rates['default_p0.5']} | {100 * added:+.1f} % |")
    lines += ["", "Median ms a subject spent in each step (direct, insertion always on; a step's time "
              "is averaged over all subjects, including those its probability skipped):", "",
              "| step | " + " | ".join(results["scans"]) + " |",
              "|---|" + "---|" * len(results["scans"])]
    steps = next(iter(results["scans"].values()))["direct"]["always_p1"]["ms_per_subject_by_step"]
    lines.append("| (whole pipeline) | " + " | ".join(
        str(round(1000 / e["direct"]["always_p1"]["subjects_per_s"], 1)) for e in results["scans"].values()) + " |")
    for step in steps:
        values = [str(e["direct"]["always_p1"]["ms_per_subject_by_step"].get(step, "-"))
                  for e in results["scans"].values()]
        lines.append(f"| {step} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=8, help="subjects per repeat")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "augment_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)

    results = {"machine": {**machine(), "torch": torch.__version__, "torchio": tio.__version__,
                           "torch_threads": THREADS},
               "settings": {"patch_size": list(PATCH_SIZE), "crop_size": [n + n // 4 for n in PATCH_SIZE],
                            "samples_per_volume": SAMPLES_PER_VOLUME, "batch_size": BATCH_SIZE,
                            "subjects_per_repeat": args.subjects, "repeats": args.repeats,
                            "tumor_probability": VARIANTS, "target_insertion_share": TARGET_SHARE},
               "scans": {}}
    if (LITS117 / "volume-117.nii.gz").exists():
        import nibabel as nib

        volume = nib.load(LITS117 / "volume-117.nii.gz")
        label = nib.load(LITS117 / "segmentation-117.nii.gz")
        lits = subject_from_arrays(np.asanyarray(volume.dataobj), np.asanyarray(label.dataobj), volume.affine)
        results["scans"]["lits117"] = bench_subject("lits117", lits, args.subjects, args.repeats)
    else:
        print(f"skipping LiTS-117: {LITS117} not found")
    phantom = make_phantom(seed=0)
    results["scans"]["phantom_224x176x80"] = bench_subject(
        "phantom", subject_from_arrays(phantom.volume, phantom.label, phantom.affine), args.subjects, args.repeats)

    write_results(results, args.out, markdown(results))


if __name__ == "__main__":
    main()
