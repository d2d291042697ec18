"""Write docs/figures/phantom.png: the default procedural phantom in three orthogonal views.

Top row: axial, coronal and sagittal slices through the liver at an abdominal window
(W 400 / L 40). Bottom row: the same slices at a narrow liver window (W 150 / L 110) with the liver
outline (green) and the intrahepatic vessels (yellow) drawn over them.

Display follows the radiological convention: the subject's right on the viewer's left in axial and
coronal views, anterior up in axial views and to the left in sagittal views, superior up. Slices are
drawn in mm, so anisotropic voxels keep their physical proportions.

Run from the repository root:  python docs/figures/make_phantom_figure.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from synth.phantom import _build, _validate  # noqa: E402  (internal maps)
from synth.phantom.tissues import KIDNEY_CORTEX  # noqa: E402

SHAPE = (224, 176, 80)
SPACING = (1.6, 1.6, 2.5)
SEED = 0
WINDOW = (400.0, 40.0)  # W / L, abdomen
LIVER_WINDOW = (150.0, 110.0)
OUT = Path(__file__).resolve().parent / "phantom.png"


def _views(volume, centre):
    """(name, 2-D image rows=vertical, horizontal axis, vertical axis, letters) per view."""
    i, j, k = centre
    return [
        # axial: horizontal x with the subject's right on the left, vertical y anterior up
        ("axial", lambda a: a[:, :, k], 0, 1, ("R", "L", "A", "P")),
        # coronal: horizontal x (right on the left), vertical z superior up
        ("coronal", lambda a: a[:, j, :], 0, 2, ("R", "L", "S", "I")),
        # sagittal: horizontal y with anterior on the left, vertical z superior up
        ("sagittal", lambda a: a[i, :, :], 1, 2, ("A", "P", "S", "I")),
    ]


def _extent(shape, spacing, h_axis, v_axis):
    """imshow extent in world mm (voxel edges) for the two displayed axes."""
    half = [(n * s) / 2 for n, s in zip(shape, spacing)]
    return (-half[h_axis], half[h_axis], -half[v_axis], half[v_axis])


def main() -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shape, spacing, lesions, seed_seq = _validate(SHAPE, SPACING, 0, SEED)
    parts = _build(shape, spacing, lesions, seed_seq)
    volume, label, vessels = parts.volume, parts.label, parts.vessels

    # Slices through the liver that also show the kidneys: sagittal through the liver's centre of
    # mass, axial at the level with the most vessel among those showing both kidneys, coronal at
    # the depth where liver area times kidney area is largest.
    centre = [int(round(c)) for c in np.argwhere(label > 0).mean(axis=0)]
    kidney = parts.tissue == KIDNEY_CORTEX
    mid_x = shape[0] // 2
    both_kidneys = kidney[:mid_x].any(axis=(0, 1)) & kidney[mid_x:].any(axis=(0, 1))
    centre[2] = int(np.argmax(vessels.sum(axis=(0, 1)) * both_kidneys))
    centre[1] = int(np.argmax((label > 0).sum(axis=(0, 2)) * kidney.sum(axis=(0, 2))))

    fig = Figure(figsize=(14, 9.6), dpi=130)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3, gridspec_kw={"hspace": 0.16, "wspace": 0.08})
    for col, (name, take, h, v, letters) in enumerate(_views(volume, centre)):
        extent = _extent(shape, spacing, h, v)
        for row, (width, level) in enumerate((WINDOW, LIVER_WINDOW)):
            ax = axes[row, col]
            img = take(volume).T  # rows = vertical axis
            ax.imshow(img, cmap="gray", vmin=level - width / 2, vmax=level + width / 2,
                      origin="lower", extent=extent, interpolation="nearest")
            ax.set_title(f"{name}  (W {width:.0f} / L {level:.0f})", fontsize=10)
            # +x (Right) and +y (Anterior) grow to the viewer's left: radiological display.
            ax.set_xlim(extent[1], extent[0])
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 1:
                for mask, colour in ((take(label) > 0, "#30d158"), (take(vessels), "#ffd60a")):
                    ax.contour(mask.T.astype(float), levels=[0.5], colors=colour,
                               linewidths=0.8, origin="lower", extent=extent)
            for text, pos in zip(letters, ((0.02, 0.5), (0.98, 0.5), (0.5, 0.97), (0.5, 0.02))):
                ax.text(*pos, text, transform=ax.transAxes, color="#ff9f0a", fontsize=9,
                        ha="center", va="center")
    fig.suptitle(
        f"make_phantom(shape={shape}, spacing={spacing}, seed={SEED}): slices through the liver "
        f"at voxel {tuple(centre)}\n"
        "top: abdominal window W 400 / L 40;  bottom: liver window W 150 / L 110 with liver "
        "(green) and intrahepatic vessel (yellow) outlines",
        fontsize=11,
    )
    fig.savefig(OUT, bbox_inches="tight", facecolor="white")
    return OUT


if __name__ == "__main__":
    print(main())
