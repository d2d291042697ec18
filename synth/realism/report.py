"""The realism report: real against synthetic lesions of the same livers, as JSON, Markdown, PNG.

>>> from synth.cases import read_cases
>>> from synth.realism import realism_report
>>> summary = realism_report(read_cases("data/"), out_dir="realism_out", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..cases import Case
from ..io import atomic_output_path, write_json_atomic
from . import figures
from .classifier import cross_validated_auc, roc_auc, roc_curve
from .compare import (
    SIZE_CLASSES,
    compare_tables,
    extract_real_lesions,
    feature_table,
    matched_sizes,
    synthesize_lesions,
)
from .features import FEATURE_NAMES, INTENSITY_FEATURES, UNITS

# The classifier sees appearance and shape, not size: sizes are matched by class, and within a
# class the synthesiser's log-uniform diameters are a choice of the caller, not a realism defect.
CLASSIFIER_FEATURES = tuple(f for f in FEATURE_NAMES if f not in ("diameter_mm", "major_axis_mm", "minor_axis_mm"))
CLASSIFIER_SETS = {
    "all features": CLASSIFIER_FEATURES,
    "intensity only": INTENSITY_FEATURES,
    "shape only": tuple(f for f in CLASSIFIER_FEATURES if f not in INTENSITY_FEATURES),
}


def realism_report(
    cases,
    *,
    out_dir,
    seed=0,
    per_real: int = 2,
    match: str = "class",
    synth_options: dict | None = None,
    min_diameter_mm: float = 3.0,
    max_real_per_case: int | None = None,
    n_boot: int = 2000,
    figures_on: bool = True,
    progress: bool = True,
) -> dict:
    """Compare real lesions with synthetic lesions inserted into the same livers; write the report.

    Parameters
    ----------
    cases : sequence of :class:`synth.cases.Case` or ``(name, volume, label, spacing)`` tuples
        Labelled scans (labels 0/1/2, CT in HU, spacing in mm).
    out_dir : path, keyword-only
        Folder for ``realism.json``, ``realism.md`` and the PNG figures (created).
    seed : int
        Seed of the insertions, the gallery and the bootstrap.
    per_real : int
        Synthetic lesions inserted per real lesion, in its size class.
    match : ``"class"`` or ``"diameter"``
        Size matching; see :func:`realism.compare.matched_sizes`.
    synth_options : dict, optional
        Keyword options of :func:`synth.synthesize` (``phenotype``, ``edge_mm``, ``mass_effect``, ...);
        the synthesiser's defaults when not given.
    min_diameter_mm : float
        Real lesions below this equivalent diameter are left out.
    max_real_per_case : int, optional
        Keep at most this many real lesions per case, spread evenly over the sorted diameters
        (for quick runs).
    n_boot : int
        Bootstrap resamples for the AUC intervals.
    figures_on : bool
        Draw the PNG figures.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        The content of ``realism.json``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [c if isinstance(c, Case) else Case(c[0], np.asarray(c[1]), np.asarray(c[2]), tuple(c[3]),
                                                 np.diag([*map(float, c[3]), 1.0])) for c in cases]
    if not cases:
        raise ValueError("no cases given")
    seeds = np.random.SeedSequence(seed).spawn(len(cases))
    real, synthetic, failures = [], [], 0
    for case, case_seed in zip(tqdm(cases, desc="cases", disable=not progress or len(cases) == 1), seeds):
        found = extract_real_lesions(case.image, case.label, case.spacing, case=case.case_id,
                                     min_diameter_mm=min_diameter_mm)
        if max_real_per_case is not None and len(found) > max_real_per_case:
            order = np.argsort([s.diameter_mm for s in found])
            keep = order[np.linspace(0, len(found) - 1, max_real_per_case).round().astype(int)]
            found = [found[i] for i in sorted(set(keep))]
        sizes = matched_sizes(found, per_real=per_real, match=match)
        with tqdm(total=len(sizes), desc=f"insert {case.case_id}", disable=not progress, leave=False) as bar:
            made, failed = synthesize_lesions(case.image, case.label, case.spacing, sizes, case=case.case_id,
                                              seed=np.random.default_rng(case_seed), synth_options=synth_options,
                                              progress=bar.update)
        real += found
        synthetic += made
        failures += failed
    if not real or not synthetic:
        raise ValueError(f"nothing to compare: {len(real)} real and {len(synthetic)} synthetic lesions")
    samples = real + synthetic
    with tqdm(total=len(samples), desc="features", disable=not progress, leave=False) as bar:
        table = feature_table(samples, progress=bar.update)
    distances = compare_tables(table)

    is_real = (table["source"] == "real").astype(int)
    classifiers, curves = {}, {}
    for name, features in CLASSIFIER_SETS.items():
        matrix = np.stack([table[f] for f in features], axis=1)
        result = cross_validated_auc(matrix, is_real, groups=table["case"], centers_mm=table["center_mm"],
                                     n_boot=n_boot, seed=seed)
        scored = np.isfinite(result["scores"])
        per_class = {size: roc_auc(result["scores"][scored & (table["size_class"] == size)],
                                   is_real[scored & (table["size_class"] == size)])
                     for size in SIZE_CLASSES if np.any(table["size_class"] == size)}
        classifiers[name] = {
            "auc": result["auc"], "ci95": list(result["ci"]), "folds": result["scheme"],
            "n_folds": result["n_folds"], "features": list(features),
            "auc_per_size_class": per_class,
            "weights": {f: float(w) for f, w in zip(features, result["weights"])},
        }
        curves[name] = (*roc_curve(result["scores"][scored], is_real[scored]), result["auc"], result["ci"])
    # One feature at a time, no fitting: how well does the raw value alone separate the two?
    single_feature_auc = {}
    for name in FEATURE_NAMES:
        finite = np.isfinite(table[name])
        single_feature_auc[name] = roc_auc(table[name][finite], is_real[finite])

    summary: dict[str, Any] = {  # JSON-ready, of mixed value types
        "settings": {"seed": seed, "per_real": per_real, "match": match, "synth_options": synth_options or {},
                     "min_diameter_mm": min_diameter_mm, "max_real_per_case": max_real_per_case,
                     "cases": [c.case_id for c in cases]},
        "counts": _counts(table, failures),
        "distances": distances,
        "classifier": classifiers,
        "single_feature_auc": single_feature_auc,
        "synthetic_by_phenotype": _by_phenotype(table),
        "units": UNITS,
    }
    if figures_on:
        summary["figures"] = {
            "histograms": figures.feature_histograms(table, out_dir / "histograms.png",
                                                     distances=distances["all"]).name,
            "gallery": figures.lesion_gallery(samples, out_dir / "gallery.png", outlined=False, seed=seed).name,
            "gallery_labelled": figures.lesion_gallery(samples, out_dir / "gallery_labelled.png", outlined=True,
                                                       seed=seed).name,
            "roc": figures.roc_figure(curves, out_dir / "roc.png").name,
        }
    summary["runtime_s"] = round(time.perf_counter() - started, 2)
    write_json_atomic(_plain(summary), out_dir / "realism.json")
    with atomic_output_path(out_dir / "realism.md") as tmp:
        tmp.write_text(markdown(summary), encoding="utf-8")
    return summary


def _counts(table, failures) -> dict:
    real = table["source"] == "real"
    return {
        "real": int(real.sum()), "synthetic": int((~real).sum()), "insertions_failed": int(failures),
        "per_size_class": {size: {"real": int(np.sum(real & (table["size_class"] == size))),
                                  "synthetic": int(np.sum(~real & (table["size_class"] == size)))}
                           for size in SIZE_CLASSES},
    }


def _by_phenotype(table) -> dict:
    synthetic = table["source"] == "synthetic"
    out = {}
    for phenotype in sorted(set(table["phenotype"][synthetic])):
        rows = synthetic & (table["phenotype"] == phenotype)
        out[phenotype] = {"n": int(rows.sum()), "median_contrast_hu": float(np.nanmedian(table["contrast_hu"][rows]))}
    return out


def _plain(value):
    """JSON-ready copy: numpy scalars to floats, NaN to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value, digits=2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(summary: dict) -> str:
    """The report as Markdown: counts, classifier AUCs, per-feature distances, figures."""
    counts = summary["counts"]
    lines = ["# Realism report: real vs synthetic liver lesions", "",
             f"Cases: {', '.join(summary['settings']['cases'])}. Real lesions: {counts['real']}; synthetic: "
             f"{counts['synthetic']} ({summary['settings']['per_real']} per real lesion, matched by "
             f"{summary['settings']['match']}; {counts['insertions_failed']} insertions found no room). "
             f"Runtime {summary['runtime_s']:.1f} s.", "",
             "| size class | real | synthetic |", "|---|---|---|"]
    for size, n in counts["per_size_class"].items():
        lines.append(f"| {size} | {n['real']} | {n['synthetic']} |")
    lines += ["", "## Real-vs-synthetic classifier", "",
              "Logistic regression on lesion features, out-of-fold scores, bootstrap 95 % interval. "
              "0.5: indistinguishable; 1.0: always told apart.", "",
              "| features | AUC | 95 % CI | folds | " + " | ".join(f"AUC {s}" for s in SIZE_CLASSES) + " |",
              "|---|---|---|---|" + "---|" * len(SIZE_CLASSES)]
    for name, result in summary["classifier"].items():
        per_class = " | ".join(_fmt(result["auc_per_size_class"].get(s, float("nan"))) for s in SIZE_CLASSES)
        lines.append(f"| {name} | {_fmt(result['auc'])} | {_fmt(result['ci95'][0])}-{_fmt(result['ci95'][1])} | "
                     f"{result['n_folds']} {result['folds']} | {per_class} |")
    lines += ["", "## Features, all size classes", "",
              "Medians (interquartile range); Wasserstein distance in the feature's unit and divided by the "
              "real standard deviation; KS statistic; AUC of the raw feature alone (real high > 0.5).", "",
              "| feature | real | synthetic | W | W / sd | KS | KS p | AUC alone |",
              "|---|---|---|---|---|---|---|---|"]
    for feature, d in summary["distances"]["all"].items():
        unit = summary["units"][feature]
        lines.append(
            f"| {feature}{' [' + unit + ']' if unit else ''} | {_fmt(d['real_median'])} ({_iqr(d.get('real_iqr'))}) | "
            f"{_fmt(d['synthetic_median'])} ({_iqr(d.get('synthetic_iqr'))}) | {_fmt(d['wasserstein'])} | "
            f"{_fmt(d['wasserstein_scaled'])} | {_fmt(d['ks'])} | {_fmt(d['ks_p'], 3)} | "
            f"{_fmt(summary['single_feature_auc'][feature])} |")
    lines += ["", "## Per size class", "", "Median real / median synthetic (KS statistic).", "",
              "| feature | " + " | ".join(g for g in summary["distances"] if g != "all") + " |",
              "|---|" + "---|" * (len(summary["distances"]) - 1)]
    for feature in summary["distances"]["all"]:
        cells = []
        for group, by_feature in summary["distances"].items():
            if group == "all":
                continue
            d = by_feature[feature]
            cells.append(f"{_fmt(d['real_median'])} / {_fmt(d['synthetic_median'])} ({_fmt(d['ks'])})")
        lines.append(f"| {feature} | " + " | ".join(cells) + " |")
    lines += ["", "## Synthetic lesions by phenotype", "", "| phenotype | n | median contrast [HU] |", "|---|---|---|"]
    for phenotype, row in summary["synthetic_by_phenotype"].items():
        lines.append(f"| {phenotype} | {row['n']} | {_fmt(row['median_contrast_hu'], 1)} |")
    if "figures" in summary:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({file})" for name, file in summary["figures"].items()]
    return "\n".join(lines) + "\n"


def _iqr(pair) -> str:
    return "-" if not pair else f"{_fmt(pair[0])}-{_fmt(pair[1])}"
