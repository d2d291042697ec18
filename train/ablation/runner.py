"""Run an ablation: every arm x seed is trained, predicts the test cases and is evaluated
lesion-wise; then the statistics and the report. Resumable at run granularity and inside a run.

Folder layout under ``out_dir``::

    runs/<arm>/seed-<s>/     the trainer's files (checkpoint.pt, model.pt, logs) plus
                             eval.json (lesion-wise evaluation of the test cases, timings) and
                             predictions.npz (the predicted label maps, uint8, per test case id)
    results.json, results.md, *.png

A run whose ``eval.json`` exists is finished and skipped; any other run is continued from its
checkpoint (``train_model(resume=True)``), so an interrupted ablation loses at most
``checkpoint_every`` steps.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from synth.io import atomic_output_path, write_json_atomic

from .config import load_config, parse_arm
from .data import AblationData, prepare_data
from .report import write_report
from .stats import summarise

EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.npz"


def run_dir(out_dir, arm: str, seed: int) -> Path:
    """Folder of one run: ``runs/<arm>/seed-<seed>``."""
    return Path(out_dir) / "runs" / arm / f"seed-{seed}"


def train_config(cfg: dict, arm: str, seed: int):
    """The TrainConfig of one run: ``cfg["train"]`` plus the seed and the arm's synthetic share."""
    from train.loop import TrainConfig

    base, torchio = parse_arm(arm)
    fields = dict(cfg["train"], seed=seed, augmentation="torchio" if torchio else "none")
    synthetic = cfg["synthetic"]
    if "size" in synthetic:
        fields["synthetic_size"] = synthetic["size"]
    if "count" in synthetic:
        fields["synthetic_count"] = synthetic["count"]
    fields["synthetic_probability"] = {"real": 0.0, "real+heuristic": synthetic["probability"],
                                       "real+diffusion": synthetic["probability"],
                                       "synthetic-only": 1.0}[base]
    if base == "real+diffusion":
        fields["synthetic_method"] = "diffusion"
        fields["synthetic_model"] = str(cfg["diffusion"]["model"])
    return TrainConfig.from_dict(fields)


def arm_inputs(arm: str, data: AblationData) -> tuple[list, list]:
    """(training cases, hosts) of an arm."""
    base, _ = parse_arm(arm)
    if base == "real":
        return data.train, []
    if base in ("real+heuristic", "real+diffusion"):
        return data.train, data.heuristic_hosts
    if base == "synthetic-only":
        if not data.tumor_free_hosts:
            raise ValueError("arm 'synthetic-only' needs tumour-free hosts (phantoms or healthy cases)")
        return [], data.tumor_free_hosts
    raise ValueError(f"unknown arm {arm!r}")


def _save_predictions(path: Path, predictions: dict) -> None:
    # The suffix keeps numpy from appending ".npz" to the temporary name.
    with atomic_output_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **predictions)


def load_predictions(path) -> dict:
    """``{case_id: uint8 label map}`` saved by a run."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def run_one(cfg: dict, arm: str, seed: int, data: AblationData, out_dir, *,
            progress: bool = True) -> dict:
    """Train (or resume), predict and evaluate one arm x seed; returns its eval dict."""
    from train.loop import load_model, predict_case, train_model
    from train.metrics import aggregate, evaluate_case

    folder = run_dir(out_dir, arm, seed)
    config = train_config(cfg, arm, seed)
    train_cases, hosts = arm_inputs(arm, data)
    t0 = time.perf_counter()
    # Resume only an interrupted run; a fresh folder starts a new one.
    resume = (folder / "checkpoint.pt").is_file()
    result = train_model(config, train_cases, val_cases=data.val, hosts=hosts, out_dir=folder,
                         resume=resume, progress=progress)
    train_s = time.perf_counter() - t0
    if result.steps < config.steps:
        raise RuntimeError(f"run {arm} seed {seed} stopped at step {result.steps} of {config.steps}")

    t0 = time.perf_counter()
    model, model_config = load_model(result.model_path)
    n_params = int(sum(p.numel() for p in model.parameters()))
    predictions, results = {}, []
    for case in data.test:
        pred = predict_case(model, case, model_config)
        predictions[case.case_id] = pred
        results.append(evaluate_case(pred, case.label, spacing=case.spacing, case_id=case.case_id))
    eval_s = time.perf_counter() - t0
    _save_predictions(folder / PREDICTIONS_FILE, predictions)
    evaluation = {
        "arm": arm,
        "seed": seed,
        "steps": result.steps,
        "model": result.model_path.name,
        "model_parameters": n_params,
        "train_s": train_s,
        "eval_s": eval_s,
        "train_config": config.to_dict(),
        "cases": [r.to_dict() for r in results],
        "summary": aggregate(results),
    }
    # Written last: its presence marks the run as finished.
    write_json_atomic(evaluation, folder / EVAL_FILE)
    return evaluation


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Where the ablation ran, for the report."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({_cpu_name()})"
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    info["summary"] = (f"{device}, {info['cpu_count']} CPU core(s) visible, torch {info['torch']} "
                       f"with {info['torch_threads']} thread(s), Python {info['python']}.")
    return info


def run_ablation(config, out_dir, *, progress: bool = True, data_path=None, say=print) -> dict:
    """Run (or finish) an ablation and write its report.

    Args:
        config: a configuration dict, a JSON file, or a bundled profile name ("cpu-quick", "gpu").
        out_dir: the output folder (created); rerunning with the same folder skips finished runs.
        progress: tqdm progress bars.
        data_path: overrides ``data.path`` (the data folder).
        say: where plain messages go (the offline fallback notice), default ``print``.

    Returns:
        the results dict also written to ``results.json``, with ``report`` holding the paths of
        ``results.md``, ``results.json`` and the figures.
    """
    from tqdm.auto import tqdm

    cfg = load_config(config)
    if data_path is not None:
        cfg["data"]["path"] = str(data_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    t0 = time.perf_counter()
    data = prepare_data(cfg, progress=progress, say=say)
    data_s = time.perf_counter() - t0

    runs: dict = {arm: {} for arm in cfg["arms"]}
    jobs = [(arm, seed) for seed in cfg["seeds"] for arm in cfg["arms"]]  # a seed's arms together
    skipped = []
    bar = tqdm(jobs, desc="ablation runs", unit="run", disable=not progress)
    for arm, seed in bar:
        bar.set_postfix_str(f"{arm} seed {seed}")
        done = run_dir(out_dir, arm, seed) / EVAL_FILE
        if done.is_file():
            runs[arm][seed] = json.loads(done.read_text("utf-8"))
            skipped.append(f"{arm}/seed-{seed}")
            continue
        runs[arm][seed] = run_one(cfg, arm, seed, data, out_dir, progress=progress)
    bar.close()

    t0 = time.perf_counter()
    stats = summarise(runs, baseline="real", n_boot=cfg["bootstrap"], seed=0)
    first_seed = cfg["seeds"][0]
    overlay_predictions = {arm: load_predictions(run_dir(out_dir, arm, first_seed) / PREDICTIONS_FILE)
                           for arm in cfg["arms"]}
    results = {
        "name": cfg["name"],
        "config": cfg,
        "data": data.describe(),
        "machine": machine_info(),
        "model_parameters": runs["real"][first_seed].get("model_parameters"),
        "stats": stats,
        "runs": {
            arm: {str(seed): {
                "steps": ev["steps"], "train_s": ev["train_s"], "eval_s": ev["eval_s"],
                "summary": ev["summary"], "evaluation": {"cases": ev["cases"]},
            } for seed, ev in by_seed.items()}
            for arm, by_seed in runs.items()
        },
        "skipped_finished_runs": skipped,
    }
    results["timings"] = {
        "data_s": data_s,
        "train_s": sum(ev["train_s"] for by_seed in runs.values() for ev in by_seed.values()),
        "eval_s": sum(ev["eval_s"] for by_seed in runs.values() for ev in by_seed.values()),
        "total_s": None,  # filled just below, after the report is drawn
    }
    cases = {c.case_id: c for c in data.test}
    paths = write_report(results, out_dir, overlay_cases=cases, overlay_predictions=overlay_predictions)
    results["figures"] = {k: v.name for k, v in paths["figures"].items()}
    results["timings"]["report_s"] = time.perf_counter() - t0
    results["timings"]["total_s"] = time.perf_counter() - started
    # Rewrite the JSON and Markdown with the final wall time (the figures do not show it).
    paths = write_report(results, out_dir, draw_figures=False)
    results["report"] = {k: str(v) if not isinstance(v, dict) else {a: str(b) for a, b in v.items()}
                         for k, v in paths.items()}
    return results
