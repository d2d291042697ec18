"""The ``tumorsynth`` command line: ``insert``, ``demo`` and ``synthesize``.

- ``insert`` puts synthetic tumours into one CT (NIfTI) inside its liver mask and writes the new
  CT, the label map, a JSON record of the lesions and a PNG preview.
- ``demo`` writes the built-in phantom to NIfTI and runs exactly the ``insert`` path on it.
- ``synthesize`` builds an offline synthetic data set from a folder of cases, in parallel and
  resumable (a variant whose ``lesions.json`` exists is done; it is written last).

Bad input (missing file, mismatched image and mask, a size the synthesiser refuses) ends with a
one-line ``tumorsynth: error: ...`` on stderr and exit status 2, never a traceback. A failed case
in ``synthesize`` is reported by name and the others go on; the exit status is then 1.

The synthesiser and matplotlib are imported inside the functions that use them, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io as _stringio
import json
import os
import queue as _queue
import re
import secrets
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .io import (
    NiftiVolume,
    atomic_output_path,
    check_same_space,
    load_nifti,
    save_nifti,
    write_json_atomic,
)

PROG = "tumorsynth"
SIZE_NAMES = ("tiny", "small", "medium", "large", "mix")
WINDOW_HU = (-60.0, 190.0)  # abdominal soft-tissue display window for previews, W 250 / L 65
DEFAULT_COUNT = (1, 3)
DEMO_COUNT = 3
CT_NAME, LABEL_NAME, LESIONS_NAME, PREVIEW_NAME = (
    "ct.nii.gz",
    "label.nii.gz",
    "lesions.json",
    "preview.png",
)
MANIFEST_NAME = "manifest.csv"


class UsageError(Exception):
    """Bad input from the user: reported as ``tumorsynth: error: ...`` with exit status 2."""


@contextlib.contextmanager
def _input_errors(context: str = "") -> Iterator[None]:
    """Turn the errors that bad input raises (in io and the synthesiser) into UsageError."""
    try:
        yield
    except (FileNotFoundError, ValueError, TypeError) as exc:
        prefix = f"{context}: " if context else ""
        raise UsageError(f"{prefix}{exc}") from exc


# --- argument parsing ------------------------------------------------------------------------


def parse_size(text: str) -> str | tuple[float, float]:
    """``--size``: a class name, ``mix``, or ``MIN,MAX`` equivalent diameters in mm."""
    text = text.strip().lower()
    if "," not in text:
        if text not in SIZE_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown size {text!r}: use one of {', '.join(SIZE_NAMES)} or MIN,MAX in mm"
            )
        return text
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size range {text!r} must be two numbers in mm, e.g. 5,12"
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise argparse.ArgumentTypeError(f"size range {text!r} must satisfy 0 < MIN <= MAX (mm)")
    return (low, high)


def parse_count(text: str) -> int | tuple[int, int]:
    """``--count``: ``N`` or an inclusive ``MIN,MAX`` range of lesion counts."""
    parts = text.strip().split(",")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"count {text!r} must be a whole number or MIN,MAX, e.g. 3 or 1,4"
        ) from None
    if len(values) == 1 and values[0] >= 0:
        return values[0]
    if len(values) == 2 and 0 <= values[0] <= values[1]:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(
        f"count {text!r} must be N >= 0 or MIN,MAX with 0 <= MIN <= MAX"
    )


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} must be a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_synthesis_options(parser: argparse.ArgumentParser, *, count_default) -> None:
    parser.add_argument(
        "--size",
        type=parse_size,
        default="mix",
        metavar="tiny|small|medium|large|mix|MIN,MAX",
        help="lesion size class, 'mix' (real size statistics), or an equivalent-diameter range "
        "in mm (default: mix)",
    )
    parser.add_argument(
        "--count",
        type=parse_count,
        default=count_default,
        metavar="N|MIN,MAX",
        help=f"number of lesions or an inclusive range (default: {_format_count(count_default)})",
    )
    parser.add_argument(
        "--phenotype",
        default="mix",
        metavar="NAME|mix",
        help="hypodense, isodense, hyperdense, rim-enhancing, necrotic, or mix (default: mix)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Insert realistic synthetic liver tumours into CT (NIfTI)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    insert = commands.add_parser(
        "insert",
        help="insert tumours into one CT",
        description="Insert synthetic tumours into one CT inside its liver mask.",
    )
    insert.add_argument("--image", required=True, type=Path, help="CT in HU (.nii or .nii.gz)")
    insert.add_argument(
        "--mask", required=True, type=Path, help="liver mask or 0/1/2 label map, same grid"
    )
    insert.add_argument("--out", required=True, type=Path, help="output folder")
    _add_synthesis_options(insert, count_default=DEFAULT_COUNT)
    insert.add_argument("--seed", type=_seed, help="random seed (default: random, recorded)")
    insert.set_defaults(handler=_cmd_insert)

    demo = commands.add_parser(
        "demo",
        help="run insert on the built-in phantom",
        description="Write the built-in phantom as NIfTI and run 'insert' on it.",
    )
    demo.add_argument("--out", type=Path, default=Path("tumorsynth-demo"), help="output folder")
    _add_synthesis_options(demo, count_default=DEMO_COUNT)
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    demo.set_defaults(handler=_cmd_demo)

    synth = commands.add_parser(
        "synthesize",
        help="build a synthetic data set from a folder of cases",
        description="Write N synthetic variants of every case in a folder (LiTS volume-N / "
        "segmentation-N, MSD imagesTr/labelsTr, or images/ + masks/). Resumable.",
    )
    synth.add_argument("--data", required=True, type=Path, help="folder of cases")
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--variants", required=True, type=_positive_int, help="variants per case")
    synth.add_argument(
        "--workers",
        type=_positive_int,
        default=min(4, os.cpu_count() or 1),
        help="worker processes; 1 runs in this process (default: min(4, CPUs))",
    )
    _add_synthesis_options(synth, count_default=DEFAULT_COUNT)
    synth.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="base seed; each variant's seed derives from it, the case name and the variant "
        "number (default: 0)",
    )
    synth.set_defaults(handler=_cmd_synthesize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 some cases failed, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and the message
        return int(exc.code or 0)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be written
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


# --- shared pieces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthesisOptions:
    """What to insert: ``size`` and ``count`` as the synthesiser takes them."""

    size: str | tuple[float, float] = "mix"
    count: int | tuple[int, int] = DEFAULT_COUNT
    phenotype: str = "mix"

    def as_json(self) -> dict[str, Any]:
        return {
            "size": list(self.size) if isinstance(self.size, tuple) else self.size,
            "count": list(self.count) if isinstance(self.count, tuple) else self.count,
            "phenotype": self.phenotype,
        }


def _format_count(count) -> str:
    return f"{count[0]},{count[1]}" if isinstance(count, tuple) else str(count)


def _options_from_args(args: argparse.Namespace) -> SynthesisOptions:
    return SynthesisOptions(size=args.size, count=args.count, phenotype=args.phenotype)


def load_pair(image: Path, mask: Path) -> tuple[NiftiVolume, NiftiVolume]:
    """Load a CT and its mask and check that they share one voxel grid (raises UsageError)."""
    with _input_errors():
        ct = load_nifti(image)
        liver = load_nifti(mask)
        check_same_space(ct, liver)
    return ct, liver


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
    report = {
        "image": str(Path(ct.path).resolve()),
        "mask": str(Path(mask_path).resolve()),
        "spacing_mm": [round(float(s), 6) for s in ct.spacing],
        "seed": int(seed),
        **options.as_json(),
        "window_hu": list(WINDOW_HU),
        **extra,
        "lesions": records,
    }
    return report


def _as_input_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The synthesiser keeps the input dtype; guard the contract so the file type never drifts."""
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype)


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
    paths = {
        "ct": out_dir / CT_NAME,
        "label": out_dir / LABEL_NAME,
        "lesions": out_dir / LESIONS_NAME,
    }
    save_nifti(_as_input_dtype(result.volume, ct.array.dtype), ct.affine, paths["ct"])
    save_nifti(np.asarray(result.label, dtype=np.uint8), ct.affine, paths["label"])
    if preview:
        from .preview import save_lesion_preview

        paths["preview"] = out_dir / PREVIEW_NAME
        save_lesion_preview(
            result.volume, result.label, result.lesions, ct.spacing, paths["preview"],
            window=WINDOW_HU,
        )
    write_json_atomic(report, paths["lesions"])
    return paths


def prepare(ct: NiftiVolume, liver: NiftiVolume):
    """Validate a loaded pair for the synthesiser (raises UsageError for input it refuses)."""
    from . import prepare_host

    with _input_errors():
        return prepare_host(ct.array, liver.array, spacing=ct.spacing)


def insert_lesions(host: Any, options: SynthesisOptions, seed: int):
    """One insertion on a prepared host (raises UsageError for settings it refuses)."""
    with _input_errors():
        return host.insert(
            size=options.size, count=options.count, phenotype=options.phenotype, seed=seed
        )


def _lesion_line(lesion: Any, affine: np.ndarray) -> str:
    x, y, z = world_mm(affine, lesion.center_voxel)
    return (
        f"  lesion {lesion.index}: {float(lesion.diameter_mm):5.1f} mm {lesion.size_class:<6} "
        f"{lesion.phenotype:<13} {float(lesion.mean_hu_change):+6.0f} HU  "
        f"voxel {tuple(int(v) for v in lesion.center_voxel)}  "
        f"world ({x:.1f}, {y:.1f}, {z:.1f}) mm"
    )


# --- insert and demo -------------------------------------------------------------------------


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
    ct, liver = load_pair(image, mask)
    result = insert_lesions(prepare(ct, liver), options, seed)
    report = lesion_report(ct, mask, options, seed, result.lesions)
    paths = write_case_outputs(Path(out_dir), ct, result, report, preview=True)
    n = len(result.lesions)
    print(f"inserted {n} lesion{'s' if n != 1 else ''} into {image} (seed {seed}):")
    for lesion in result.lesions:
        print(_lesion_line(lesion, ct.affine))
    for key in ("ct", "label", "lesions", "preview"):
        print(f"  {key:<8} {paths[key]}")
    return paths


def _cmd_insert(args: argparse.Namespace) -> int:
    run_insert(args.image, args.mask, args.out, _options_from_args(args), args.seed)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .phantom import make_phantom

    out_dir = Path(args.out)
    phantom = make_phantom()
    image = save_nifti(np.asarray(phantom.volume), phantom.affine, out_dir / "phantom_ct.nii.gz")
    mask = save_nifti(
        np.asarray(phantom.label, dtype=np.uint8), phantom.affine, out_dir / "phantom_liver.nii.gz"
    )
    run_insert(image, mask, out_dir, _options_from_args(args), args.seed)
    print(f"  phantom  {image}\n  liver    {mask}")
    return 0


# --- synthesize: case discovery ----------------------------------------------------------------

_NIFTI_NAME = re.compile(r"^(?P<stem>[^.].*?)\.nii(\.gz)?$")  # hidden files (._x.nii.gz) excluded
_LITS_VOLUME = re.compile(r"^volume-(?P<n>\d+)\.nii(\.gz)?$")


@dataclass(frozen=True)
class Case:
    """One input case: a name (used as its output folder), its CT and its mask."""

    name: str
    image: Path
    mask: Path


def _natural_key(name: str) -> list[Any]:
    """Sort key that puts case-2 before case-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _nifti_files(folder: Path) -> dict[str, Path]:
    """NIfTI files directly in ``folder`` by file name (hidden files skipped)."""
    return {
        p.name: p for p in sorted(folder.iterdir()) if p.is_file() and _NIFTI_NAME.match(p.name)
    }


def _paired_folder_cases(images_dir: Path, masks_dir: Path) -> list[Case]:
    """Cases from two folders holding images and masks under identical file names."""
    images, masks = _nifti_files(images_dir), _nifti_files(masks_dir)
    unpaired = sorted(set(images) - set(masks))
    if unpaired:
        _warn(f"{len(unpaired)} image(s) in {images_dir} have no mask in {masks_dir}, skipped: "
              f"{', '.join(unpaired[:5])}{' ...' if len(unpaired) > 5 else ''}")
    names = sorted(set(images) & set(masks), key=_natural_key)
    return [Case(_NIFTI_NAME.match(n)["stem"], images[n], masks[n]) for n in names]


def _lits_cases(root: Path) -> list[Case]:
    """LiTS naming: volume-N.nii[.gz] with segmentation-N.nii[.gz] in the same folder (any depth,
    as LiTS ships in 'Training Batch 1/2' folders)."""
    cases: dict[str, Case] = {}
    missing = []
    for volume in sorted(root.rglob("volume-*.nii*")):
        match = _LITS_VOLUME.match(volume.name)
        if not match or not volume.is_file():
            continue
        n = match["n"]
        masks = [volume.with_name(f"segmentation-{n}{ext}") for ext in (".nii.gz", ".nii")]
        mask = next((m for m in masks if m.is_file()), None)
        if mask is None:
            missing.append(volume.name)
            continue
        name = f"volume-{n}"
        if name in cases:
            raise UsageError(f"case {name} found twice: {cases[name].image} and {volume}")
        cases[name] = Case(name, volume, mask)
    if missing:
        _warn(f"{len(missing)} LiTS volume(s) without segmentation-N, skipped: "
              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return [cases[k] for k in sorted(cases, key=_natural_key)]


def discover_cases(data_dir: Path) -> list[Case]:
    """Find the cases in ``data_dir``: MSD (imagesTr/ + labelsTr/), images/ + masks/, or LiTS.

    Raises UsageError when the folder is missing or no layout matches.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder")
    for images, masks in (("imagesTr", "labelsTr"), ("images", "masks")):
        if (data_dir / images).is_dir() and (data_dir / masks).is_dir():
            cases = _paired_folder_cases(data_dir / images, data_dir / masks)
            if not cases:
                raise UsageError(
                    f"{data_dir}: {images}/ and {masks}/ hold no NIfTI files with identical names"
                )
            return cases
    cases = _lits_cases(data_dir)
    if not cases:
        raise UsageError(
            f"{data_dir}: no cases found; expected LiTS naming (volume-N.nii[.gz] with "
            f"segmentation-N.nii[.gz]), imagesTr/ + labelsTr/ (MSD), or images/ + masks/ with "
            f"identical file names"
        )
    return cases


# --- synthesize: one variant, one chunk of variants ------------------------------------------


def variant_seed(base_seed: int, case_name: str, variant: int) -> int:
    """A variant's seed from (base seed, case name, variant number), the same in every process.

    crc32 rather than hash(): str hashes are salted per process. The result is a 63-bit int, so
    ``tumorsynth insert --seed S`` on the same case reproduces the variant.
    """
    sequence = np.random.SeedSequence([base_seed, zlib.crc32(case_name.encode("utf-8")), variant])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def variant_dir(out_dir: Path, case_name: str, variant: int) -> Path:
    return Path(out_dir) / case_name / f"variant-{variant}"


@dataclass(frozen=True)
class ChunkJob:
    """Some variants of one case, done by one worker with one prepared host scan."""

    job_id: int
    case: Case
    variants: tuple[int, ...]
    out_dir: Path
    options: SynthesisOptions
    base_seed: int


@dataclass
class ChunkResult:
    job_id: int
    case: str
    done: list[tuple[int, int]] = field(default_factory=list)  # (variant, n_lesions)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (variant, message)


ProgressReport = Callable[[int, int, bool], None]  # (job id, variant, succeeded)


def _describe(exc: BaseException) -> str:
    """A one-line reason; the type name is kept for unexpected errors (not bad input)."""
    if isinstance(exc, (UsageError, FileNotFoundError, ValueError, TypeError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _remove_stale_temporaries(folder: Path) -> None:
    """Drop temporary files a killed earlier run left behind (atomic writes name them .*.tmp*)."""
    if folder.is_dir():
        for path in folder.glob(".*.tmp*"):
            with contextlib.suppress(OSError):
                path.unlink()


def _write_variant(host: Any, ct: NiftiVolume, job: ChunkJob, variant: int) -> int:
    """Insert and write one variant; return its number of lesions."""
    out = variant_dir(job.out_dir, job.case.name, variant)
    _remove_stale_temporaries(out)
    seed = variant_seed(job.base_seed, job.case.name, variant)
    result = insert_lesions(host, job.options, seed)
    report = lesion_report(
        ct, job.case.mask, job.options, seed, result.lesions,
        case=job.case.name, variant=variant, base_seed=job.base_seed,
    )
    write_case_outputs(out, ct, result, report, preview=False)
    return len(result.lesions)


def run_chunk(job: ChunkJob, report: ProgressReport | None = None) -> ChunkResult:
    """Do one chunk; every failure is caught and returned with its message, never raised."""
    outcome = ChunkResult(job.job_id, job.case.name)
    try:
        ct, liver = load_pair(job.case.image, job.case.mask)
        host = prepare(ct, liver)
    except Exception as exc:  # the whole case is unusable: every variant fails with this reason
        for variant in job.variants:
            outcome.failed.append((variant, _describe(exc)))
            if report:
                report(job.job_id, variant, False)
        return outcome
    for variant in job.variants:
        try:
            outcome.done.append((variant, _write_variant(host, ct, job, variant)))
            ok = True
        except Exception as exc:  # one bad draw must not cost the other variants
            outcome.failed.append((variant, _describe(exc)))
            ok = False
        if report:
            report(job.job_id, variant, ok)
    return outcome


_PROGRESS_QUEUE = None  # set in each worker process by _init_worker


def _init_worker(progress_queue) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue


def _queue_report(job_id: int, variant: int, ok: bool) -> None:
    if _PROGRESS_QUEUE is not None:
        _PROGRESS_QUEUE.put((job_id, variant, ok))


def _run_chunk_in_worker(job: ChunkJob) -> ChunkResult:
    return run_chunk(job, _queue_report)


# --- synthesize: scheduling ------------------------------------------------------------------


def plan_chunks(
    pending: dict[Case, list[int]], workers: int, out_dir: Path, options: SynthesisOptions,
    base_seed: int,
) -> list[ChunkJob]:
    """Split each case's pending variants into chunks.

    One chunk per case when there are enough cases to keep every worker busy (the scan is loaded
    and prepared once); with fewer cases than workers, a case's variants are split so that idle
    workers take some.
    """
    cases = [case for case, variants in pending.items() if variants]
    if not cases:
        return []
    per_case = max(1, -(-workers // len(cases)))  # ceil
    jobs = []
    for case in cases:
        variants = pending[case]
        for part in np.array_split(np.array(variants), min(per_case, len(variants))):
            jobs.append(ChunkJob(len(jobs), case, tuple(int(v) for v in part), out_dir, options,
                                 base_seed))
    return jobs


class _Progress:
    """Counts finished variants per chunk on a tqdm bar; late queue messages are ignored."""

    def __init__(self, bar, jobs: list[ChunkJob]):
        self.bar = bar
        self.size = {job.job_id: len(job.variants) for job in jobs}
        self.counted = dict.fromkeys(self.size, 0)
        self.closed: set[int] = set()

    def variant_finished(self, job_id: int, variant: int, ok: bool) -> None:
        if job_id not in self.closed and self.counted[job_id] < self.size[job_id]:
            self.counted[job_id] += 1
            self.bar.update(1)

    def chunk_finished(self, job_id: int) -> None:
        self.bar.update(self.size[job_id] - self.counted[job_id])
        self.counted[job_id] = self.size[job_id]
        self.closed.add(job_id)


def _report_failures(result: ChunkResult, write: Callable[[str], None]) -> None:
    """One line per distinct reason (a case that cannot be loaded fails all its variants alike)."""
    by_message: dict[str, list[int]] = {}
    for variant, message in result.failed:
        by_message.setdefault(message, []).append(variant)
    for message, variants in by_message.items():
        which = ", ".join(str(v) for v in variants)
        plural = "s" if len(variants) > 1 else ""
        write(f"{PROG}: case {result.case} failed (variant{plural} {which}): {message}")


def _run_in_process(jobs: list[ChunkJob], progress: _Progress, write) -> list[ChunkResult]:
    results = []
    for job in jobs:
        result = run_chunk(job, progress.variant_finished)
        progress.chunk_finished(job.job_id)
        _report_failures(result, write)
        results.append(result)
    return results


def _drain(progress_queue, progress: _Progress) -> None:
    while True:
        try:
            job_id, variant, ok = progress_queue.get_nowait()
        except _queue.Empty:
            return
        progress.variant_finished(job_id, variant, ok)


def _run_in_pool(
    jobs: list[ChunkJob], workers: int, progress: _Progress, write
) -> list[ChunkResult]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn: workers start clean (no copied threads or locks from this process, e.g. tqdm's
    # monitor thread), and behave the same on Linux, macOS and Windows.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    results = []
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context,
        initializer=_init_worker, initargs=(progress_queue,),
    )
    try:
        futures = {pool.submit(_run_chunk_in_worker, job): job for job in jobs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_queue, progress)
            for future in finished:
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # a worker died (killed, out of memory): the chunk failed
                    result = ChunkResult(job.job_id, job.case.name,
                                         failed=[(v, _describe(exc)) for v in job.variants])
                progress.chunk_finished(job.job_id)
                _report_failures(result, write)
                results.append(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    progress_queue.close()
    return results


def _is_complete(out_dir: Path, case: Case, variant: int) -> bool:
    return (variant_dir(out_dir, case.name, variant) / LESIONS_NAME).is_file()


def write_manifest(out_dir: Path, cases: list[Case], variants: int) -> tuple[Path, int]:
    """Write manifest.csv (case, variant, image, label, n_lesions) for every complete variant.

    Paths are relative to ``out_dir`` so the data set can be moved. Returns the path and row count.
    """
    buffer = _stringio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "variant", "image", "label", "n_lesions"])
    rows = 0
    for case in cases:
        for variant in range(variants):
            folder = variant_dir(out_dir, case.name, variant)
            if not (folder / LESIONS_NAME).is_file():
                continue
            n_lesions = len(json.loads((folder / LESIONS_NAME).read_text())["lesions"])
            relative = folder.relative_to(out_dir).as_posix()
            writer.writerow(
                [case.name, variant, f"{relative}/{CT_NAME}", f"{relative}/{LABEL_NAME}", n_lesions]
            )
            rows += 1
    path = Path(out_dir) / MANIFEST_NAME
    with atomic_output_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path, rows


def run_synthesize(
    data_dir: Path,
    out_dir: Path,
    variants: int,
    *,
    workers: int = 1,
    options: SynthesisOptions = SynthesisOptions(),
    base_seed: int = 0,
) -> int:
    """Build the data set; return the exit status (0 all done, 1 some variants failed)."""
    from tqdm import tqdm

    cases = discover_cases(data_dir)
    out_dir = Path(out_dir)
    pending = {
        case: [v for v in range(variants) if not _is_complete(out_dir, case, v)] for case in cases
    }
    total = len(cases) * variants
    skipped = total - sum(len(v) for v in pending.values())
    jobs = plan_chunks(pending, workers, out_dir, options, base_seed)
    print(f"{len(cases)} case(s) in {data_dir}, {variants} variant(s) each: "
          f"{total - skipped} to write, {skipped} already complete; base seed {base_seed}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=total, initial=skipped, unit="variant", desc="synthesize",
              file=sys.stderr, dynamic_ncols=True) as bar:
        progress = _Progress(bar, jobs)

        def write(message: str) -> None:  # above the bar, on stderr like the bar
            bar.write(message, file=sys.stderr)

        if workers == 1 or len(jobs) <= 1:
            results = _run_in_process(jobs, progress, write)
        else:
            results = _run_in_pool(jobs, workers, progress, write)
    written = sum(len(r.done) for r in results)
    failed = [(r.case, v, m) for r in results for v, m in r.failed]
    manifest, rows = write_manifest(out_dir, cases, variants)
    print(f"{written} variant(s) written, {skipped} skipped (already complete), "
          f"{len(failed)} failed; manifest with {rows} row(s): {manifest}")
    if failed:
        failed_cases = sorted({case for case, _, _ in failed}, key=_natural_key)
        print(f"{PROG}: {len(failed)} variant(s) failed in case(s): {', '.join(failed_cases)}",
              file=sys.stderr)
        return 1
    return 0


def _cmd_synthesize(args: argparse.Namespace) -> int:
    return run_synthesize(
        args.data, args.out, args.variants, workers=args.workers,
        options=_options_from_args(args), base_seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(main())
