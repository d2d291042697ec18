"""PNG figures of an ablation (matplotlib, Agg backend): bars per size bin, lesion overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synth.io import atomic_output_path

from .stats import BINS

# Soft-tissue window for the overlays: width 250 HU, level 65 HU (liver and its lesions).
WINDOW_WIDTH_HU = 250.0
WINDOW_LEVEL_HU = 65.0
OVERLAY_HALF_WIDTH_MM = 25.0  # the overlay shows a 50 mm square around the lesion
METRIC_TITLES = {
    "sensitivity": "Detection sensitivity (any overlap)",
    "sensitivity_iou50": "Detection sensitivity (IoU > 0.5)",
    "lesion_dice": "Mean per-lesion Dice",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically (a reader never sees half a figure)."""
    with atomic_output_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_metric_by_bin(stats: dict, metric: str, path, *, title: str | None = None) -> Path:
    """Grouped bars: ``metric`` per size bin (x) and arm (bars), error bars = sd over seeds.

    ``stats`` is :func:`train.ablation.stats.summarise`'s output. Bins without lesions are left
    empty; the number of test lesions is written under each bin. When every value is 0 (or there
    is none), the plot says so in words instead of showing empty axes.
    """
    plt = _pyplot()
    arms = list(stats["arms"])
    bins = [b for b in BINS if b in stats["n_lesions"]]
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(bins))
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(bins), 3.6), dpi=110)
    for i, arm in enumerate(arms):
        means = [stats["arms"][arm][b][metric]["mean"] for b in bins]
        sds = [stats["arms"][arm][b][metric]["sd"] for b in bins]
        heights = [np.nan if m is None else m for m in means]
        errs = [0.0 if s is None else s for s in sds]
        ax.bar(x + (i - (len(arms) - 1) / 2) * width, heights, width, yerr=errs, capsize=3,
               label=arm)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{b}\n(n={stats['n_lesions'][b]})" for b in bins])
    ax.set_xlabel("equivalent lesion diameter, mm (n = test lesions)")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel(metric.replace("_", " "))
    seeds = len(stats.get("seeds", []))
    ax.set_title(title or f"{METRIC_TITLES.get(metric, metric)}; mean ± sd over {seeds} seed(s)",
                 fontsize=9)
    values = [stats["arms"][arm][b][metric]["mean"] for arm in arms for b in bins]
    if not any(v for v in values if v is not None):
        ax.text(0.5, 0.5, f"every value is 0: no arm scored on {metric.replace('_', ' ')} in any size bin",
                transform=ax.transAxes, ha="center", va="center", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "0.6"})
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        return _save_png(fig, path)
    finally:
        plt.close(fig)


def _lesion_view(lesion_labels: np.ndarray, lesion_id: int, spacing, half_width_mm: float):
    """(z index, crop box, GT lesion mask on the crop) on the axial slice where the lesion's area
    is largest; the box reaches ``half_width_mm`` (mm) from the lesion's centre in x and y.
    None when ``lesion_id`` is not among the GT components ``lesion_labels``."""
    where = lesion_labels == lesion_id
    if not where.any():
        return None
    z = int(np.argmax(where.sum(axis=(0, 1))))
    xs, ys = np.nonzero(where[:, :, z])
    cx, cy = int(round(xs.mean())), int(round(ys.mean()))
    hx = max(4, int(round(half_width_mm / spacing[0])))
    hy = max(4, int(round(half_width_mm / spacing[1])))
    box = (slice(max(cx - hx, 0), cx + hx), slice(max(cy - hy, 0), cy + hy))
    return z, box, where[box + (z,)]


def pick_overlay_lesions(evaluation: dict, *, per_kind: int = 2, max_diameter_mm: float = 20.0):
    """Small GT lesions to show from one run: up to ``per_kind`` found and ``per_kind`` missed.

    Returns ``[(case_id, lesion dict, found)]``, smallest first within each kind. Lesions below
    ``max_diameter_mm`` are preferred; when a kind has none, its smallest lesions of any size.
    """
    rows = [(c["case_id"], les) for c in evaluation["cases"] for les in c["lesions"]]
    rows.sort(key=lambda r: r[1]["diameter_mm"])
    small = [r for r in rows if r[1]["diameter_mm"] < max_diameter_mm]

    def kind(detected: bool):
        # Small lesions of this kind first; else the smallest of this kind of any size, so that a
        # model that found only large lesions still shows what "found" looks like.
        pool = [r for r in small if r[1]["detected"] == detected]
        pool = pool or [r for r in rows if r[1]["detected"] == detected]
        return [(c, les, detected) for c, les in pool[:per_kind]]

    return kind(True) + kind(False)


def plot_overlays(evaluations: dict, cases: dict, predictions: dict, path, *,
                  per_kind: int = 2) -> Path | None:
    """Axial overlays of small test lesions found and missed, one row per arm.

    Args:
        evaluations: ``{arm: evaluation dict}`` (one seed per arm, e.g. the first).
        cases: ``{case_id: Case}`` of the test cases (image in HU, label 0/1/2, spacing mm).
        predictions: ``{arm: {case_id: uint8 label map}}`` of the same runs.
        path: PNG to write.

    The image is shown with a W 250 / L 65 HU window; green contour = ground-truth lesion,
    dashed red contour = predicted tumour. Returns the path, or None when no test lesion exists.
    """
    from synth.labels import Label
    from train.metrics import components

    plt = _pyplot()
    picks = {arm: pick_overlay_lesions(ev, per_kind=per_kind) for arm, ev in evaluations.items()}
    picks = {arm: p for arm, p in picks.items() if p}
    if not picks:
        return None
    ncol = max(len(p) for p in picks.values())
    fig, axes = plt.subplots(len(picks), ncol, figsize=(2.3 * ncol, 2.5 * len(picks)), dpi=110,
                             squeeze=False)
    vmin, vmax = WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2, WINDOW_LEVEL_HU + WINDOW_WIDTH_HU / 2
    # GT lesion components per test case, labelled once: every arm shows lesions of the same cases.
    lesion_labels: dict = {}
    for row, (arm, chosen) in enumerate(picks.items()):
        for col in range(ncol):
            ax = axes[row, col]
            ax.set_axis_off()
            if col >= len(chosen):
                continue
            case_id, lesion, found = chosen[col]
            case = cases[case_id]
            if case_id not in lesion_labels:
                lesion_labels[case_id] = components(np.asarray(case.label) == Label.TUMOR)[0]
            view = _lesion_view(lesion_labels[case_id], lesion["lesion_id"], case.spacing,
                                OVERLAY_HALF_WIDTH_MM)
            if view is None:
                continue
            z, box, gt2d = view
            img = np.asarray(case.image)[box + (z,)]
            pred2d = np.asarray(predictions[arm][case_id])[box + (z,)] == Label.TUMOR
            sx, sy = case.spacing[0], case.spacing[1]
            # Transpose so that axis 0 (x) runs left-right on screen; aspect keeps mm square.
            ax.imshow(img.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower",
                      aspect=sy / sx, interpolation="nearest")
            if gt2d.any():
                ax.contour(gt2d.T.astype(float), levels=[0.5], colors="lime", linewidths=2.0)
            if pred2d.any():
                ax.contour(pred2d.T.astype(float), levels=[0.5], colors="red", linewidths=1.0,
                           linestyles="dashed")
            ax.set_title(f"{'found' if found else 'missed'} {lesion['diameter_mm']:.1f} mm\n"
                         f"Dice {lesion['dice']:.2f}", fontsize=7)
        axes[row, 0].text(-0.08, 0.5, arm, transform=axes[row, 0].transAxes, rotation=90,
                          ha="right", va="center", fontsize=8)
    fig.suptitle("Small test lesions\ngreen: ground truth, dashed red: prediction\n(W 250 / L 65 HU)",
                 fontsize=8)
    fig.tight_layout()
    try:
        return _save_png(fig, path)
    finally:
        plt.close(fig)
