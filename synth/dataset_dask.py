"""``synthesize`` on Dask (``dask.distributed``): the chunks of :mod:`synth.dataset` as futures.

A local cluster of worker processes (one thread each, like the process pool) by default, or a
running cluster given by its scheduler's address (``--scheduler tcp://HOST:8786``; on SLURM or PBS
one started with dask-jobqueue, see docs/cluster.md). The chunks are the same
:class:`~synth.dataset.ChunkJob` objects and each runs :func:`~synth.dataset.run_chunk`, so the
files are the same bytes as the process pool's: a variant's seed depends on (base seed, case,
variant) only, never on which worker ran it.

A worker that dies (killed, out of memory) loses its chunk; the scheduler gives the chunk to
another worker (which skips the variants already complete), up to
``distributed.scheduler.allowed-failures`` times (Dask's default 3), then it is reported as failed
by case name. Its unfinished variant is a hidden temporary file without a
``lesions.json``, so it is never counted as done; the next attempt or run writes it again.

This module, and Dask, are imported only when the Dask engine runs: ``import synth`` never loads
them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import queue
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dataset import (
    ChunkJob,
    ChunkResult,
    _chunk_finished,
    _drain,
    _is_complete,
    _Progress,
    _sigint_blocked,
    run_chunk,
)
from .errors import UsageError

INSTALL_HINT = 'pip install "tumorsynth[dask]"'
PROGRESS_POLL_S = 0.2  # how often the bar is updated while no chunk finishes


def dask_installed() -> bool:
    """Whether ``dask.distributed`` is installed (without importing it)."""
    try:
        return importlib.util.find_spec("distributed") is not None
    except ValueError:  # in sys.modules without a spec: None there blocks the import
        return False


def import_distributed(what: str) -> Any:
    """The ``distributed`` module; a :class:`UsageError` that names the install if it is missing.

    ``what`` is the option that needs it, as the user typed it."""
    try:
        import distributed
    except ImportError as exc:
        raise UsageError(f"{what} needs dask.distributed, which cannot be imported ({exc}); "
                         f"install it with: {INSTALL_HINT}") from None
    return distributed


@dataclass
class DaskEngine:
    """A Dask client, and the local cluster behind it when this run started one."""

    client: Any  # distributed.Client
    cluster: Any | None  # distributed.LocalCluster, or None for a running cluster (--scheduler)

    def describe(self) -> str:
        """Which engine runs, in words, for the run's log."""
        threads = self.threads()
        if self.cluster is not None:
            return f"dask (local cluster of {threads} worker process(es), 1 thread each)"
        return (f"dask (scheduler {self.client.scheduler.address}, {threads} worker thread(s) "
                f"connected now)")

    def threads(self) -> int:
        """The worker threads connected now (a cluster that scales up may have 0 yet)."""
        return int(sum(self.client.nthreads().values()))


@contextlib.contextmanager
def dask_engine(*, scheduler: str | None, workers: int, timeout_s: float) -> Iterator[DaskEngine]:
    """Connect to the cluster at ``scheduler``, or start a local one of ``workers`` processes.

    Args:
        scheduler: the address of a running scheduler (``tcp://HOST:8786``); None starts a
            :class:`distributed.LocalCluster` for this run and closes it after.
        workers: worker processes of the local cluster, one thread each (the chunks are
            numpy-heavy Python, so processes rather than threads, as in the process pool).
        timeout_s: seconds to wait for ``scheduler`` to answer before a :class:`UsageError`.

    Interrupted (Ctrl-C, SIGTERM), the local cluster's worker processes are killed at once, not
    after their running chunks; should this process be killed, they exit with it (Dask's worker
    processes watch a pipe from their parent).
    """
    if scheduler is not None:
        distributed = import_distributed(f"--scheduler {scheduler}")
        try:
            client = distributed.Client(scheduler, timeout=timeout_s)
        except (ValueError, TypeError) as exc:  # not an address at all
            raise UsageError(f"--scheduler {scheduler} is not a scheduler address ({exc}); give it as "
                             f"tcp://HOST:PORT, as 'dask scheduler' prints it") from None
        except OSError as exc:  # no answer in time (TimeoutError is an OSError), or refused
            raise UsageError(
                f"--scheduler {scheduler}: no Dask scheduler answered within {timeout_s:g} s ({exc}); "
                f"check the address (tcp://HOST:PORT, as 'dask scheduler' prints it) and that the "
                f"scheduler is running, raise --scheduler-timeout, or leave out --scheduler to start "
                f"a local cluster") from None
        with client:
            yield DaskEngine(client, None)
        return

    distributed = import_distributed("--engine dask")
    cluster = None
    try:
        # SIGINT blocked while the cluster starts: its worker processes (and its event loop thread,
        # which starts a replacement for a dead worker) inherit the blocked signal, so Ctrl-C, sent
        # to the whole process group, reaches this process alone, which then stops the workers.
        with _sigint_blocked():
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None,  # no web server for a batch job; a running cluster has one
                memory_limit=0,  # as the process pool: no per-worker cap that would kill a large scan
                silence_logs=logging.ERROR,  # a worker restart is reported by its chunk, not a log line
            )
        with distributed.Client(cluster) as client:
            yield DaskEngine(client, cluster)
    except BaseException:
        if cluster is not None:
            # Killing workers breaks the client's open connections; distributed logs each broken
            # send with a traceback, which after an interruption is noise, not an error to report.
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
            _kill_local_workers(cluster)
        raise
    finally:
        if cluster is not None:
            cluster.close()


def _kill_local_workers(cluster: Any) -> None:
    """Kill the local cluster's worker processes now instead of waiting for their chunks.

    Each nanny is first told not to restart its worker (``close_gracefully``: the nanny's state
    only); a killed worker's unfinished variant is a hidden temporary file, removed by the next run.
    """
    for nanny in list(cluster.workers.values()):
        with contextlib.suppress(Exception):  # a nanny that is still starting or already closed
            nanny.close_gracefully(reason="tumorsynth-interrupted")
        pid = getattr(nanny, "pid", None)
        if pid:
            with contextlib.suppress(OSError):  # already gone
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows: SIGTERM kills


def _absolute(job: ChunkJob) -> ChunkJob:
    """The job with absolute paths: a worker of a running cluster has its own working folder."""
    case = job.case
    case = dataclasses.replace(case, image=Path(case.image).resolve(),
                               label=None if case.label is None else Path(case.label).resolve())
    return dataclasses.replace(job, case=case, out_dir=Path(job.out_dir).resolve())


def _run_chunk_task(job: ChunkJob, topic: str) -> ChunkResult:
    """One chunk on a Dask worker; each finished variant is sent to the client as an event.

    A chunk run again after its worker died skips the variants that worker completed (the resume
    rule: ``lesions.json`` is written last), and counts them as written.
    """
    from distributed import get_worker

    worker = get_worker()

    def report(job_id: int, variant: int, ok: bool) -> None:
        worker.log_event(topic, [job_id, variant, ok])

    complete = [v for v in job.variants if _is_complete(job.out_dir, job.case, v)]
    rest = tuple(v for v in job.variants if v not in complete)
    result = run_chunk(dataclasses.replace(job, variants=rest), report) if rest else ChunkResult(
        job.job_id, job.case.case_id)
    result.done = sorted(result.done + complete)
    return result


def run_on_dask(
    engine: DaskEngine, jobs: list[ChunkJob], progress: _Progress, write: Callable[[str], None]
) -> list[ChunkResult]:
    """Submit every chunk; report each chunk's result as it finishes, as the process pool does.

    A chunk whose task fails (its worker died more often than the scheduler allows, or the worker
    cannot import tumorsynth) fails all its variants with that reason, named by case.
    """
    from distributed import as_completed

    client = engine.client
    run_id = uuid.uuid4().hex
    topic = f"tumorsynth-progress-{run_id}"
    events: queue.Queue[tuple[int, int, bool]] = queue.Queue()
    client.subscribe_topic(topic, lambda event: events.put(tuple(event[1])))
    try:
        # A key of its own per run: each run's chunk is new work, never a result of an earlier run.
        futures = {client.submit(_run_chunk_task, _absolute(job), topic,
                                 key=f"synthesize-{job.case.case_id}-{job.job_id}-{run_id}"): job
                   for job in jobs}
        try:
            return _collect_futures(futures, as_completed(futures), events, progress, write)
        except BaseException:  # interrupted: free a running cluster's workers for other work
            with contextlib.suppress(Exception):
                client.cancel(list(futures), force=True)
            raise
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone already
            client.unsubscribe_topic(topic)


def _collect_futures(
    futures: dict[Any, ChunkJob], completed: Any, events: queue.Queue, progress: _Progress,
    write: Callable[[str], None],
) -> list[ChunkResult]:
    """Each chunk's result as its future finishes (``completed``: ``distributed.as_completed``);
    the variant events in between move the bar."""
    results: list[ChunkResult] = []
    while not completed.is_empty():
        finished = completed.next_batch(block=False)
        if not finished:  # wait for a progress event, at most PROGRESS_POLL_S
            with contextlib.suppress(queue.Empty):
                progress.variant_finished(*events.get(timeout=PROGRESS_POLL_S))
        _drain(events, progress)
        results.extend(_chunk_finished(futures[future], future, progress, write) for future in finished)
    return results
