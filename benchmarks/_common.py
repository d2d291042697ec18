"""What every benchmark shares: the machine it ran on, and how its results are written."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import scipy


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
        # Other work on the machine moves timings: the 1, 5 and 15 minute load averages.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(results: dict, out: Path, markdown: str) -> None:
    """Write ``results`` as JSON to ``out`` and the tables beside it (``.md``), each atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(results, indent=2)), (out.with_suffix(".md"), markdown)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        print(f"wrote {path}")
