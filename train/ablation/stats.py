"""Per-arm, per-size-bin statistics of an ablation and paired bootstrap CIs (numpy).

Input: ``runs[arm][seed]`` = the evaluation of one trained model on the test cases, as written to
``eval.json`` (``{"cases": [CaseResult.to_dict(), ...], ...}``, see docs/evaluation.md). Every arm
is evaluated on the same test cases, so every run holds the same ground-truth lesions: the
differences between arms are paired lesion by lesion.

Size bins are the evaluator's equivalent-diameter bins (``<10``, ``10-20``, ``>=20`` mm) plus
``all``. Lesion-level metrics per bin: ``sensitivity`` (any overlap), ``sensitivity_iou50`` (LiTS
IoU > 0.5 rule) and ``lesion_dice`` (mean per-lesion Dice, 0 for a missed lesion). Case-level
metrics (bin ``all`` only): ``case_dice`` and ``false_positives_per_case``.

Bootstrap of the difference of an arm to ``real``: the test lesions (or, for case-level metrics,
the test cases) are resampled with replacement; one resample applies to every seed, because the
lesions are the same in every seed; the difference is averaged over seeds. The interval is the
percentile interval of the resampled mean differences. Seeds are fixed, not resampled: the CI
reflects which lesions happened to be in the test set, not the spread between training seeds
(that is the ``sd`` over seeds, reported beside it).
"""

from __future__ import annotations

import numpy as np

from train.metrics import DIAMETER_BINS

ALL_BIN = "all"
BINS = (ALL_BIN,) + tuple(key for key, _, _ in DIAMETER_BINS)
LESION_METRICS = ("sensitivity", "sensitivity_iou50", "lesion_dice")
CASE_METRICS = ("case_dice", "false_positives_per_case")
CONFIDENCE = 0.95
_CHUNK = 256  # bootstrap resamples drawn at a time, to bound memory on large test sets


def lesion_table(evaluation: dict) -> dict[str, np.ndarray]:
    """The GT lesions of one run as arrays: key ("case/lesion_id"), diameter_mm and the metrics."""
    keys, diam, det, det50, dice = [], [], [], [], []
    for case in evaluation["cases"]:
        for les in case["lesions"]:
            keys.append(f"{case['case_id']}/{les['lesion_id']}")
            diam.append(les["diameter_mm"])
            det.append(float(les["detected"]))
            det50.append(float(les["detected_iou50"]))
            dice.append(float(les["dice"]))
    return {
        "key": np.asarray(keys, dtype=object),
        "diameter_mm": np.asarray(diam, dtype=float),
        "sensitivity": np.asarray(det, dtype=float),
        "sensitivity_iou50": np.asarray(det50, dtype=float),
        "lesion_dice": np.asarray(dice, dtype=float),
    }


def case_table(evaluation: dict) -> dict[str, np.ndarray]:
    """The test cases of one run as arrays: case_id, case_dice, false_positives_per_case."""
    cases = evaluation["cases"]
    return {
        "key": np.asarray([c["case_id"] for c in cases], dtype=object),
        "case_dice": np.asarray([c["dice"] for c in cases], dtype=float),
        "false_positives_per_case": np.asarray([c["false_positives"] for c in cases], dtype=float),
    }


def bin_mask(diameters_mm: np.ndarray, bin_key: str) -> np.ndarray:
    """Which lesions fall in ``bin_key`` (lower bound inclusive, as the evaluator bins them)."""
    if bin_key == ALL_BIN:
        return np.ones(len(diameters_mm), dtype=bool)
    for key, low, high in DIAMETER_BINS:
        if key == bin_key:
            inside = diameters_mm >= low
            return inside if high is None else inside & (diameters_mm < high)
    raise ValueError(f"unknown size bin {bin_key!r}; bins: {list(BINS)}")


def mean_sd(values) -> dict:
    """``{"per_seed", "mean", "sd"}`` over seeds; sd is the sample sd (None with one seed or none)."""
    vals = [None if v is None else float(v) for v in values]
    finite = [v for v in vals if v is not None]
    mean = float(np.mean(finite)) if finite else None
    sd = float(np.std(finite, ddof=1)) if len(finite) >= 2 else None
    return {"per_seed": vals, "mean": mean, "sd": sd}


def paired_bootstrap_ci(arm_values, base_values, *, n_boot: int = 2000, seed: int = 0,
                        confidence: float = CONFIDENCE) -> dict:
    """Paired bootstrap CI of ``mean(arm) - mean(base)``, averaged over seeds.

    Args:
        arm_values, base_values: arrays ``(seeds, units)`` (or ``(units,)`` for one seed): one value
            per seed and paired unit (lesion or case); the same unit in the same column.
        n_boot: number of resamples of the units (with replacement; one resample for all seeds).
        seed: seed of the numpy Generator: the same inputs and seed give the same interval.
        confidence: coverage of the percentile interval.

    Returns:
        ``{"difference", "low", "high", "n_units", "n_boot", "confidence"}``; the bounds are None
        when there is no unit, or one unit (no variation to resample).
    """
    arm = np.atleast_2d(np.asarray(arm_values, dtype=float))
    base = np.atleast_2d(np.asarray(base_values, dtype=float))
    if arm.shape != base.shape:
        raise ValueError(f"paired values must have the same shape; got {arm.shape} and {base.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    n_units = arm.shape[1]
    out = {"difference": None, "low": None, "high": None, "n_units": int(n_units),
           "n_boot": int(n_boot), "confidence": confidence}
    if n_units == 0:
        return out
    # Averaging over seeds first is exact: the same resample applies to every seed.
    diff = (arm - base).mean(axis=0)
    out["difference"] = float(diff.mean())
    if n_units < 2:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        stop = min(start + _CHUNK, n_boot)
        idx = rng.integers(0, n_units, size=(stop - start, n_units))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    out["low"], out["high"] = float(low), float(high)
    return out


def _stack(tables: list[dict], metric: str, mask: np.ndarray) -> np.ndarray:
    return np.stack([t[metric][mask] for t in tables])


def _check_same_units(tables: list[dict], what: str, where: str) -> None:
    ref = tables[0]["key"]
    for t in tables[1:]:
        if len(t["key"]) != len(ref) or not all(a == b for a, b in zip(t["key"], ref)):
            raise ValueError(
                f"the runs were not evaluated on the same {what} ({where}); a paired comparison "
                f"needs the same test set in every run"
            )


def summarise(runs: dict, *, baseline: str = "real", n_boot: int = 2000, seed: int = 0) -> dict:
    """Statistics of an ablation from ``runs[arm][seed] = evaluation dict``.

    Returns a JSON-ready dict::

        {"bins": [...], "seeds": [...], "n_cases": int, "n_lesions": {bin: int},
         "arms": {arm: {bin: {metric: {"per_seed", "mean", "sd"}}}},
         "differences": {arm: {bin: {metric: {"difference", "low", "high", ...}}}}}

    Case-level metrics live under bin ``all``. ``differences`` holds every arm except the baseline.
    """
    if baseline not in runs:
        raise ValueError(f"the baseline arm {baseline!r} has no run; arms: {sorted(runs)}")
    seeds = sorted(runs[baseline])
    for arm, by_seed in runs.items():
        if sorted(by_seed) != seeds:
            raise ValueError(f"arm {arm!r} has seeds {sorted(by_seed)}, baseline has {seeds}")
    lesions = {arm: [lesion_table(runs[arm][s]) for s in seeds] for arm in runs}
    cases = {arm: [case_table(runs[arm][s]) for s in seeds] for arm in runs}
    everything = [t for ts in lesions.values() for t in ts]
    _check_same_units(everything, "ground-truth lesions", "lesion keys differ")
    _check_same_units([t for ts in cases.values() for t in ts], "test cases", "case ids differ")

    diameters = lesions[baseline][0]["diameter_mm"]
    masks = {b: bin_mask(diameters, b) for b in BINS}
    n_cases = int(len(cases[baseline][0]["key"]))
    arms: dict[str, dict] = {}
    differences: dict[str, dict] = {}
    out = {
        "bins": list(BINS),
        "baseline": baseline,
        "seeds": seeds,
        "n_cases": n_cases,
        "n_lesions": {b: int(m.sum()) for b, m in masks.items()},
        "arms": arms,
        "differences": differences,
    }
    for arm in runs:
        per_bin = {}
        for b, m in masks.items():
            per_bin[b] = {
                metric: mean_sd([t[metric][m].mean() if m.any() else None for t in lesions[arm]])
                for metric in LESION_METRICS
            }
        for metric in CASE_METRICS:
            per_bin[ALL_BIN][metric] = mean_sd([t[metric].mean() for t in cases[arm]])
        arms[arm] = per_bin
    for arm in runs:
        if arm == baseline:
            continue
        diffs = {}
        for b, m in masks.items():
            diffs[b] = {
                metric: paired_bootstrap_ci(_stack(lesions[arm], metric, m),
                                            _stack(lesions[baseline], metric, m),
                                            n_boot=n_boot, seed=seed)
                for metric in LESION_METRICS
            }
        every_case = np.ones(n_cases, dtype=bool)
        for metric in CASE_METRICS:
            diffs[ALL_BIN][metric] = paired_bootstrap_ci(
                _stack(cases[arm], metric, every_case), _stack(cases[baseline], metric, every_case),
                n_boot=n_boot, seed=seed)
        differences[arm] = diffs
    return out
