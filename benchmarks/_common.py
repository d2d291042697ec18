"""What every benchmark shares: the machine it ran on, and how its results are written."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import scipy

REPO = Path(__file__).resolve().parents[1]
# The project's real CT cases, beside the repository when present (the benchmarks fall back to the
# phantom or skip a case without them).
SHARED_DATA = REPO.parent / "shared" / "data"
LITS117 = SHARED_DATA / "lits117"
TOTALSEG = SHARED_DATA / "totalseg_example"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system does not say): other work on
    the machine moves timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "system": platform.system(),
        "load_average": load_average(),
    }


def write_results(results: dict, out: Path, markdown: str) -> None:
    """Write ``results`` as JSON to ``out`` and the tables beside it (``.md``), each atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(results, indent=2)), (out.with_suffix(".md"), markdown)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        print(f"wrote {path}")
