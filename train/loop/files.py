"""Atomic files: checkpoints and the CSV/JSON training log.

Each file is written to a temporary name in its own folder and moved over the old one with
``os.replace``, so a run killed mid-write leaves the previous complete file in place. Reading one
back (:func:`load_torch`) turns a truncated or corrupt file into a ValueError naming it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
from pathlib import Path

import torch

from synth.io import atomic_output_path

__all__ = ["LOG_COLUMNS", "atomic_write_bytes", "load_torch", "save_torch", "write_logs"]

LOG_COLUMNS = ("step", "loss", "lr", "val_dice", "seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`synth.io.atomic_output_path`)."""
    with atomic_output_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch(path: Path, state: dict) -> None:
    """``torch.save`` a dict of tensors and plain values atomically."""
    with atomic_output_path(path) as tmp:
        torch.save(state, tmp)


def load_torch(path: Path, device, *, advice: str):
    """``torch.load(path, weights_only=True)``; a damaged file is a ValueError naming it.

    A truncated or corrupt file makes torch raise ``RuntimeError`` (zip reader), ``EOFError``,
    ``OSError`` (``[Errno 22]``), ``UnicodeDecodeError`` or ``UnpicklingError``, whose text
    suggests ``weights_only=False``: never a good idea for a file that failed to load, so that text
    is not repeated. ``advice`` ends the message: what the user can do about this file.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except PermissionError:
        raise
    except pickle.UnpicklingError:
        detail = "UnpicklingError: it holds something other than tensors and plain values"
    except (EOFError, OSError, ValueError, RuntimeError) as exc:
        text = str(exc)
        if isinstance(exc, RuntimeError) and "PytorchStreamReader" not in text:
            raise  # not the file's fault (out of memory, a device error)
        first = " ".join(text.split(". ")[0].split())  # torch's messages go on for lines
        detail = type(exc).__name__ + (f": {first}" if first and "weights_only" not in first else "")
    raise ValueError(f"{path}: cannot read this file: it is truncated, corrupt or not written by "
                     f"tumorsynth ({detail}); {advice}") from None


def _json_value(value):
    # JSON has no NaN: a step without validation gets null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_logs(out_dir: Path, history: list[dict]) -> None:
    """``log.csv`` and ``log.json``: one row per step with :data:`LOG_COLUMNS`."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in LOG_COLUMNS})
    atomic_write_bytes(Path(out_dir) / "log.csv", text.getvalue().encode())
    rows = [{k: _json_value(row.get(k)) for k in LOG_COLUMNS} for row in history]
    atomic_write_bytes(Path(out_dir) / "log.json", (json.dumps(rows, indent=1) + "\n").encode())
