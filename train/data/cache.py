"""Where preprocessed arrays and fetched samples are kept, and how an array file is written safely."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from synth.io import atomic_output_path

__all__ = ["default_cache_dir", "file_fingerprint", "save_arrays", "load_arrays"]


def default_cache_dir() -> Path:
    """The user cache: ``$TUMORSYNTH_CACHE``, else ``$XDG_CACHE_HOME/tumorsynth``, else
    ``~/.cache/tumorsynth``. Nothing is created here."""
    if os.environ.get("TUMORSYNTH_CACHE"):
        return Path(os.environ["TUMORSYNTH_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "tumorsynth"
    return Path.home() / ".cache" / "tumorsynth"


def stable_hash(obj, length: int = 12) -> str:
    """A short hex digest of a JSON-serialisable object, the same in every process and platform."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_fingerprint(*paths, extra=None) -> str:
    """A digest of files' absolute paths, sizes and modification times (ns), plus ``extra``.

    Cheap (no file is read) and changes whenever a file is replaced or edited, which is what a cache
    of preprocessed arrays needs to notice.
    """
    parts: list[list[object] | None] = []
    for path in paths:
        if path is None:
            parts.append(None)
            continue
        stat = Path(path).stat()
        parts.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return stable_hash([parts, extra])


def safe_name(text: str) -> str:
    """``text`` reduced to characters safe in a file name on every platform."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"


def save_arrays(path: Path, **arrays) -> Path:
    """Write arrays to an uncompressed ``.npz`` atomically (a reader never sees half a file).

    Uncompressed because CT compresses poorly and the cache is read far more often than written.
    """
    with atomic_output_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
            np.savez(handle, **arrays)
    return path


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` file, or None when it is missing or unreadable (then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
