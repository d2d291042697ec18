"""Atomic files: checkpoints and the CSV/JSON training log.

Each file is written to a temporary name in its own folder and moved over the old one with
``os.replace``, so a run killed mid-write leaves the previous complete file in place.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import torch

from synth.io import atomic_output_path

__all__ = ["LOG_COLUMNS", "atomic_write_bytes", "save_torch", "write_logs"]

LOG_COLUMNS = ("step", "loss", "lr", "val_dice", "seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`synth.io.atomic_output_path`)."""
    with atomic_output_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch(path: Path, state: dict) -> None:
    """``torch.save`` a dict of tensors and plain values atomically."""
    with atomic_output_path(path) as tmp:
        torch.save(state, tmp)


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
