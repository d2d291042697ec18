"""``synthesize``: a synthetic data set from a folder of cases, in parallel and resumable.

discover the cases -> skip complete variants (``lesions.json`` exists; it is written last) ->
split the rest into chunks (some variants of one case, one prepared host scan each) -> run the
chunks in this process, a spawn process pool, or on Dask (:mod:`synth.dataset_dask`: a local
cluster or a running one), with a progress bar and one line per failure -> write
``manifest.csv`` over every complete variant.

Each variant's seed derives from the base seed, the case name and the variant number, so a
resumed, re-run or differently parallelised build writes the same files. A failed case is
reported by name and the others go on; the exit status is then 1.

Stopped (Ctrl-C or SIGTERM: KeyboardInterrupt; or killed), the build takes its worker processes
with it at once; what they were writing stays a hidden temporary file that the next run removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cases import CaseFiles, find_cases, natural_key
from .cases import write_manifest as write_manifest_csv
from .errors import PROG, UsageError
from .insert_files import (
    CT_NAME,
    LABEL_NAME,
    LESIONS_NAME,
    check_outputs_spare_inputs,
    check_quality_gate,
    insert_lesions,
    lesion_report,
    load_pair,
    output_paths,
    prepare,
    write_case_outputs,
)
from .io import NiftiVolume
from .options import DEFAULT_SCHEDULER_TIMEOUT_S, ENGINES, Engine, SynthesisOptions
from .seeding import derive_seed

if TYPE_CHECKING:
    from .dataset_dask import DaskEngine

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("case_id", "image", "label", "source_case", "variant", "n_lesions")

# --- one variant, one chunk of variants -----------------------------------------------------


def variant_seed(base_seed: int, case_name: str, variant: int) -> int:
    """A variant's seed from (base seed, case name, variant number), the same in every process.

    See :mod:`synth.seeding`. The result is a 63-bit int, so
    ``tumorsynth insert --seed S`` on the same case reproduces the variant.
    """
    return derive_seed(base_seed, case_name, variant)


def variant_dir(out_dir: Path, case_name: str, variant: int) -> Path:
    return Path(out_dir) / case_name / f"variant-{variant}"


def _is_complete(out_dir: Path, case: CaseFiles, variant: int) -> bool:
    """A variant is complete once its lesions.json exists (written after its other files) and its
    CT and label are still there (a file deleted since is written again)."""
    folder = variant_dir(out_dir, case.case_id, variant)
    return all((folder / name).is_file() for name in (LESIONS_NAME, CT_NAME, LABEL_NAME))


@dataclass(frozen=True)
class ChunkJob:
    """Some variants of one case, done by one worker with one prepared host scan."""

    job_id: int
    case: CaseFiles
    variants: tuple[int, ...]
    out_dir: Path
    options: SynthesisOptions
    base_seed: int


@dataclass
class ChunkResult:
    """What one chunk did: the variants written and, for each failed one, the reason."""

    job_id: int
    case: str
    done: list[int] = field(default_factory=list)  # variants
    failed: list[tuple[int, str]] = field(default_factory=list)  # (variant, message)


ProgressReport = Callable[[int, int, bool], None]  # (job id, variant, succeeded)


def _describe(exc: BaseException) -> str:
    """A one-line reason; the type name is kept for unexpected errors (not bad input)."""
    if isinstance(exc, (UsageError, FileNotFoundError, ValueError, TypeError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _failed_chunk(job: ChunkJob, exc: BaseException) -> ChunkResult:
    """A chunk that did not run to its end (its worker died): its variants complete on disk were
    written before (they were pending when the chunk started); the others failed with ``exc``."""
    outcome = ChunkResult(job.job_id, job.case.case_id)
    for variant in job.variants:
        if _is_complete(job.out_dir, job.case, variant):
            outcome.done.append(variant)
        else:
            outcome.failed.append((variant, _describe(exc)))
    return outcome


def _write_variant(host: Any, ct: NiftiVolume, job: ChunkJob, variant: int) -> None:
    """Insert and write one variant."""
    out = variant_dir(job.out_dir, job.case.case_id, variant)
    seed = variant_seed(job.base_seed, job.case.case_id, variant)
    # In place: the chunk owns the loaded scan, so no variant copies it; the lesions' boxes are
    # put back after writing (the host decides from its own copy of the liver, so every variant
    # is the same whatever came before it in the chunk).
    in_place = bool(host.volume.flags.writeable and host.label.flags.writeable)  # a read-only memory map: copy
    result = insert_lesions(host, job.options, seed, in_place=in_place)
    try:
        report = lesion_report(
            ct, job.case.require_label(), job.options, seed, result.lesions,
            case=job.case.case_id, variant=variant, base_seed=job.base_seed,
        )
        write_case_outputs(out, ct, result, report, preview=False)
    finally:
        host.restore(result)


def run_chunk(job: ChunkJob, report: ProgressReport | None = None) -> ChunkResult:
    """Do one chunk; every failure is caught and returned with its message, never raised."""
    outcome = ChunkResult(job.job_id, job.case.case_id)
    try:
        ct, liver = load_pair(job.case.image, job.case.require_label())  # a manifest row may be unlabelled
        host = prepare(ct, liver)
    except Exception as exc:  # the whole case is unusable: every variant fails with this reason
        for variant in job.variants:
            outcome.failed.append((variant, _describe(exc)))
            if report:
                report(job.job_id, variant, False)
        return outcome
    for variant in job.variants:
        try:
            _write_variant(host, ct, job, variant)
            outcome.done.append(variant)
            ok = True
        except Exception as exc:  # one bad draw must not cost the other variants
            outcome.failed.append((variant, _describe(exc)))
            ok = False
        if report:
            report(job.job_id, variant, ok)
    return outcome


# --- worker processes: Ctrl-C is the parent's, and they die with it --------------------------

_PROGRESS_QUEUE = None  # set in each worker process by _init_worker
PARENT_POLL_S = 0.2  # how often a worker checks that its parent process is still there


def _init_worker(progress_queue, parent_pid: int) -> None:
    """Set up one pool worker: its progress queue; SIGINT ignored; exit when the parent exits.

    Ctrl-C reaches every process of the terminal's process group. The parent alone decides what
    it means (it kills the workers at once): a worker that raised KeyboardInterrupt itself would
    report its chunk as failed and then take the next queued chunk. The workers start with SIGINT
    blocked (:func:`_sigint_blocked`), so one that arrived while a worker was still importing is
    discarded here instead of interrupting the import with a traceback.
    """
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int, interval: float = PARENT_POLL_S) -> None:
    """End this process soon after the process ``parent_pid`` ends, however it ends (SIGKILL too).

    Linux: the kernel sends this process SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG).
    Everywhere: a daemon thread checks every ``interval`` seconds that the parent is still there
    and calls ``os._exit`` when it is not. A file being written stays a hidden temporary, which
    the next run removes before writing that variant again (atomic writes).
    """
    _set_parent_death_signal()
    if not _parent_alive(parent_pid):  # it died before the death signal was set
        os._exit(1)

    def watch() -> None:
        while _parent_alive(parent_pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="tumorsynth-parent-watch", daemon=True).start()


def _parent_alive(parent_pid: int) -> bool:
    if os.getppid() != parent_pid:  # POSIX: an orphan is adopted by init or a subreaper
        return False
    if sys.platform == "win32":  # no adoption on Windows: ask multiprocessing's parent sentinel
        import multiprocessing

        parent = multiprocessing.parent_process()
        return parent is None or parent.is_alive()
    return True


def _set_parent_death_signal() -> None:
    """Linux only, best effort: have the kernel SIGKILL this process when its parent dies.

    The "parent" is the thread that started this process: here the thread that submits the
    chunks, which stays in :func:`_run_in_pool` until the pool is shut down. Where prctl cannot be
    called, the watch thread of :func:`_exit_with_parent` does the job a little later.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


def _queue_report(job_id: int, variant: int, ok: bool) -> None:
    if _PROGRESS_QUEUE is not None:
        _PROGRESS_QUEUE.put((job_id, variant, ok))


def _run_chunk_in_worker(job: ChunkJob) -> ChunkResult:
    return run_chunk(job, _queue_report)


# --- scheduling ------------------------------------------------------------------------------


def plan_chunks(
    pending: dict[CaseFiles, list[int]], workers: int, out_dir: Path, options: SynthesisOptions,
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
    jobs: list[ChunkJob] = []
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
        except queue.Empty:
            return
        progress.variant_finished(job_id, variant, ok)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread for the block; one that arrives meanwhile is delivered after.

    Processes started inside inherit the blocked signal (the mask survives fork and exec); the
    pool workers then ignore and unblock it (:func:`_init_worker`). The standard library starts
    its resource tracker process the same way. No-op without pthread_sigmask (Windows).
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if signal.SIGINT not in previous:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """For the block, SIGTERM raises KeyboardInterrupt (a clean stop, like Ctrl-C) instead of
    ending this process at once. Handlers can only be set in the main thread; elsewhere SIGTERM
    keeps its handler (the workers still exit with this process, :func:`_exit_with_parent`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:  # None: a handler not set from Python, which cannot be put back
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _kill_workers(pool) -> None:
    """Kill the pool's worker processes now, not after their running chunks, and shut the pool
    down without waiting.

    ``ProcessPoolExecutor.kill_workers()`` does exactly this from Python 3.14. Before, the
    processes are reachable only as the private ``pool._processes`` (pid -> Process; None once
    shut down), which every version from 3.8 to 3.13 has.
    """
    kill_workers = getattr(pool, "kill_workers", None)
    if kill_workers is not None:
        kill_workers()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):  # already gone, or closed
            process.kill()


def _run_in_pool(
    jobs: list[ChunkJob], workers: int, progress: _Progress, write
) -> list[ChunkResult]:
    """Run the chunks in a spawn process pool.

    Interrupted (Ctrl-C, SIGTERM, or an error here), the workers are killed at once instead of
    finishing their chunks; their unfinished variants leave only hidden temporary files, which
    the next run removes before it writes those variants again. Should this process die without
    a word (SIGKILL), the workers exit by themselves (:func:`_exit_with_parent`).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: workers start clean (no copied threads or locks from this process, e.g. tqdm's
    # monitor thread), and behave the same on Linux, macOS and Windows.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context,
        initializer=_init_worker, initargs=(progress_queue, os.getpid()),
    )
    try:
        with _sigterm_interrupts():
            results = _collect(pool, jobs, progress_queue, progress, write)
            pool.shutdown(wait=True)
    except BaseException:
        _kill_workers(pool)
        raise
    progress_queue.close()
    return results


def _collect(
    pool, jobs: list[ChunkJob], progress_queue, progress: _Progress, write
) -> list[ChunkResult]:
    """Submit every chunk to the pool; report each chunk's result as it finishes."""
    from concurrent.futures import FIRST_COMPLETED, wait

    with _sigint_blocked():  # submit() starts the worker processes
        futures = {pool.submit(_run_chunk_in_worker, job): job for job in jobs}
    results: list[ChunkResult] = []
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        _drain(progress_queue, progress)
        results.extend(_chunk_finished(futures[future], future, progress, write) for future in finished)
    return results


def _chunk_finished(job: ChunkJob, future: Any, progress: _Progress, write: Callable[[str], None]) -> ChunkResult:
    """The result of a finished chunk's future (of the pool or of Dask), counted on the bar, its
    failures reported."""
    try:
        result = future.result()
    except Exception as exc:  # its worker died (killed, out of memory), or the task could not run
        result = _failed_chunk(job, exc)
    progress.chunk_finished(job.job_id)
    _report_failures(result, write)
    return result


def write_manifest(out_dir: Path, cases: list[CaseFiles], variants: int) -> tuple[Path, int]:
    """Write manifest.csv for every complete variant, in the format :func:`synth.cases.find_cases`
    reads: ``case_id`` (``<case>-variant-<n>``), ``image``, ``label``, then ``source_case``,
    ``variant`` and ``n_lesions``. Paths are relative to ``out_dir`` so the data set can be moved.

    Returns the path and the row count.
    """
    rows = []
    for case in cases:
        for variant in range(variants):
            if not _is_complete(out_dir, case, variant):
                continue
            folder = variant_dir(out_dir, case.case_id, variant)
            n_lesions = len(json.loads((folder / LESIONS_NAME).read_text())["lesions"])
            relative = folder.relative_to(out_dir).as_posix()
            rows.append({"case_id": f"{case.case_id}-variant-{variant}", "image": f"{relative}/{CT_NAME}",
                         "label": f"{relative}/{LABEL_NAME}", "source_case": case.case_id,
                         "variant": variant, "n_lesions": n_lesions})
    path = write_manifest_csv(Path(out_dir) / MANIFEST_NAME, rows, columns=MANIFEST_COLUMNS)
    return path, len(rows)


def _engine_kind(engine: str, *, scheduler: str | None, workers: int, jobs: int) -> str:
    """Where the chunks run: ``"this process"``, ``"processes"`` (the pool) or ``"dask"``.

    ``auto``: Dask when ``dask.distributed`` is installed, else the process pool; either way one
    worker or one chunk runs in this process (no cluster start for it). ``--scheduler`` is Dask.
    """
    from .dataset_dask import dask_installed, import_distributed

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if scheduler is not None and engine == "processes":
        raise UsageError(f"--scheduler {scheduler} runs the chunks on a Dask cluster; leave out "
                         f"--engine processes (or --scheduler)")
    if scheduler is not None or engine == "dask":
        import_distributed(f"--scheduler {scheduler}" if scheduler is not None else "--engine dask")
        return "dask" if scheduler is not None or jobs else "this process"
    if workers == 1 or jobs <= 1:
        return "this process"
    if engine == "processes" or not dask_installed():
        return "processes"
    return "dask"


def run_synthesize(
    data_dir: Path,
    out_dir: Path,
    variants: int,
    *,
    workers: int = 1,
    options: SynthesisOptions | None = None,
    base_seed: int = 0,
    engine: Engine = "auto",
    scheduler: str | None = None,
    scheduler_timeout_s: float = DEFAULT_SCHEDULER_TIMEOUT_S,
) -> int:
    """Build the data set; return the exit status (0 all done, 1 some variants failed).

    Args:
        data_dir: a folder of cases or a CSV manifest (:func:`synth.cases.find_cases`).
        out_dir: the output folder; complete variants in it are kept (resume).
        variants: variants per case.
        workers: worker processes of the process pool or of the local Dask cluster; 1 runs in
            this process (unless ``engine="dask"``).
        options: what to insert; default :class:`SynthesisOptions`' defaults (mixed sizes and
            phenotypes).
        base_seed: each variant's seed derives from it, the case id and the variant number.
        engine: ``"auto"`` (Dask when ``dask.distributed`` is installed, else the process pool),
            ``"dask"`` or ``"processes"``. The files are the same bytes whichever runs.
        scheduler: the address of a running Dask scheduler (``tcp://HOST:8786``); None starts a
            local cluster when Dask runs. Its workers must see ``data_dir`` and ``out_dir`` at the
            same paths (a shared file system). The chunks are then planned for the worker
            threads connected when the run starts.
        scheduler_timeout_s: seconds to wait for ``scheduler`` to answer; then a
            :class:`UsageError`.
    """
    options = SynthesisOptions() if options is None else options
    _engine_kind(engine, scheduler=scheduler, workers=workers, jobs=0)  # a bad combination: before any work
    check_quality_gate(options)  # each worker process then reads the gate once (synth.realism.gate.cached_gate)
    try:
        cases = find_cases(data_dir)
    except ValueError as exc:
        raise UsageError(f"--data {exc}") from None
    out_dir = Path(out_dir)
    inputs = [Path(data_dir)] + [p for case in cases for p in (case.image, case.label) if p is not None]
    outputs = {"manifest": out_dir / MANIFEST_NAME}
    for case in cases:
        for variant in range(variants):
            outputs.update({f"{case.case_id}/{variant}/{key}": path for key, path in
                            output_paths(variant_dir(out_dir, case.case_id, variant), preview=False).items()})
    check_outputs_spare_inputs(outputs, inputs)
    pending = {
        case: [v for v in range(variants) if not _is_complete(out_dir, case, v)] for case in cases
    }
    total = len(cases) * variants
    skipped = total - sum(len(v) for v in pending.values())
    jobs = plan_chunks(pending, workers, out_dir, options, base_seed)
    kind = _engine_kind(engine, scheduler=scheduler, workers=workers, jobs=len(jobs))
    print(f"{len(cases)} case(s) in {data_dir}, {variants} variant(s) each: "
          f"{total - skipped} to write, {skipped} already complete; base seed {base_seed}")
    with contextlib.ExitStack() as stack:
        dask_cluster = None
        if kind == "dask":
            from .dataset_dask import dask_engine

            stack.enter_context(_sigterm_interrupts())  # the cluster's start is interruptible too
            dask_cluster = stack.enter_context(dask_engine(
                scheduler=scheduler, workers=min(workers, len(jobs)) or 1, timeout_s=scheduler_timeout_s))
            threads = dask_cluster.threads()
            if scheduler is not None and threads and threads != workers:  # plan for that cluster
                jobs = plan_chunks(pending, threads, out_dir, options, base_seed)
            print(f"engine: {dask_cluster.describe()}")
        elif kind == "processes":
            print(f"engine: process pool of {min(workers, len(jobs))} worker process(es)")
        elif jobs:
            print("engine: this process")
        out_dir.mkdir(parents=True, exist_ok=True)  # after the engine started: a silent cluster writes nothing
        results = _run_with_bar(total, skipped, jobs, kind, dask_cluster, workers)
    written = sum(len(r.done) for r in results)
    failed = [(r.case, v, m) for r in results for v, m in r.failed]
    manifest, rows = write_manifest(out_dir, cases, variants)
    print(f"{written} variant(s) written, {skipped} skipped (already complete), "
          f"{len(failed)} failed; manifest with {rows} row(s): {manifest}")
    if failed:
        failed_cases = sorted({case for case, _, _ in failed}, key=natural_key)
        print(f"{PROG}: {len(failed)} variant(s) failed in case(s): {', '.join(failed_cases)}",
              file=sys.stderr)
        return 1
    return 0


def _run_with_bar(total: int, skipped: int, jobs: list[ChunkJob], kind: str,
                  dask_cluster: DaskEngine | None, workers: int) -> list[ChunkResult]:
    """Run the chunks where :func:`_engine_kind` said, with a progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=total, initial=skipped, unit="variant", desc="synthesize",
              file=sys.stderr, dynamic_ncols=True) as bar:
        progress = _Progress(bar, jobs)

        def write(message: str) -> None:  # above the bar, on stderr like the bar
            bar.write(message, file=sys.stderr)

        if dask_cluster is not None:
            from .dataset_dask import run_on_dask

            return run_on_dask(dask_cluster, jobs, progress, write)
        if kind == "processes":
            return _run_in_pool(jobs, workers, progress, write)
        return _run_in_process(jobs, progress, write)
