"""PNG previews of inserted lesions: three orthogonal slices per lesion with contours.

Display convention (radiological, as a CT reader expects): arrays are ``(X, Y, Z)`` in RAS+, so
each 2-D slice is transposed for display (rows = vertical axis) and drawn with ``origin="lower"``;
the patient's right is on the viewer's left in axial and coronal views, anterior is up in axial
views and to the left in sagittal views, superior is up in coronal and sagittal views. Orientation
letters are printed on every panel. Panels are drawn in mm around the slice centre with equal
aspect, so anisotropic voxels (e.g. 0.7 x 0.7 x 5 mm) keep their physical proportions.

matplotlib is imported inside the functions (object-oriented API with the Agg canvas, no pyplot,
no global backend switch), so ``import synth`` does not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .labels import Label
from .validation import check_spacing

__all__ = ["save_lesion_preview", "save_overview", "window_caption", "MAX_PREVIEW_ROWS"]

MAX_PREVIEW_ROWS = 8
DEFAULT_WINDOW = (-60.0, 190.0)  # HU: abdominal soft-tissue window, W 250 / L 65
MIN_FIELD_MM = 40.0
FIELD_PER_DIAMETER = 3.0
LESION_COLOUR = "#ff3b30"
LIVER_COLOUR = "#30d158"
PANEL_INCH = 2.7


@dataclass(frozen=True)
class _View:
    """One orthogonal view: which array axis is fixed, which are drawn, and their labels."""

    name: str
    fixed_axis: int
    horizontal_axis: int
    vertical_axis: int
    left_right: tuple[str, str]  # orientation letters at the left and right edges
    bottom_top: tuple[str, str]  # letters at the bottom and top edges
    flip_horizontal: bool  # radiological display: larger coordinate drawn on the left


_VIEWS = (
    _View("axial", 2, 0, 1, ("R", "L"), ("P", "A"), True),
    _View("coronal", 1, 0, 2, ("R", "L"), ("I", "S"), True),
    _View("sagittal", 0, 1, 2, ("A", "P"), ("I", "S"), True),
)


def window_caption(window: Sequence[float]) -> str:
    """``"window [-60, 190] HU (W 250 / L 65)"`` for a (low, high) HU window."""
    low, high = float(window[0]), float(window[1])
    return f"window [{low:g}, {high:g}] HU (W {high - low:g} / L {(low + high) / 2:g})"


def _check_inputs(volume: np.ndarray, label: np.ndarray, spacing: Sequence[float], window) -> None:
    if volume.ndim != 3 or volume.shape != label.shape:
        raise ValueError(
            f"volume and label must be 3-D arrays of one shape, got {volume.shape} and "
            f"{label.shape}"
        )
    check_spacing(spacing)
    if len(window) != 2 or not float(window[0]) < float(window[1]):
        raise ValueError(f"window must be (low, high) HU with low < high, got {tuple(window)}")


def _crop_ranges(
    centre: Sequence[int], shape: Sequence[int], spacing: Sequence[float], field_mm: float
) -> list[range]:
    """Per-axis voxel ranges covering ``field_mm`` around ``centre``, clipped to the array."""
    ranges = []
    for c, n, s in zip(centre, shape, spacing):
        half = int(np.ceil(field_mm / 2.0 / s))
        ranges.append(range(max(c - half, 0), min(c + half + 1, n)))
    return ranges


def _mm_coords(index_range: range, centre: int, step_mm: float) -> np.ndarray:
    """Pixel-centre positions in mm relative to the slice centre."""
    return (np.arange(index_range.start, index_range.stop) - centre) * step_mm


def _slice(array: np.ndarray, view: _View, centre: Sequence[int], ranges: list[range]):
    """The 2-D slice of ``array`` for ``view``, indexed (horizontal, vertical)."""
    index: list[Any] = [slice(r.start, r.stop) for r in ranges]
    index[view.fixed_axis] = int(centre[view.fixed_axis])
    return array[tuple(index)]  # remaining axes keep (X, Y, Z) order = (horizontal, vertical)


def _draw_contour(ax, h: np.ndarray, v: np.ndarray, mask2d: np.ndarray, colour: str) -> None:
    # contour() warns on a constant field, so draw only where the boundary crosses this slice.
    if mask2d.any() and not mask2d.all():
        ax.contour(h, v, mask2d.T.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)


def _orientation_letters(ax, view: _View) -> None:
    style = dict(color="yellow", fontsize=7, transform=ax.transAxes, fontweight="bold")
    ax.text(0.02, 0.5, view.left_right[0], ha="left", va="center", **style)
    ax.text(0.98, 0.5, view.left_right[1], ha="right", va="center", **style)
    ax.text(0.5, 0.02, view.bottom_top[0], ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, view.bottom_top[1], ha="center", va="top", **style)


def _draw_view(
    ax,
    volume: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    centre: Sequence[int],
    ranges: list[range],
    view: _View,
    window: Sequence[float],
) -> None:
    """Draw one orthogonal slice (grey CT, liver and tumour contours) in mm around ``centre``."""
    image = _slice(volume, view, centre, ranges)
    lab = _slice(label, view, centre, ranges)
    hr, vr = ranges[view.horizontal_axis], ranges[view.vertical_axis]
    h = _mm_coords(hr, centre[view.horizontal_axis], spacing[view.horizontal_axis])
    v = _mm_coords(vr, centre[view.vertical_axis], spacing[view.vertical_axis])
    hs, vs = spacing[view.horizontal_axis], spacing[view.vertical_axis]
    # Extent is given by pixel edges so the image and the contours (pixel centres) line up.
    extent = (h[0] - hs / 2, h[-1] + hs / 2, v[0] - vs / 2, v[-1] + vs / 2)
    ax.imshow(
        image.T,  # (horizontal, vertical) -> rows are the vertical axis
        cmap="gray",
        vmin=float(window[0]),
        vmax=float(window[1]),
        origin="lower",
        extent=extent,
        interpolation="nearest",
        aspect="equal",  # axes are in mm, so equal aspect is the physical aspect ratio
    )
    _draw_contour(ax, h, v, lab >= Label.LIVER, LIVER_COLOUR)
    _draw_contour(ax, h, v, lab == 2, LESION_COLOUR)
    if view.flip_horizontal:
        ax.invert_xaxis()
    _orientation_letters(ax, view)
    _scale_bar(ax, extent, flipped=view.flip_horizontal)
    ax.set_title(view.name, fontsize=8)
    # No tick labels: the scale bar gives the size, and tick layout is most of the drawing time.
    ax.set_xticks([])
    ax.set_yticks([])


def _scale_bar(ax, extent: tuple[float, float, float, float], *, flipped: bool) -> None:
    """A 10 mm bar (5 mm in fields narrower than 25 mm) near the bottom-right corner."""
    width = abs(extent[1] - extent[0])
    height = extent[3] - extent[2]
    length = 10.0 if width >= 25.0 else 5.0
    margin_h, margin_v = 0.06 * width, 0.08 * height
    # Display-right is the smallest coordinate when the horizontal axis is inverted.
    if flipped:
        end = extent[0] + margin_h
        start = end + length
    else:
        end = extent[1] - margin_h
        start = end - length
    y = extent[2] + margin_v
    ax.plot([start, end], [y, y], color="white", linewidth=2, solid_capstyle="butt")
    ax.text((start + end) / 2, y + 0.03 * height, f"{length:g} mm", color="white", fontsize=6,
            ha="center", va="bottom")


def _new_figure(n_rows: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Constrained layout keeps the figure title, row titles and legend from overlapping.
    fig = Figure(
        figsize=(3 * PANEL_INCH, n_rows * (PANEL_INCH + 0.35) + 0.7), dpi=100, layout="constrained"
    )
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: str | os.PathLike) -> Path:
    from .io import atomic_output_path

    with atomic_output_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _legend(fig) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=LESION_COLOUR, label="tumour (label 2)"),
        Line2D([], [], color=LIVER_COLOUR, label="liver (label >= 1)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7, frameon=False)


def _lesion_row_title(lesion: Any) -> str:
    return (
        f"lesion {lesion.index}: {float(lesion.diameter_mm):.1f} mm ({lesion.size_class}), "
        f"{lesion.phenotype}"
    )


def _clip_centre(centre: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
    x, y, z = (int(np.clip(int(c), 0, n - 1)) for c, n in zip(centre, shape))
    return x, y, z


def save_lesion_preview(
    volume: np.ndarray,
    label: np.ndarray,
    lesions: Sequence[Any],
    spacing: Sequence[float],
    path: str | os.PathLike,
    *,
    window: Sequence[float] = DEFAULT_WINDOW,
) -> Path:
    """Write a PNG with axial, coronal and sagittal slices through each lesion centre.

    One row per lesion (at most :data:`MAX_PREVIEW_ROWS`; the title says when rows were left out),
    each panel cropped to about 3x the lesion diameter (at least a 40 mm field), tumour and liver
    outlined. With no lesions this falls back to :func:`save_overview`. The file is written
    atomically.

    Args:
        volume: CT in HU, ``(X, Y, Z)``.
        label: uint8 labels, 0 background / 1 liver / 2 tumour, same shape.
        lesions: records with ``index``, ``center_voxel`` (3 ints), ``diameter_mm``,
            ``phenotype`` and ``size_class``.
        spacing: voxel size in mm along X, Y, Z.
        path: output PNG path.
        window: display window (low, high) in HU.

    Returns:
        The path written.
    """
    volume, label = np.asarray(volume), np.asarray(label)
    _check_inputs(volume, label, spacing, window)
    if len(lesions) == 0:
        return save_overview(volume, label, spacing, path, window=window)
    shown = list(lesions)[:MAX_PREVIEW_ROWS]  # read at call time (tests lower it)
    fig = _new_figure(len(shown))
    title = f"{len(lesions)} inserted lesion{'s' if len(lesions) != 1 else ''} | "
    if len(lesions) > len(shown):
        title = f"first {len(shown)} of {len(lesions)} lesions shown | "
    fig.suptitle(title + window_caption(window), fontsize=9)
    rows = fig.subfigures(len(shown), 1, squeeze=False)[:, 0]
    for row, lesion in zip(rows, shown):
        centre = _clip_centre(lesion.center_voxel, volume.shape)
        field_mm = max(FIELD_PER_DIAMETER * float(lesion.diameter_mm), MIN_FIELD_MM)
        ranges = _crop_ranges(centre, volume.shape, spacing, field_mm)
        row.suptitle(_lesion_row_title(lesion), fontsize=8)
        for ax, view in zip(row.subplots(1, 3), _VIEWS):
            _draw_view(ax, volume, label, spacing, centre, ranges, view, window)
    _legend(fig)
    return _save_png(fig, path)


def _liver_centre(label: np.ndarray) -> tuple[int, int, int]:
    """Centroid voxel of the liver (label >= 1), or the array centre if there is no liver."""
    coords = np.nonzero(label >= Label.LIVER)
    if len(coords[0]) == 0:
        x, y, z = (n // 2 for n in label.shape)
    else:
        x, y, z = (int(round(float(c.mean()))) for c in coords)
    return x, y, z


def save_overview(
    volume: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    path: str | os.PathLike,
    *,
    window: Sequence[float] = DEFAULT_WINDOW,
    title: str = "no lesions",
) -> Path:
    """Write a PNG with full axial, coronal and sagittal slices through the liver centroid.

    For cases without inserted lesions; same display conventions and contours as
    :func:`save_lesion_preview`. The file is written atomically.
    """
    volume, label = np.asarray(volume), np.asarray(label)
    _check_inputs(volume, label, spacing, window)
    centre = _liver_centre(label)
    ranges = [range(0, n) for n in volume.shape]
    fig = _new_figure(1)
    fig.suptitle(f"{title} | {window_caption(window)}", fontsize=9)
    row = fig.subfigures(1, 1)
    row.suptitle(f"through the liver centre, voxel {centre}", fontsize=8)
    for ax, view in zip(row.subplots(1, 3), _VIEWS):
        _draw_view(ax, volume, label, spacing, centre, ranges, view, window)
    _legend(fig)
    return _save_png(fig, path)
