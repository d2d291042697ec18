"""Figures of a realism report: feature histograms, a lesion gallery and the ROC curve (PNG).

matplotlib is imported inside each function with the non-interactive Agg backend, so importing
the package needs no display and costs nothing when no figure is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .compare import SIZE_CLASSES, LesionSample
from .features import FEATURE_NAMES, UNITS

WINDOW_HU = (-60.0, 190.0)  # W 250 / L 65, the window of the project's other galleries
REAL_COLOUR, SYNTHETIC_COLOUR = "#1f77b4", "#d62728"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def feature_histograms(table: dict, path, *, features=FEATURE_NAMES, distances: dict | None = None) -> Path:
    """Overlaid density histograms of each feature, real against synthetic, on shared bins.

    ``distances`` (``compare_tables(...)["all"]``) adds the KS statistic and the Wasserstein
    distance to each panel's title.
    """
    plt = _pyplot()
    columns = 4
    rows = math.ceil(len(features) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.7 * rows))
    real = table["source"] == "real"
    for axis, name in zip(axes.ravel(), features):
        values = table[name]
        finite = np.isfinite(values)
        if not finite.any():
            axis.set_visible(False)
            continue
        # Bins over the 1-99 % range of both samples: one outlier does not squash the rest.
        low, high = np.percentile(values[finite], [1, 99])
        bins = np.linspace(low, high if high > low else low + 1.0, 21)
        for mask, colour, label in ((real, REAL_COLOUR, "real"), (~real, SYNTHETIC_COLOUR, "synthetic")):
            sample = np.clip(values[finite & mask], bins[0], bins[-1])
            axis.hist(sample, bins=bins, density=True, alpha=0.45, color=colour,
                      label=f"{label} (n={sample.size})")
        unit = f" [{UNITS[name]}]" if UNITS[name] else ""
        axis.set_xlabel(name + unit, fontsize=8)
        axis.tick_params(labelsize=7)
        if distances is not None and name in distances:
            d = distances[name]
            axis.set_title(f"KS {d['ks']:.2f}  W {d['wasserstein']:.3g}", fontsize=8)
    for axis in axes.ravel()[len(features):]:
        axis.set_visible(False)
    axes.ravel()[0].legend(fontsize=7)
    figure.suptitle("Lesion features: real (blue) vs synthetic (red), all size classes", fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def pick_gallery(samples: list[LesionSample], *, per_class: int = 3, seed=0) -> dict[str, dict[str, list]]:
    """Up to ``per_class`` real and synthetic lesions of each size class, drawn at random."""
    rng = np.random.default_rng(seed)
    picked = {}
    for size in SIZE_CLASSES:
        row = {}
        for source in ("real", "synthetic"):
            pool = [s for s in samples if s.size_class == size and s.source == source]
            chosen: np.ndarray | list[int] = (
                rng.choice(len(pool), size=min(per_class, len(pool)), replace=False) if pool else [])
            row[source] = [pool[i] for i in sorted(chosen)]
        if row["real"] or row["synthetic"]:
            picked[size] = row
    return picked


def lesion_gallery(samples: list[LesionSample], path, *, outlined: bool, per_class: int = 3, seed=0,
                   window_hu=WINDOW_HU, title: str = "") -> Path:
    """Axial slices through each lesion's centre, real on the left, synthetic on the right.

    One row per size class; every panel at the same HU window, with a field of view of three
    diameters (at least 20 mm) around the lesion. ``outlined`` draws the label's contour; ``title``
    (the host, for instance) is added to the figure's title.
    """
    plt = _pyplot()
    picked = pick_gallery(samples, per_class=per_class, seed=seed)
    rows = max(len(picked), 1)
    columns = 2 * per_class
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.0 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for r, (size, row) in enumerate(picked.items()):
        for source, first in (("real", 0), ("synthetic", per_class)):
            for c, sample in enumerate(row[source]):
                axis = axes[r, first + c]
                _show_lesion(axis, sample, outlined=outlined, window_hu=window_hu)
                axis.set_title(f"{source} {size}\n{sample.diameter_mm:.1f} mm", fontsize=7,
                               color=REAL_COLOUR if source == "real" else SYNTHETIC_COLOUR)
    label = "with label outlines" if outlined else "unlabelled"
    figure.suptitle(f"{title + ': ' if title else ''}real (left) and synthetic (right) lesions, axial, window "
                    f"{window_hu[0]:g} to {window_hu[1]:g} HU, {label}", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def _show_lesion(axis, sample: LesionSample, *, outlined: bool, window_hu) -> None:
    spacing = sample.spacing
    index = np.argwhere(sample.lesion)
    centre = np.rint(index.mean(axis=0)).astype(int)
    # The axial slice through the centroid, or the lesion's fullest slice if the centroid misses it.
    z = centre[2] if sample.lesion[:, :, centre[2]].any() else int(np.argmax(sample.lesion.sum(axis=(0, 1))))
    half_mm = max(1.5 * sample.diameter_mm, 10.0)
    window = [slice(max(c - int(round(half_mm / s)), 0), c + int(round(half_mm / s)) + 1)
              for c, s in zip(centre[:2], spacing[:2])]
    image = sample.volume[window[0], window[1], z]
    axis.imshow(image.T, cmap="gray", vmin=window_hu[0], vmax=window_hu[1], origin="lower",
                aspect=spacing[1] / spacing[0], interpolation="nearest")
    if outlined:
        axis.contour(sample.lesion[window[0], window[1], z].T.astype(float), levels=[0.5],
                     colors="yellow", linewidths=0.8, origin="lower")


def roc_figure(curves: dict[str, tuple], path, *, title: str = "Real-vs-synthetic classifier (out-of-fold)") -> Path:
    """ROC curves of the real-vs-synthetic classifiers: ``{name: (fpr, tpr, auc, (low, high))}``."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    for name, (fpr, tpr, auc, ci) in curves.items():
        axis.plot(fpr, tpr, label=f"{name}: AUC {auc:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="indistinguishable (0.5)")
    axis.set_xlabel("synthetic called real (false-positive rate)", fontsize=8)
    axis.set_ylabel("real called real (true-positive rate)", fontsize=8)
    axis.legend(fontsize=7, loc="lower right")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
