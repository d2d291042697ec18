"""The heuristic painter: a lesion's HU change, calibrated so that what is asked is what is measured.

A soft edge dilutes a lesion: its outer voxels change by only half to nine tenths of the body's
change, and the liver just outside changes a little too. Measured as the realism features measure
it (:func:`synth.realism.features.lesion_features`: the lesion's mean minus the mean of the
tumour-free liver 1-4 mm outside), an unscaled lesion would look 20-40 % fainter than drawn. The
painter therefore builds the lesion's pattern (body, ring, core, mottling), lays the soft edge on
it, and scales the pattern so that the measured contrast equals the pattern's own mean over the
lesion, which is recorded as the lesion's requested contrast. The host's own difference between
the lesion's voxels and its surroundings is not compensated: for lesions of a few voxels it is
mostly the scan's noise, which a real lesion's measurement carries too, and it averages to about
zero over lesions.

Vessels that the lesion covers do not run through it untouched: their excess over the liver level
(found where the 1 mm smoothed image is more than the liver's robust spread, at least 15 HU,
above the liver) is removed inside the lesion with the same soft edge, so a tumour encases or
replaces them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..labels import Label
from .texture import Appearance, fine_texture

SHELL_MM = (1.0, 4.0)  # the realism features' parenchyma shell around a lesion
_SCALE_LIMITS = (0.3, 4.0)  # a calibration outside these means a degenerate case: stay near 1
_VESSEL_SMOOTH_MM = 1.0  # as the host's vessel map
# A vessel's blurred border, and vessel tissue the mass effect has smeared, are dimmer than the
# host's vessel threshold (two spreads): inside a lesion one spread (at least 15 HU) counts.
_VESSEL_ABOVE_LIVER_HU = 15.0


def heuristic_change(
    volume: np.ndarray,
    label: np.ndarray,
    paint_box: tuple[slice, ...],
    inside: np.ndarray,
    pattern: np.ndarray,
    weight: np.ndarray,
    appearance: Appearance,
    spacing,
    rng: np.random.Generator,
    *,
    liver_hu: float,
    liver_spread_hu: float,
    calibration_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The HU change to blend in with ``weight`` over ``paint_box``, and the requested contrast.

    Parameters
    ----------
    volume, label : arrays
        The scan being written (after any mass effect) and its labels before this lesion.
    paint_box : three slices
        The box of scan voxels the lesion changes; ``inside``, ``pattern`` and ``weight`` (the soft
        edge, zero off tumour-free liver) are arrays of that box.
    pattern : float32 array
        The lesion's HU pattern before the soft edge and the fine texture
        (:func:`~.partial_volume.lesion_change`: on thick slices, averaged over the slice profile);
        scaled here, in place.
    liver_hu, liver_spread_hu : float
        The host liver's median and robust spread (HU): the level a vessel's excess is measured
        from, and how far above it a smoothed voxel must be to count as vessel.
    calibration_weight : array, optional
        The soft edge the calibration undoes, when it is not ``weight``: on thick slices the
        edge drawn directly on the scan's grid, so that the slice profile's partial volume stays
        in what is measured, as it does for a real lesion on such a scan.

    Returns
    -------
    (change, requested_hu)
        The change (float32, HU) and the lesion's requested mean contrast to its liver.
    """
    fixed = fine_texture(appearance, pattern.shape, int(np.count_nonzero(inside)), spacing, rng)
    # The texture is the lesion's tissue: on its labelled voxels only, so that outside the label
    # the image changes by the smooth soft edge alone and label and image keep agreeing.
    fixed *= inside
    excess = vessel_excess(volume[paint_box], weight > 0, spacing, liver_hu=liver_hu,
                           vessel_threshold_hu=liver_hu + max(liver_spread_hu, _VESSEL_ABOVE_LIVER_HU))
    # Inside the lesion the whole excess goes (the soft edge would leave part of it on the
    # lesion's outer voxels); outside, it fades with the edge.
    excess[inside] /= np.maximum(weight[inside], np.float32(0.5))
    fixed -= excess
    requested = float(pattern[inside].mean())
    undone = weight if calibration_weight is None else calibration_weight
    scale = contrast_scale(volume, label, paint_box, inside, undone, pattern, fixed, spacing, requested)
    pattern *= np.float32(scale)
    pattern += fixed
    return pattern, requested


def vessel_excess(region: np.ndarray, covered: np.ndarray, spacing, *, liver_hu: float,
                  vessel_threshold_hu: float) -> np.ndarray:
    """HU by which vessels in ``region`` exceed the liver level, where ``covered`` (else 0).

    A voxel is vessel when its 1 mm smoothed value is above ``vessel_threshold_hu``, or next to
    such a voxel (so a vessel's partial-volume border goes with it); its excess is its own value
    above ``liver_hu`` (a smoothed excess would leave the core of a thin vessel standing), so
    subtracting it brings the vessel down to the liver level.
    """
    values = region.astype(np.float32)
    smooth = ndimage.gaussian_filter(values, [_VESSEL_SMOOTH_MM / s for s in spacing], mode="nearest")
    vessel = ndimage.binary_dilation(smooth > vessel_threshold_hu) & covered
    return np.where(vessel, np.maximum(values - np.float32(liver_hu), 0.0), 0.0).astype(np.float32)


def contrast_scale(volume, label, paint_box, inside, weight, pattern, fixed, spacing, requested: float) -> float:
    """The factor on ``pattern`` that makes the measured contrast equal ``requested``.

    The painted image is ``volume + weight * (scale * pattern + fixed)``; the contrast it adds to
    the host's own is linear in ``scale``, ``a + scale * b``, measured over the lesion (``inside``)
    and the tumour-free liver 1-4 mm outside it, as the realism features do.
    """
    spacing = tuple(float(s) for s in spacing)
    grow = [int(np.ceil(SHELL_MM[1] / s)) + 1 for s in spacing]
    box = tuple(slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(paint_box, grow, volume.shape))
    local = tuple(slice(p.start - b.start, p.stop - b.start) for p, b in zip(paint_box, box))
    shape = tuple(b.stop - b.start for b in box)
    lesion = np.zeros(shape, dtype=bool)
    lesion[local] = inside
    # Distance outside the lesion as the features define it: to the nearest lesion voxel, minus
    # half the smallest voxel side (the boundary lies halfway between voxels).
    outside = ndimage.distance_transform_edt(~lesion, sampling=spacing) - 0.5 * min(spacing)
    shell = (label[box] == Label.LIVER) & ~lesion & (outside >= SHELL_MM[0]) & (outside <= SHELL_MM[1])
    if not shell.any():
        return 1.0
    added_fixed = np.zeros(shape, dtype=np.float32)
    added_fixed[local] = weight * fixed
    added_pattern = np.zeros(shape, dtype=np.float32)
    added_pattern[local] = weight * pattern
    # The host's own lesion-minus-shell difference is left alone: for lesions of a few voxels it is
    # mostly the scan's noise, and fitting it would paint some lesions at a fraction of their
    # contrast and make measured contrasts more alike than real ones. It averages to about zero.
    a = float(added_fixed[lesion].mean() - added_fixed[shell].mean())
    b = float(added_pattern[lesion].mean() - added_pattern[shell].mean())
    if abs(b) < 1.0:  # a pattern that averages out (an isodense ring): nothing to calibrate
        return 1.0
    return float(np.clip((requested - a) / b, *_SCALE_LIMITS))
