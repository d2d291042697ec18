"""``tumorsynth synthesize`` on Dask: the same bytes as the process pool, the same resume rules, a
killed worker's chunk run again or reported by case name (never a half-written variant in the
manifest), a scheduler that does not answer is a clear error, and without Dask installed the
process pool runs (those tests need no Dask).

One 2-process local cluster serves the tests that connect to a running cluster (``--scheduler``);
the test of the default engine starts its own, as the command does.
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from synth.dataset import run_synthesize
from synth.io import save_nifti
from synth.options import SynthesisOptions
from synth.phantom import make_phantom
from tumorsynth import cli

ROOT = Path(__file__).parents[1]
OPTIONS = SynthesisOptions(size="small", count=2)
ARGS = ["--size", "small", "--count", "2", "--seed", "3"]
SEED = 3
WAIT_S = 120.0  # bound of every wait on the cluster (generous: a loaded machine)


def _needs_dask():
    return pytest.importorskip("distributed", reason="dask.distributed not installed (the dask extra)")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two cases (a small phantom, in LiTS names): two chunks, one per worker."""
    root = tmp_path_factory.mktemp("cases")
    phantom = make_phantom((112, 88, 40), (3.2, 3.2, 5.0))
    for number in range(2):
        save_nifti(phantom.volume, phantom.affine, root / f"volume-{number}.nii.gz")
        save_nifti(phantom.label, phantom.affine, root / f"segmentation-{number}.nii.gz")
    return root


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _synthesize(data: Path, out: Path, variants: int, **engine) -> int:
    return run_synthesize(data, out, variants, options=OPTIONS, base_seed=SEED, **engine)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """3 variants of each case written by the process pool, 2 workers."""
    out = tmp_path_factory.mktemp("pool")
    assert _synthesize(data, out, 3, workers=2, engine="processes") == 0
    return out


@pytest.fixture(scope="module")
def cluster():
    """A running local cluster of 2 worker processes, 1 thread each: (cluster, client)."""
    distributed = _needs_dask()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit=0, silence_logs=logging.ERROR) as cluster:
        with distributed.Client(cluster) as client:
            yield cluster, client


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --- the default engine: a local cluster, the same bytes -------------------------------------


def test_local_cluster_writes_the_same_bytes_as_the_process_pool(data, reference, tmp_path, capsys,
                                                                 monkeypatch):
    _needs_dask()
    from synth.dataset import _Progress

    variant_events = []  # what reached the bar before each chunk's end: (chunk, variant)
    count = _Progress.variant_finished
    monkeypatch.setattr(_Progress, "variant_finished", lambda self, job_id, variant, ok: (
        variant_events.append((job_id, variant)), count(self, job_id, variant, ok)))
    out = tmp_path / "out"
    assert cli.main(["synthesize", "--data", str(data), "--out", str(out), "--variants", "3",
                     "--workers", "2", *ARGS]) == 0  # --engine auto: Dask, installed here
    captured = capsys.readouterr()
    assert "engine: dask (local cluster of 2 worker process(es)" in captured.out
    assert "6 variant(s) written, 0 skipped" in captured.out
    assert "100%" in captured.err  # the bar reached the end
    assert variant_events and set(variant_events) <= {(job, v) for job in (0, 1) for v in range(3)}
    assert _files(out) == _files(reference)  # every file, manifest included, byte for byte


# --- a running cluster (--scheduler): resume --------------------------------------------------


def test_running_cluster_resumes_like_the_process_pool(data, reference, cluster, tmp_path, capsys):
    _, client = cluster
    address = client.scheduler.address
    out = tmp_path / "out"
    assert _synthesize(data, out, 3, workers=1, scheduler=address) == 0
    assert f"engine: dask (scheduler {address}, 2 worker thread(s)" in capsys.readouterr().out
    assert _files(out) == _files(reference)

    # An unfinished variant (no lesions.json, a temporary file of a killed run) is written again;
    # the complete ones are left alone.
    unfinished = out / "volume-1" / "variant-2"
    (unfinished / "lesions.json").unlink()
    (unfinished / ".ct.nii.gz.0123abcd.tmp.nii.gz").write_bytes(b"partial")
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/variant-*/*") if p.parent != unfinished}
    assert _synthesize(data, out, 3, scheduler=address) == 0
    assert "1 variant(s) written, 5 skipped" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    assert _files(out) == _files(reference)  # the temporary is gone too


# --- a worker killed mid-chunk ----------------------------------------------------------------


def _stamps(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.glob("*/variant-*/*") if (p.parent / "lesions.json").is_file()}


def _kill_a_busy_worker(client, out: Path, killed: list[int], complete: dict[Path, int],
                        stop: threading.Event) -> None:
    """Once a chunk has completed a variant, SIGKILL the worker that runs it (a chunk is one case;
    its task key names the case); ``complete``: the files of the variants complete just before."""
    pids = client.run(os.getpid)  # {worker address: pid}
    deadline = time.monotonic() + WAIT_S
    while not stop.is_set() and time.monotonic() < deadline:
        for address, keys in client.processing().items():
            started = [case.name for case in out.glob("volume-*") if any(case.glob("variant-*/lesions.json"))]
            if any(f"synthesize-{case}-" in str(key) for key in keys for case in started):
                complete.update(_stamps(out))
                killed.append(pids[address])
                os.kill(pids[address], signal.SIGKILL)
                return
        time.sleep(0.01)


@pytest.mark.parametrize("allowed_failures", [3, 0], ids=["retried", "reported"])
def test_a_killed_worker_s_chunk_is_retried_or_reported_by_case(data, cluster, tmp_path, capsys,
                                                                  allowed_failures):
    local, client = cluster
    before = local.scheduler.allowed_failures
    local.scheduler.allowed_failures = allowed_failures  # the scheduler's setting (Dask's default: 3)
    variants = 16  # two chunks of 16 variants: the kill comes while both are running
    out = tmp_path / "out"
    killed: list[int] = []
    complete: dict[Path, int] = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_worker, args=(client, out, killed, complete, stop))
    killer.start()
    try:
        status = _synthesize(data, out, variants, scheduler=client.scheduler.address)
    finally:
        stop.set()
        killer.join()
        local.scheduler.allowed_failures = before
        client.wait_for_workers(2, timeout=WAIT_S)  # the nanny restarts the killed worker
    captured = capsys.readouterr()
    assert killed, "no worker was killed: the run ended before a chunk was seen running"

    rows = _manifest(out)
    # Never a half-written variant in the manifest: every row has its three files, no temporaries.
    for row in rows:
        folder = (out / row["image"]).parent
        assert sorted(p.name for p in folder.iterdir()) == ["ct.nii.gz", "label.nii.gz", "lesions.json"]
    if allowed_failures:
        assert status == 0, captured.err
        assert len(rows) == 2 * variants
        assert f"{2 * variants} variant(s) written" in captured.out
        # The chunk run again skipped the variants complete before the kill.
        assert complete and {p: p.stat().st_mtime_ns for p in complete} == complete
    else:
        assert status == 1
        assert "KilledWorker" in captured.err
        failed_case = next(line for line in captured.err.splitlines() if "KilledWorker" in line)
        assert failed_case.startswith("tumorsynth: case volume-")  # reported by the case's name
        assert len(rows) < 2 * variants
        # The variants the killed worker had finished count as written, the others as failed.
        assert f"{len(rows)} variant(s) written, 0 skipped (already complete), {2 * variants - len(rows)} failed" \
            in captured.out
        # The rerun writes the rest, with the same bytes as a run that was never killed.
        assert _synthesize(data, out, variants, scheduler=client.scheduler.address) == 0
        assert len(_manifest(out)) == 2 * variants
    reference = tmp_path / "reference"
    assert _synthesize(data, reference, variants, workers=1) == 0  # in this process
    assert _files(out) == _files(reference)


# --- bad input: a scheduler that does not answer ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_scheduler_that_does_not_answer_is_a_clear_error(data, tmp_path, capsys):
    _needs_dask()
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    assert cli.main(["synthesize", "--data", str(data), "--out", str(tmp_path / "out"), "--variants", "1",
                     "--scheduler", address, "--scheduler-timeout", "1", *ARGS]) == 2
    err = capsys.readouterr().err
    assert f"tumorsynth: error: --scheduler {address}: no Dask scheduler answered within 1 s" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_scheduler_address_that_is_not_one_is_a_clear_error(data, tmp_path, capsys):
    _needs_dask()
    assert cli.main(["synthesize", "--data", str(data), "--out", str(tmp_path / "out"), "--variants", "1",
                     "--scheduler", "scheduler-host", *ARGS]) == 2
    assert "--scheduler scheduler-host is not a scheduler address" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_scheduler_with_the_process_pool_is_refused(data, tmp_path, capsys):
    assert cli.main(["synthesize", "--data", str(data), "--out", str(tmp_path / "out"), "--variants", "1",
                     "--engine", "processes", "--scheduler", "tcp://127.0.0.1:8786", *ARGS]) == 2
    assert "leave out --engine processes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- which engine runs ------------------------------------------------------------------------


@pytest.mark.parametrize(("engine", "workers", "jobs", "installed", "expected"), [
    ("auto", 2, 2, True, "dask"),
    ("auto", 2, 2, False, "processes"),  # the zero-dependency path
    ("auto", 1, 2, True, "this process"),  # no cluster to start for one worker
    ("auto", 4, 1, True, "this process"),  # ... nor for one chunk
    ("processes", 2, 2, True, "processes"),
    ("dask", 1, 1, True, "dask"),  # asked for: a one-worker cluster
    ("dask", 2, 0, True, "this process"),  # nothing to do: no cluster
])
def test_engine_choice(monkeypatch, engine, workers, jobs, installed, expected):
    from synth import dataset_dask
    from synth.dataset import _engine_kind

    if engine == "dask":  # imports distributed
        _needs_dask()
    monkeypatch.setattr(dataset_dask, "dask_installed", lambda: installed)
    assert _engine_kind(engine, scheduler=None, workers=workers, jobs=jobs) == expected


# --- without Dask ------------------------------------------------------------------------------


def test_without_dask_auto_runs_the_process_pool_and_says_so(data, reference, tmp_path, capsys, monkeypatch):
    from synth import dataset_dask

    monkeypatch.setattr(dataset_dask, "dask_installed", lambda: False)
    out = tmp_path / "out"
    assert _synthesize(data, out, 3, workers=2) == 0
    assert "engine: process pool of 2 worker process(es)" in capsys.readouterr().out
    assert _files(out) == _files(reference)


@pytest.mark.parametrize("argv", [["--engine", "dask"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_without_dask_the_dask_engine_names_the_install(data, tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert cli.main(["synthesize", "--data", str(data), "--out", str(tmp_path / "out"), "--variants", "1",
                     "--workers", "2", *argv, *ARGS]) == 2
    assert 'pip install "tumorsynth[dask]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_import_synth_does_not_import_dask():
    code = ("import sys, synth, synth.dataset, synth.dataset_dask, synth.commands; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=ROOT, check=True, timeout=120)
    assert result.stdout.strip() == "[]"
