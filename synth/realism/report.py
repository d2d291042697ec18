"""The realism report: real against synthetic lesions, as JSON, Markdown and PNG (docs/realism.md).

The protocol, in short: real lesions are split into a tune and a report part before anything is
tuned (:func:`~synth.realism.compare.realism_part`); synthetic lesions are inserted with the
diameter of a real lesion of the chosen part (+-10 %); two classifiers (logistic regression and
gradient-boosted trees) try to tell real from synthetic, out of fold, inside that part; the same
classifiers on two random halves of the real lesions give the noise floor (real vs real); and the
comparison is repeated on further hosts (thick-slice versions of the labelled cases, healthy scans).

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
from ..seeding import rng_for
from . import figures
from .classifier import CLASSIFIERS, cross_validated_auc, roc_auc, roc_curve
from .compare import (
    PARTS,
    SIZE_BINS,
    SIZE_CLASSES,
    compare_tables,
    extract_real_lesions,
    feature_table,
    matched_sizes,
    subset,
    synthesize_lesions,
)
from .features import FEATURE_NAMES, FEATURE_VERSION, INTENSITY_FEATURES, UNITS
from .hosts import thick_slice_case

# The classifier sees appearance and shape, not size: sizes are matched, and within a match the
# synthesiser's diameters are a choice of the caller, not a realism defect.
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
    seed: int = 0,
    per_real: int = 2,
    match: str = "diameter",
    part: str = "report",
    thick_slice_mm: float | None = None,
    hosts=(),
    classifiers: tuple[str, ...] = CLASSIFIERS,
    synth_options: dict | None = None,
    min_diameter_mm: float = 3.0,
    max_real_per_case: int | None = None,
    n_boot: int = 2000,
    real_vs_real_repeats: int = 5,
    save_gate=None,
    gate_classifier: str = "logistic",
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
        Seed of the insertions, the real-vs-real halves and the bootstrap.
    per_real : int
        Synthetic lesions inserted per real lesion.
    match : ``"diameter"`` or ``"class"``
        Size matching (:func:`realism.compare.matched_sizes`): the real diameter +-10 % (default),
        or only its size class.
    part : ``"report"``, ``"tune"`` or ``"all"``
        Which real lesions are compared (:func:`realism.compare.realism_part`); quoted results use
        ``"report"``, tuning looks at ``"tune"`` only. Cross-validation runs inside the part.
    thick_slice_mm : float, optional
        Also compare on a thick-slice version of every labelled case
        (:func:`realism.hosts.thick_slice_case`): its real lesions carry real partial volume, and
        synthetic lesions are inserted on the thick grid.
    hosts : sequence of Case
        Healthy scans (CT + liver mask): synthetic lesions inserted there are compared with the
        labelled cases' real lesions of the part (another scan, possibly another phase).
    classifiers : tuple of str
        ``"logistic"`` and/or ``"boosting"``.
    synth_options : dict, optional
        Keyword options of :func:`synth.synthesize` (``phenotype``, ``edge_mm``,
        ``quality_filter``, ...); the synthesiser's defaults when not given.
    min_diameter_mm : float
        Real lesions below this equivalent diameter are left out.
    max_real_per_case : int, optional
        Keep at most this many real lesions per case and part, spread evenly over the sorted
        diameters (for quick runs).
    n_boot : int
        Bootstrap resamples for the AUC intervals.
    real_vs_real_repeats : int
        Random halvings of the real lesions for the noise floor (0 to skip).
    save_gate : path, optional
        Also train a quality gate (:mod:`realism.gate`) on the tune part of the labelled cases
        (native grid) and write it there as JSON.
    gate_classifier : str
        The gate's classifier.
    figures_on : bool
        Draw the PNG figures.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        The content of ``realism.json``. ``hosts`` holds one analysis per kind of host
        (``native``, ``thick ... mm``, ``healthy: NAME``); the top-level ``classifier``,
        ``distances``, ``counts`` ... repeat the native host's (logistic classifier).
    """
    started = time.perf_counter()
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}; got {part!r}")
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown or not classifiers:
        raise ValueError(f"classifiers must be a non-empty subset of {CLASSIFIERS}; got {classifiers!r}")
    if thick_slice_mm is not None and not thick_slice_mm > 0:
        raise ValueError(f"thick_slice_mm must be a positive thickness in mm; got {thick_slice_mm}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [_as_case(c) for c in cases]
    hosts = [_as_case(h) for h in hosts]
    if not cases:
        raise ValueError("no cases given")
    # Made first: a thickness the scans cannot take is refused before minutes of work.
    thick = [thick_slice_case(case, thick_mm=thick_slice_mm) for case in cases] if thick_slice_mm else []
    wanted = {"tune", "report"} if part == "all" else {part}
    gate_parts = wanted | ({"tune"} if save_gate is not None else set())
    settings = dict(seed=seed, per_real=per_real, match=match, synth_options=synth_options or {},
                    min_diameter_mm=min_diameter_mm, max_real_per_case=max_real_per_case, progress=progress)

    native_real: list = []
    native_synthetic: list = []
    failures: dict[str, int] = {}
    for case in tqdm(cases, desc="cases", disable=not progress or len(cases) == 1):
        real, synthetic, failed = _case_samples(case, gate_parts, key=("native", case.case_id), **settings)
        native_real += real
        native_synthetic += synthetic
        failures["native"] = failures.get("native", 0) + failed
    tables = {"native": _table(native_real + native_synthetic, progress)}
    samples = {"native": native_real + native_synthetic}
    if thick:
        name = f"thick {thick[0].spacing[2]:.1f} mm"
        made, failures[name] = [], 0
        for case in thick:
            real, synthetic, failed = _case_samples(case, wanted, key=("thick", case.case_id), **settings)
            made += real + synthetic
            failures[name] += failed
        tables[name], samples[name] = _table(made, progress), made
    native_part_real = [s for s in native_real if s.part in wanted]
    for host in hosts:
        name = f"healthy: {host.case_id}"
        sizes = matched_sizes(native_part_real, per_real=per_real, match=match)
        parts = [s.part for s in native_part_real for _ in range(per_real)]
        with tqdm(total=len(sizes), desc=f"insert {host.case_id}", disable=not progress, leave=False) as bar:
            made, failures[name] = synthesize_lesions(
                host.image, host.label, host.spacing, sizes, case=host.case_id, parts=parts,
                seed=rng_for(seed, "healthy", host.case_id), synth_options=synth_options, progress=bar.update)
        real_rows = tables["native"]["source"] == "real"
        tables[name] = _concat(subset(tables["native"], real_rows), _table(made, progress))
        samples[name] = native_real + made

    analyses, curves = {}, {}
    for name, table in tables.items():
        in_part = np.isin(table["part"], list(wanted))
        # Real and synthetic lesions of a healthy host come from different scans: folds by case
        # would hold out one class at a time, and slabs of two scans mean nothing; random folds.
        by_place = not name.startswith("healthy")
        analyses[name], curves[name] = _analyse(
            subset(table, in_part), classifiers=classifiers, by_place=by_place, n_boot=n_boot, seed=seed,
            repeats=real_vs_real_repeats, failures=failures.get(name, 0))
        analyses[name]["phase_note"] = ("another scan: its contrast phase and noise may differ from the "
                                        "labelled cases'" if not by_place else "")

    native = analyses["native"]
    first = classifiers[0]
    summary: dict[str, Any] = {  # JSON-ready, of mixed value types
        "settings": {"seed": seed, "per_real": per_real, "match": match, "part": part,
                     "synth_options": _describe_options(synth_options),
                     "min_diameter_mm": min_diameter_mm, "max_real_per_case": max_real_per_case,
                     "thick_slice_mm": thick_slice_mm, "classifiers": list(classifiers),
                     "feature_version": FEATURE_VERSION,
                     "cases": [c.case_id for c in cases], "hosts": [h.case_id for h in hosts]},
        "counts": native["counts"],
        "distances": native["distances"],
        "classifier": native["classifiers"][first],
        "single_feature_auc": native["single_feature_auc"],
        "synthetic_by_phenotype": native["synthetic_by_phenotype"],
        "hosts": analyses,
        "units": UNITS,
    }
    if save_gate is not None:
        from .gate import train_gate

        tune = subset(tables["native"], tables["native"]["part"] == "tune")
        gate = train_gate(tune, CLASSIFIER_FEATURES, classifier=gate_classifier)
        gate.save(save_gate)
        summary["gate"] = {"path": str(save_gate), "threshold": gate.threshold, **gate.info}
    if figures_on:
        shown = [s for s in samples["native"] if s.part in wanted]
        table = subset(tables["native"], np.isin(tables["native"]["part"], list(wanted)))
        summary["figures"] = {
            "histograms": figures.feature_histograms(table, out_dir / "histograms.png",
                                                     distances=native["distances"]["all"]).name,
            "gallery": figures.lesion_gallery(shown, out_dir / "gallery.png", outlined=False, seed=seed).name,
            "gallery_labelled": figures.lesion_gallery(shown, out_dir / "gallery_labelled.png", outlined=True,
                                                       seed=seed).name,
            "roc": figures.roc_figure(curves["native"], out_dir / "roc.png").name,
        }
        for index, name in enumerate(n for n in analyses if n != "native"):
            path = out_dir / f"roc_host{index + 1}.png"
            summary["figures"][f"roc {name}"] = figures.roc_figure(
                curves[name], path, title=f"Real vs synthetic, host {name} (out-of-fold)").name
            # The same side-by-side gallery on every host, so thick-slice and healthy hosts can be seen.
            shown = [s for s in samples[name] if s.part in wanted]
            summary["figures"][f"gallery {name}"] = figures.lesion_gallery(
                shown, out_dir / f"gallery_host{index + 1}.png", outlined=True, seed=seed,
                title=f"host {name}").name
    summary["runtime_s"] = round(time.perf_counter() - started, 2)
    write_json_atomic(_plain(summary), out_dir / "realism.json")
    with atomic_output_path(out_dir / "realism.md") as tmp:
        tmp.write_text(markdown(summary), encoding="utf-8")
    return summary


def _as_case(c) -> Case:
    if isinstance(c, Case):
        return c
    return Case(c[0], np.asarray(c[1]), np.asarray(c[2]), tuple(c[3]), np.diag([*map(float, c[3]), 1.0]))


def _describe_options(options: dict | None) -> dict:
    """The synthesiser options as JSON can hold them (a quality gate object by its threshold)."""
    out = {}
    for key, value in (options or {}).items():
        out[key] = value if isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))) else (
            f"{type(value).__name__}(threshold={getattr(value, 'threshold', '?')})")
    return out


def _case_samples(case: Case, parts: set, *, key, seed, per_real, match, synth_options, min_diameter_mm,
                  max_real_per_case, progress):
    """Real lesions of ``parts`` in one case and synthetic lesions size-matched to them."""
    every = extract_real_lesions(case.image, case.label, case.spacing, case=case.case_id,
                                 min_diameter_mm=min_diameter_mm)
    found = []
    for part in sorted(parts):
        in_part = [s for s in every if s.part == part]
        if max_real_per_case is not None and len(in_part) > max_real_per_case:
            order = np.argsort([s.diameter_mm for s in in_part])
            keep = order[np.linspace(0, len(in_part) - 1, max_real_per_case).round().astype(int)]
            in_part = [in_part[i] for i in sorted(set(keep))]
        found += in_part
    sizes = matched_sizes(found, per_real=per_real, match=match)
    tags = [s.part for s in found for _ in range(per_real)]
    with tqdm(total=len(sizes), desc=f"insert {case.case_id}", disable=not progress, leave=False) as bar:
        made, failed = synthesize_lesions(case.image, case.label, case.spacing, sizes, case=case.case_id,
                                          seed=rng_for(seed, *key), synth_options=synth_options, parts=tags,
                                          progress=bar.update)
    return found, made, failed


def _table(samples, progress) -> dict[str, np.ndarray]:
    with tqdm(total=len(samples), desc="features", disable=not progress, leave=False) as bar:
        return feature_table(samples, progress=bar.update)


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([a[name], b[name]]) for name in a}


def _analyse(table, *, classifiers, by_place: bool, n_boot: int, seed: int, repeats: int, failures: int):
    """Classifiers (per feature set, size class and size bin), real vs real, distances, counts."""
    is_real = (table["source"] == "real").astype(int)
    if is_real.sum() < 2 or (1 - is_real).sum() < 2:
        raise ValueError(f"nothing to compare: {int(is_real.sum())} real and {int((1 - is_real).sum())} "
                         f"synthetic lesions in this part")
    where: dict[str, Any] = {"groups": table["case"], "centers_mm": table["center_mm"]} if by_place else {}
    results: dict[str, dict] = {}
    curves: dict[str, tuple] = {}
    for kind in classifiers:
        results[kind] = {}
        for name, features in CLASSIFIER_SETS.items():
            matrix = np.stack([table[f] for f in features], axis=1)
            result = cross_validated_auc(matrix, is_real, n_boot=n_boot, seed=seed, classifier=kind, **where)
            scored = np.isfinite(result["scores"])
            results[kind][name] = {
                "auc": result["auc"], "ci95": list(result["ci"]), "folds": result["scheme"],
                "n_folds": result["n_folds"], "features": list(features),
                "auc_per_size_class": _per_group(result["scores"], is_real, scored, table["size_class"],
                                                 SIZE_CLASSES)[0],
                "auc_per_size_bin": _per_group(result["scores"], is_real, scored, table["size_bin"],
                                               [b[0] for b in SIZE_BINS])[0],
                "counts_per_size_bin": _per_group(result["scores"], is_real, scored, table["size_bin"],
                                                  [b[0] for b in SIZE_BINS])[1],
                "weights": {f: float(w) for f, w in zip(features, result["weights"])},
            }
            if name == "all features":
                curves[f"{kind}"] = (*roc_curve(result["scores"][scored], is_real[scored]), result["auc"],
                                     result["ci"])
    return {
        "counts": _counts(table, failures),
        "classifiers": results,
        "real_vs_real": _real_vs_real(table, classifiers=classifiers, where=by_place, repeats=repeats, seed=seed),
        "distances": compare_tables(table),
        "single_feature_auc": {f: roc_auc(table[f][np.isfinite(table[f])], is_real[np.isfinite(table[f])])
                               for f in FEATURE_NAMES},
        "synthetic_by_phenotype": _by_phenotype(table),
    }, curves


def _per_group(scores, is_real, scored, column, names):
    aucs, counts = {}, {}
    for name in names:
        rows = scored & (column == name)
        if rows.any():
            aucs[name] = roc_auc(scores[rows], is_real[rows])
            counts[name] = {"real": int(is_real[rows].sum()), "synthetic": int((1 - is_real[rows]).sum())}
    return aucs, counts


def _real_vs_real(table, *, classifiers, where: bool, repeats: int, seed: int) -> dict:
    """The noise floor: the same classifiers separating two random halves of the real lesions.

    Halves are drawn within each size class, so that both hold the same sizes; with no difference
    to find, the AUC should be near 0.5, and its spread over the repeats shows how far from 0.5 a
    real-vs-synthetic AUC must be to mean something.
    """
    real = subset(table, table["source"] == "real")
    n = real["source"].size
    if repeats < 1 or n < 10:
        return {}
    matrix = np.stack([real[f] for f in CLASSIFIER_FEATURES], axis=1)
    out = {}
    for kind in classifiers:
        aucs = []
        for repeat in range(repeats):
            rng = rng_for(seed, "real-vs-real", repeat)
            halves = np.zeros(n, dtype=int)
            for size in SIZE_CLASSES:
                members = rng.permutation(np.flatnonzero(real["size_class"] == size))
                halves[members[: members.size // 2 + rng.integers(0, 2) * (members.size % 2)]] = 1
            place: dict[str, Any] = {"groups": real["case"], "centers_mm": real["center_mm"]} if where else {}
            aucs.append(cross_validated_auc(matrix, halves, n_boot=1, seed=seed, classifier=kind, **place)["auc"])
        out[kind] = {"auc_mean": float(np.nanmean(aucs)), "auc_min": float(np.nanmin(aucs)),
                     "auc_max": float(np.nanmax(aucs)), "repeats": repeats, "n_real": int(n)}
    return out


def _counts(table, failures) -> dict:
    real = table["source"] == "real"
    return {
        "real": int(real.sum()), "synthetic": int((~real).sum()), "insertions_failed": int(failures),
        "per_size_class": {size: {"real": int(np.sum(real & (table["size_class"] == size))),
                                  "synthetic": int(np.sum(~real & (table["size_class"] == size)))}
                           for size in SIZE_CLASSES},
        "per_size_bin": {name: {"real": int(np.sum(real & (table["size_bin"] == name))),
                                "synthetic": int(np.sum(~real & (table["size_bin"] == name)))}
                         for name, _, _ in SIZE_BINS},
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
    """The report as Markdown: protocol, classifier AUCs per host and size, noise floor, features."""
    settings = summary["settings"]
    bins = [b[0] for b in SIZE_BINS]
    lines = ["# Realism report: real vs synthetic liver lesions", "",
             f"Cases: {', '.join(settings['cases'])}. Part: **{settings['part']}** (real lesions in liver slabs "
             f"{'1 and 3' if settings['part'] == 'report' else '0 and 2' if settings['part'] == 'tune' else '0-3'} "
             f"of 4 along z). Synthetic lesions: {settings['per_real']} per real lesion, matched by "
             f"{settings['match']}. Classifiers: {', '.join(settings['classifiers'])}. Features version "
             f"{settings['feature_version']}. Runtime {summary['runtime_s']:.1f} s.", ""]
    for host, analysis in summary["hosts"].items():
        c = analysis["counts"]
        lines += [f"## Host: {host}", "",
                  f"{c['real']} real and {c['synthetic']} synthetic lesions ({c['insertions_failed']} insertions "
                  f"failed or touched the border)."]
        if analysis.get("phase_note"):
            lines += ["", f"Real lesions from the labelled cases, synthetic ones from {host.split(': ', 1)[-1]}: "
                          f"{analysis['phase_note']}. Read this AUC with that in mind."]
        lines += ["", "| classifier | features | AUC | 95 % CI | folds | " + " | ".join(f"AUC {b}" for b in bins)
                  + " | " + " | ".join(f"AUC {s}" for s in SIZE_CLASSES) + " |",
                  "|---|---|---|---|---|" + "---|" * (len(bins) + len(SIZE_CLASSES))]
        for kind, by_set in analysis["classifiers"].items():
            for name, r in by_set.items():
                per_bin = " | ".join(_fmt(r["auc_per_size_bin"].get(b, float("nan"))) for b in bins)
                per_class = " | ".join(_fmt(r["auc_per_size_class"].get(s, float("nan"))) for s in SIZE_CLASSES)
                lines.append(f"| {kind} | {name} | {_fmt(r['auc'])} | {_fmt(r['ci95'][0])}-{_fmt(r['ci95'][1])} | "
                             f"{r['n_folds']} {r['folds']} | {per_bin} | {per_class} |")
        n_bin = next(iter(analysis["classifiers"].values()))["all features"]["counts_per_size_bin"]
        lines += ["", "Lesions per size bin (real / synthetic): " + "; ".join(
            f"{b} {n_bin[b]['real']} / {n_bin[b]['synthetic']}" for b in bins if b in n_bin) + "."]
        if analysis["real_vs_real"]:
            lines += ["", "Noise floor, real vs real (two random halves of the real lesions, same classifier and "
                          "folds, all features): " + "; ".join(
                              f"{kind} {_fmt(r['auc_mean'])} (range {_fmt(r['auc_min'])}-{_fmt(r['auc_max'])}, "
                              f"{r['repeats']} halvings)" for kind, r in analysis["real_vs_real"].items()) + "."]
        lines.append("")
    if "gate" in summary:
        g = summary["gate"]
        lines += ["## Quality gate", "",
                  f"Written to `{g['path']}`: {g['classifier']} on the tune part ({g['n_real']} real, "
                  f"{g['n_synthetic']} synthetic), threshold {g['threshold']:.3f} ({g['threshold_rule']}); out of "
                  f"fold {g['real_pass_out_of_fold']:.0%} of real and {g['synthetic_pass_out_of_fold']:.0%} of "
                  f"synthetic tune lesions pass.", ""]
    lines += ["## Features, native host, all size classes", "",
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
    lines += ["", "## Per size class (native host)", "", "Median real / median synthetic (KS statistic).", "",
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
    lines += ["", "## Synthetic lesions by phenotype (native host)", "", "| phenotype | n | median contrast [HU] |",
              "|---|---|---|"]
    for phenotype, row in summary["synthetic_by_phenotype"].items():
        lines.append(f"| {phenotype} | {row['n']} | {_fmt(row['median_contrast_hu'], 1)} |")
    if "figures" in summary:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({file})" for name, file in summary["figures"].items()]
    return "\n".join(lines) + "\n"


def _iqr(pair) -> str:
    return "-" if not pair else f"{_fmt(pair[0])}-{_fmt(pair[1])}"
