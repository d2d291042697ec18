"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A report folder is read while a long ablation runs (and after it is interrupted); a reader must
never see half a JSON file or half a PNG.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; the parent folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates the file owner-only; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as strict JSON (no NaN or infinity) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def save_figure_atomic(fig, path, **kwargs) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    return write_bytes_atomic(path, buf.getvalue())
