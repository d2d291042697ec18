"""The ablation report: ``results.json``, ``results.md`` and PNG figures, all written atomically."""

from __future__ import annotations

from pathlib import Path

from synth.io import atomic_output_path, write_json_atomic
from train.postprocess import describe_postprocess

from .figures import plot_metric_by_bin, plot_overlays
from .stats import ALL_BIN, BINS, LESION_METRICS

FIGURES = {
    "sensitivity": "sensitivity_by_size.png",
    "sensitivity_iou50": "sensitivity_iou50_by_size.png",
    "lesion_dice": "dice_by_size.png",
}
OVERLAYS = "overlays_small_lesions.png"
# Below these, the report says in plain words that it shows the pipeline, not a gain.
WEAK_EVIDENCE_CASES = 10
WEAK_EVIDENCE_STEPS = 5000
# A baseline that misses these measures nothing (issue: a competent baseline before any difference).
COMPETENCE_TARGETS = {  # name: (label, target, True when higher is better)
    "liver_dice": ("liver Dice", 0.90, True),
    "tumor_dice": ("global tumour Dice", 0.50, True),
    "false_positives_per_case": ("false positives per test case", 5.0, False),
    "detection_10mm": ("detection of lesions >= 10 mm", 0.90, True),
}
VARIANT_NAMES = {
    "cases": "post-processed, model's own liver (headline)",
    "cases_raw": "as predicted",
    "cases_true_liver": "restricted to the TRUE liver (not a test-time result)",
}
FEW_LESIONS = 5  # a bin's interval from fewer lesions is marked as such


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean_sd(entry: dict, digits: int = 2) -> str:
    if entry["mean"] is None:
        return "–"
    if entry["sd"] is None:
        return _fmt(entry["mean"], digits)
    return f"{entry['mean']:.{digits}f} ± {entry['sd']:.{digits}f}"


def _ci(entry: dict | None, digits: int = 2) -> str:
    if entry is None or entry["difference"] is None:
        return ""
    text = f"{entry['difference']:+.{digits}f}"
    if entry["low"] is not None:
        text += f" [{entry['low']:+.{digits}f}, {entry['high']:+.{digits}f}]"
    return text


def evidence_paragraph(results: dict) -> str:
    """A plain statement of how much the numbers can carry, from the run's own sizes."""
    stats = results["stats"]
    n_cases, n_les = stats["n_cases"], stats["n_lesions"]
    steps = results.get("config", {}).get("train", {}).get("steps")
    params = results.get("model_parameters")
    seeds = len(stats["seeds"])
    per_bin = ", ".join(f"{n_les[b]} {b} mm" for b in BINS if b != ALL_BIN)
    text = (
        f"**How much this shows.** Every number above comes from {n_cases} test case(s) holding "
        f"{n_les[ALL_BIN]} ground-truth lesions ({per_bin}), {seeds} training seed(s) per arm"
    )
    if steps is not None:
        text += f", {steps} training steps per run"
    if params is not None:
        text += f" and a model of {params / 1e6:.2f} M parameters"
    text += (
        ". The confidence intervals resample the test lesions (and cases), so they cover which "
        "lesions happened to be in the test set, not other scans, scanners or hospitals; the "
        "± sd is the spread between training seeds. Lesions of one scan are not independent, and "
        "a bin with few lesions says almost nothing."
    )
    folds = results.get("data", {}).get("folds")
    if folds:
        text += (f" The {n_cases} test cases are the {len(folds)} axial slabs of one scan (k-fold "
                 "cross-validation): every lesion of the scan is tested once, by a model that never saw "
                 "its slab, but all come from one patient and one scanner.")
    base = results.get("competence", {}).get(stats.get("baseline", "real"), {}).get("cases")
    if base is not None:
        competent = all(base.get(name) is not None and (base[name] >= target if up else base[name] <= target)
                        for name, (_, target, up) in COMPETENCE_TARGETS.items())
        weak = not competent or n_les[ALL_BIN] < 50
    else:  # an older results file: judge by its size alone
        weak = n_cases < WEAK_EVIDENCE_CASES or (steps is not None and steps < WEAK_EVIDENCE_STEPS)
    if weak:
        text += (
            " With this little data, a tiny model and so few steps, the report shows that the "
            "pipeline works end to end (data, synthetic tumours, training, lesion-wise "
            "evaluation, statistics); it is not evidence of a gain, and no difference here should "
            "be quoted as one. Run the `gpu` profile on a full data set for that."
        )
    return text


def verdict_lines(stats: dict) -> list[str]:
    """One sentence per size bin and arm: is the difference to the baseline shown (the lesion
    sensitivity's 95 % CI excludes 0 on the better side), not shown, or reversed."""
    base = stats.get("baseline", "real")
    lines = []
    for arm, diffs in stats.get("differences", {}).items():
        for b in BINS:
            n = stats["n_lesions"][b]
            entry = diffs.get(b, {}).get("sensitivity")
            where = "all lesions" if b == ALL_BIN else f"lesions {b} mm"
            if n == 0 or entry is None or entry["difference"] is None:
                lines.append(f"- `{arm}` vs `{base}`, {where}: no test lesion in this bin, nothing to say.")
                continue
            low, high = entry["low"], entry["high"]
            if low is not None and low > 0:
                word = "**shown**: higher sensitivity"
            elif high is not None and high < 0:
                word = "**reversed**: lower sensitivity"
            else:
                word = "**not shown**: the interval includes 0"
            few = f" (an interval from only {n} lesions)" if n < FEW_LESIONS else ""
            lines.append(f"- `{arm}` vs `{base}`, {where} (n = {n}): {word}, Δ {_ci(entry)}{few}.")
    return lines


def competence_lines(results: dict) -> list[str]:
    """The competence table (every arm, each evaluation variant) and whether the baseline meets
    the targets with its own liver."""
    competence = results.get("competence")
    if not competence:
        return []
    header = ["Arm", "Evaluation"] + [f"{label} (target {'>=' if up else '<='} {target:g})"
                                      for label, target, up in COMPETENCE_TARGETS.values()]
    rows = []
    for arm, variants in competence.items():
        for variant, figures in variants.items():
            rows.append([arm, VARIANT_NAMES.get(variant, variant)]
                        + [_fmt(figures.get(name), 1 if name == "false_positives_per_case" else 2)
                           for name in COMPETENCE_TARGETS])
    base = competence.get(results["stats"].get("baseline", "real"), {}).get("cases", {})
    missed = [label for name, (label, target, up) in COMPETENCE_TARGETS.items()
              if base.get(name) is None or not (base[name] >= target if up else base[name] <= target)]
    verdict = ("The baseline meets every target with its own liver, so the differences below are read "
               "against a competent model." if not missed else
               f"The baseline misses: {', '.join(missed)}. Differences to an incompetent baseline measure "
               "little; read them with that in mind.")
    return _table(header, rows) + ["", verdict]


def _table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table; the separator row is derived from the header, so the two agree."""
    def line(cells) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header)] + [line(row) for row in rows]


def _results_table(stats: dict) -> list[str]:
    base = stats.get("baseline", "real")
    header = ["Size bin (mm)", "Lesions", "Arm", "Sensitivity", "Sensitivity IoU>0.5", "Lesion Dice",
              f"Δ sensitivity vs {base} [95 % CI]", "Δ sens. IoU>0.5 [95 % CI]",
              "Δ lesion Dice [95 % CI]"]
    rows = []
    for b in BINS:
        for arm, per_bin in stats["arms"].items():
            diff = stats["differences"].get(arm, {}).get(b, {})
            rows.append([b, stats["n_lesions"][b], arm,
                         *(_mean_sd(per_bin[b][m]) for m in LESION_METRICS),
                         *(_ci(diff.get(m)) for m in LESION_METRICS)])
    return _table(header, rows)


def _case_table(stats: dict) -> list[str]:
    base = stats.get("baseline", "real")
    header = ["Arm", "Case Dice", "False positives per case", f"Δ case Dice vs {base} [95 % CI]",
              "Δ FPs per case [95 % CI]"]
    rows = []
    for arm, per_bin in stats["arms"].items():
        cells = per_bin[ALL_BIN]
        diff = stats["differences"].get(arm, {}).get(ALL_BIN, {})
        rows.append([arm, _mean_sd(cells["case_dice"]), _mean_sd(cells["false_positives_per_case"], 1),
                     _ci(diff.get("case_dice")), _ci(diff.get("false_positives_per_case"), 1)])
    return _table(header, rows)


def _runs_table(results: dict) -> list[str]:
    folds = len(results.get("data", {}).get("folds") or []) or 1
    summed = f" ({folds} folds together)" if folds > 1 else ""
    header = ["Arm", "Seed", f"Steps{summed}", f"Train time (s){summed}", "Eval time (s)", "Case Dice",
              "Lesions found"]
    rows = []
    for arm, by_seed in results.get("runs", {}).items():
        for seed, run in by_seed.items():
            summ = run.get("summary", {})
            rows.append([arm, seed, run.get("steps", "–"), _fmt(run.get("train_s"), 0),
                         _fmt(run.get("eval_s"), 0), _fmt(summ.get("mean_dice")),
                         f"{summ.get('detected', '–')}/{summ.get('n_lesions', '–')}"])
    return _table(header, rows)


def render_markdown(results: dict, figures: dict | None = None) -> str:
    """``results.md`` from the results dict (see :func:`write_report`)."""
    stats = results["stats"]
    cfg = results.get("config", {})
    out = [f"# Ablation: {results.get('name', cfg.get('name', ''))}", ""]
    verdicts = verdict_lines(stats)
    if verdicts:
        out += ["**Verdict per size bin** (lesion sensitivity, any overlap; paired bootstrap 95 % CI over "
                f"the {stats['n_lesions'][ALL_BIN]} test lesions):", "", *verdicts, ""]
    if cfg.get("description"):
        out += [cfg["description"], ""]
    data = results.get("data", {})
    if data:
        out += [f"**Data.** {data.get('summary', '')}", ""]
        for note in data.get("notes", []):
            out += [f"- {note}"]
        if data.get("notes"):
            out += [""]
    machine = results.get("machine", {})
    timings = results.get("timings", {})
    if machine or timings:
        out += [f"**Run.** {machine.get('summary', '')} Wall time of the last invocation "
                f"{_fmt(timings.get('total_s'), 0)} s (data {_fmt(timings.get('data_s'), 0)} s, "
                f"report {_fmt(timings.get('report_s'), 0)} s); training "
                f"{_fmt(timings.get('train_s'), 0)} s and evaluation {_fmt(timings.get('eval_s'), 0)} s "
                "summed over the runs (a run finished earlier keeps its own times)."
                + (" The finished runs were evaluated again from their saved models (`--reevaluate`), "
                   "with the post-processing below; their training is that of their first invocation."
                   if results.get("reevaluated_finished_runs") else ""), ""]
    competence = competence_lines(results)
    if competence:
        out += ["## Is the baseline competent?", "",
                "Mean over seeds; liver Dice averaged over test cases, tumour Dice global over them. "
                f"Post-processing (docs/ablation.md): {describe_postprocess(**cfg.get('postprocess', {}))}",
                "", *competence, ""]
    out += [
        "## Lesion-wise results per size bin",
        "",
        f"Mean ± sd over {len(stats['seeds'])} seed(s) ({', '.join(map(str, stats['seeds']))}). "
        f"Δ: difference of the arm to `{stats.get('baseline', 'real')}`, averaged over seeds, with "
        f"a paired bootstrap 95 % CI over the test lesions ({results.get('config', {}).get('bootstrap', '?')} "
        "resamples; the same lesions in every arm). Size = equivalent diameter of the ground-truth "
        "lesion. Lesion Dice is 0 for a missed lesion.",
        "",
        *_results_table(stats),
        "",
        "## Case-level results",
        "",
        "Case Dice on the tumour label; false positives = predicted tumour components that touch no "
        "ground-truth lesion. The CI resamples test cases (none with a single test case).",
        "",
        *_case_table(stats),
        "",
    ]
    for key, variant in (("stats_raw", "cases_raw"), ("stats_true_liver", "cases_true_liver")):
        if key in results:
            out += [f"## Beside the headline: {VARIANT_NAMES[variant]}", "", *_results_table(results[key]), ""]
    out += [evidence_paragraph(results), ""]
    if figures:
        out += ["## Figures", ""]
        for key, name in figures.items():
            out += [f"![{key}]({name})", ""]
    out += ["## Runs", "", *_runs_table(results), ""]
    return "\n".join(out)


def write_report(results: dict, out_dir, *, overlay_cases: dict | None = None,
                 overlay_predictions: dict | None = None, draw_figures: bool = True) -> dict:
    """Write ``results.json``, ``results.md`` and the figures into ``out_dir``.

    Args:
        results: the results dict; needs ``stats`` (from :func:`train.ablation.stats.summarise`),
            and uses ``name``, ``config``, ``data``, ``machine``, ``timings``, ``runs`` if present.
        overlay_cases: ``{case_id: Case}`` of the test cases, for the lesion overlays (optional).
        overlay_predictions: ``{arm: {case_id: label map}}`` of one seed per arm (optional).
        draw_figures: False rewrites only the JSON and Markdown and keeps ``results["figures"]``
            (after a first call drew them), e.g. to add the final wall time.

    Returns ``{"json": path, "markdown": path, "figures": {key: path}}``; ``results["figures"]``
    lists the figure file names (relative to ``out_dir``).
    """
    out_dir = Path(out_dir)
    if draw_figures:
        figures = {}
        for metric, name in FIGURES.items():
            plot_metric_by_bin(results["stats"], metric, out_dir / name)
            figures[metric] = name
        if overlay_cases and overlay_predictions:
            first_seed = {arm: next(iter(by_seed.values()))["evaluation"]
                          for arm, by_seed in results["runs"].items()
                          if by_seed and "evaluation" in next(iter(by_seed.values()))}
            evaluations = {arm: ev for arm, ev in first_seed.items() if arm in overlay_predictions}
            if plot_overlays(evaluations, overlay_cases, overlay_predictions, out_dir / OVERLAYS):
                figures["overlays"] = OVERLAYS
        results = dict(results, figures=figures)
    else:
        figures = dict(results.get("figures", {}))
    md = out_dir / "results.md"
    with atomic_output_path(md) as tmp:
        tmp.write_text(render_markdown(results, figures), encoding="utf-8")
    js = write_json_atomic(results, out_dir / "results.json")
    return {"json": js, "markdown": md, "figures": {k: out_dir / v for k, v in figures.items()}}
