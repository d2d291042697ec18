"""Stopping ``tumorsynth synthesize --workers 2``: its worker processes die with it and everything
stops within 2 s, whether the parent is killed (SIGKILL), terminated (SIGTERM) or interrupted
(Ctrl-C: SIGINT to the process group); a rerun then completes the data set with the same files as
an uninterrupted run, and no hidden temporaries. Both engines: the process pool, and Dask's local
cluster (whose worker processes are children of the parent too).

The worker processes are found as the children of the parent in /proc (Linux).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synth.io import save_nifti
from synth.phantom import make_phantom
from tumorsynth import cli

ROOT = Path(__file__).parents[1]
STOP_S = 2.0  # everything must be gone this long after the signal
START_S = 60.0  # generous: spawning and importing on a loaded machine
# Small and quick per variant, but 40 variants a case keep the two workers busy for seconds.
OPTIONS = ["--size", "small", "--count", "2"]
CASES = 3

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").is_file(),
    reason="needs /proc (Linux) to find the worker processes of the parent",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Three cases, so three chunks for two workers: one waits in the pool's queue (a worker
    that took Ctrl-C as its own would go on with it). A small phantom, written in LiTS names."""
    root = tmp_path_factory.mktemp("cases")
    phantom = make_phantom((112, 88, 40), (3.2, 3.2, 5.0))
    for number in range(CASES):
        save_nifti(phantom.volume, phantom.affine, root / f"volume-{number}.nii.gz")
        save_nifti(phantom.label, phantom.affine, root / f"segmentation-{number}.nii.gz")
    return root


def _command(data: Path, out: Path, variants: int, engine: str = "processes") -> list[str]:
    return [sys.executable, "-m", "tumorsynth", "synthesize", "--data", str(data), "--out", str(out),
            "--variants", str(variants), "--workers", "2", "--engine", engine, *OPTIONS]


def _needs(engine: str) -> None:
    if engine == "dask":
        pytest.importorskip("distributed", reason="dask.distributed not installed (the dask extra)")


def _env() -> dict[str, str]:
    """This checkout's code, also in the spawned workers (they inherit the environment)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...]; None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return None if fields is None else fields[19]  # field 22 of stat: start time since boot


def _children(pid: int) -> dict[int, str]:
    """The child processes of ``pid``: {pid: start time} (the start time tells a reused pid)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == pid:
                children[int(entry)] = fields[19]
    return children


def _running(pid: int, start_time: str) -> bool:
    """Still running: the same process (same start time) and not a zombie (it has exited and
    waits only for its new parent, init, to collect its status)."""
    fields = _stat(pid)
    return fields is not None and fields[19] == start_time and fields[0] != "Z"


def _wait_until(condition, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def _kill_leftovers(processes: dict[int, str]) -> None:
    """A failed test must not leave its processes running."""
    for pid, start_time in processes.items():
        if _running(pid, start_time):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action. A shell starts background jobs with
    SIGINT ignored, and an ignored signal stays ignored across exec, so a test run in the
    background would otherwise start a command that cannot be interrupted at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_wait_for_work(command: list[str], stderr_path: Path, ready) -> tuple[
        subprocess.Popen, dict[int, str]]:
    """Start ``command`` in a new session (its own process group); return it and its children
    once ``ready()`` says that the workers have started writing."""
    with open(stderr_path, "w") as stderr:
        parent = subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=stderr, start_new_session=True, preexec_fn=_default_sigint)
    try:
        started = _wait_until(lambda: ready() or parent.poll() is not None, START_S)
        assert started and parent.poll() is None, (
            f"synthesize did not start writing (exit status {parent.poll()}):\n"
            f"{stderr_path.read_text()}")
        children = _children(parent.pid)
    except BaseException:
        parent.kill()
        parent.wait()
        raise
    return parent, children


def _stop(parent: subprocess.Popen, how: str) -> None:
    if how == "SIGKILL":
        os.kill(parent.pid, signal.SIGKILL)
    elif how == "SIGTERM":
        os.kill(parent.pid, signal.SIGTERM)
    else:  # Ctrl-C: the terminal sends SIGINT to its whole foreground process group
        os.killpg(parent.pid, signal.SIGINT)


@pytest.mark.parametrize("engine", ["processes", "dask"])
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_workers_stop_with_their_parent(data, tmp_path, how, engine):
    _needs(engine)
    out = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    # The children: the two workers and multiprocessing's resource tracker.
    parent, workers = _start_and_wait_for_work(
        _command(data, out, variants=40, engine=engine), stderr_path, lambda: any(out.glob("*/variant-*")))
    try:
        assert len(workers) >= 2, f"expected 2 worker processes, found {sorted(workers)}"
        stopped_at = time.monotonic()
        _stop(parent, how)

        def all_gone() -> bool:
            return parent.poll() is not None and not any(
                _running(pid, start) for pid, start in workers.items())

        gone = _wait_until(all_gone, STOP_S)
        elapsed = time.monotonic() - stopped_at
        left = sorted(pid for pid, start in workers.items() if _running(pid, start))
        assert gone, (f"{how}: after {elapsed:.1f} s the parent is "
                      f"{'gone' if parent.poll() is not None else 'running'}, workers running: {left}")
    finally:
        _kill_leftovers(workers)
        if parent.poll() is None:
            parent.kill()
        parent.wait()

    stderr = stderr_path.read_text()
    if how == "SIGKILL":
        assert parent.returncode == -signal.SIGKILL
    else:
        assert parent.returncode in (130, 143), stderr
        assert "tumorsynth: interrupted" in stderr
        assert "Traceback" not in stderr  # neither the parent nor a worker
    # Only whole files or hidden temporaries: no variant is complete without its CT and label.
    for lesions in out.glob("*/variant-*/lesions.json"):
        assert {p.name for p in lesions.parent.iterdir() if not p.name.startswith(".")} == {
            "ct.nii.gz", "label.nii.gz", "lesions.json"}


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_after_kill_completes_the_same_data_set(data, tmp_path, capsys):
    variants = 3
    reference = tmp_path / "reference"  # uninterrupted, in this process (the same files, by seed)
    assert cli.main(["synthesize", "--data", str(data), "--out", str(reference),
                     "--variants", str(variants), "--workers", "1", *OPTIONS]) == 0
    capsys.readouterr()

    out = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    # Kill as soon as a file is being written: a worker leaves a hidden temporary behind.
    parent, workers = _start_and_wait_for_work(
        _command(data, out, variants), stderr_path,
        lambda: any(p.name.startswith(".") for p in out.glob("*/variant-*/*")))
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _wait_until(lambda: not any(_running(p, s) for p, s in workers.items()), STOP_S)
    finally:
        _kill_leftovers(workers)
    complete = list(out.glob("*/variant-*/lesions.json"))
    assert len(complete) < CASES * variants, "the run finished before it was killed"

    rerun = subprocess.run(_command(data, out, variants), check=False, env=_env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{CASES * variants - len(complete)} variant(s) written, {len(complete)} skipped" in rerun.stdout
    assert [p for p in out.rglob(".*")] == []  # no hidden temporaries left
    assert _files(out) == _files(reference)


def test_a_worker_without_prctl_exits_when_its_parent_is_killed(tmp_path):
    """The portable half of the guard, alone: the watch thread notices the parent's death."""
    child = (
        "import os, time\n"
        "from synth import dataset\n"
        "dataset._set_parent_death_signal = lambda: None  # as where there is no prctl\n"
        "dataset._exit_with_parent(os.getppid())\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    middle = (  # starts the child, says its pid once it is ready, then waits to be killed
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE, text=True)\n"
        "print(child.pid, child.stdout.readline().strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", middle, child], env=_env(), cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    watched: dict[int, str] = {}
    try:
        pid, word = parent.stdout.readline().split()
        assert word == "ready"
        watched = {int(pid): _start_time(int(pid))}
        assert _running(int(pid), watched[int(pid)])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _wait_until(lambda: not _running(int(pid), watched[int(pid)]), STOP_S)
    finally:
        _kill_leftovers(watched)
        if parent.poll() is None:
            parent.kill()
        parent.wait()
        parent.stdout.close()
