"""The ablation: train the bundled 3D U-Net with and without synthetic tumours, evaluate per lesion
size, and report the difference with paired bootstrap confidence intervals.

``run_ablation(config, out_dir)`` runs every arm x seed (resumable), then writes ``results.json``,
``results.md`` and PNG figures. ``config`` is a dict, a JSON file or a bundled profile name
(``"cpu-quick"``, ``"gpu"``); the schema is in :mod:`train.ablation.config` and docs/ablation.md.
torch and MONAI are imported only when a run starts.
"""

from .config import (
    BASE_ARMS,
    PROFILES,
    ConfigError,
    arm_gated,
    load_config,
    load_profile,
    parse_arm,
    validate_config,
)
from .report import render_markdown, write_report
from .stats import BINS, paired_bootstrap_ci, summarise


def run_ablation(config, out_dir, *, progress: bool = True, data_path=None, reevaluate: bool = False) -> dict:
    """Run the ablation; see :func:`train.ablation.runner.run_ablation`."""
    from .runner import run_ablation as _run

    return _run(config, out_dir, progress=progress, data_path=data_path, reevaluate=reevaluate)


__all__ = [
    "BASE_ARMS",
    "BINS",
    "PROFILES",
    "ConfigError",
    "arm_gated",
    "load_config",
    "load_profile",
    "paired_bootstrap_ci",
    "parse_arm",
    "render_markdown",
    "run_ablation",
    "summarise",
    "validate_config",
    "write_report",
]
