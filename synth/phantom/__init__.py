"""Procedural abdominal CT phantom: the project's embedded default for demos and tests.

``make_phantom`` draws a portal-venous-phase abdominal CT of the upper abdomen, with a liver label,
from a seed. Every structure is defined in millimetres in RAS+ world coordinates (nibabel's
convention: +x towards the subject's Right, +y Anterior, +z Superior) with the field of view,
``shape * spacing``, centred on the abdomen. The anatomy has a fixed physical size, so any shape and
spacing work (anisotropic ones included); what falls outside the field of view is cropped.

Anatomy and nominal HU (before blur and noise):

=========================  ======================================================  ============
structure                  geometry                                                HU
=========================  ======================================================  ============
air                        outside the body                                        -1000
skin                       2 mm outer layer of an elliptical, slightly lumpy        30
                           body outline (about 330 x 230 mm)
subcutaneous fat           about 15-30 mm thick, thinnest at the back               -100
muscle wall                abdominal wall, paraspinal and psoas muscles,            50
                           diaphragm and its crura
visceral fat               whatever is left inside the abdominal cavity             -90
vertebral column           vertebral bodies: cortical rim / cancellous interior;   800 / 220
                           discs, spinal canal, arch and spinous processes          90 / 15
ribs                       lower ribs in the body wall, cortex around marrow        800 / 220
lung bases, heart          above the two diaphragm domes                            -850 / 120
aorta, IVC, portal vein    contrast-filled tubes                                   190 / 150 / 175
kidneys                    cortex, medulla, renal-sinus fat at the hilum           160 / 125 / -80
spleen                     left upper quadrant                                     115
stomach, bowel, colon      3 mm wall around fluid and gas                          45 / 15 / -950
gallbladder                bile at the inferior liver surface                      10
liver                      smooth union of three deformed ellipsoids under the     110
                           right diaphragm dome, carved by kidney, IVC, crus and
                           gallbladder; correlated parenchymal texture (~5 HU)
hepatic vessels            portal and hepatic-vein trees of tapering tubes         175
                           (radius 6 mm at the hilum down to ~1 mm)
lesions (optional)         hypodense ellipsoids with a soft edge, 5-30 mm          liver - 30..80
=========================  ======================================================  ============

The image then gets a mild Gaussian blur (a smooth reconstruction kernel and the slice profile) and
spatially correlated Gaussian noise (sigma 12 HU) and is clipped to [-1024, 3071] as int16.

Randomness: one seed gives three independent streams (anatomy, noise, lesions). The anatomy is
drawn in millimetres before anything touches the voxel grid, so the same seed gives the same body
at any shape and spacing, and adding lesions changes nothing else.

Layout: ``geometry`` (grid, boxes, shapes), ``anatomy`` (sampling the body in mm), ``vessels``
(the intrahepatic vessel trees), ``tissues`` (tissue ids, nominal HU, painting the tissue map),
``lesions`` (the demo lesions) and ``render`` (HU, texture, scanner blur and noise).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The submodules import only numpy at module level (scipy is imported inside the functions that
# need it), so importing synth.phantom stays cheap.
# _build and _validate are also private hooks for the tests and docs/figures: they expose the
# internal maps (tissue ids, vessel mask) behind a phantom.
from .render import build as _build

__all__ = ["Phantom", "make_phantom"]


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic CT scan with its label, in the project's (X, Y, Z) RAS+ array convention."""

    volume: np.ndarray  # int16 HU, shape (X, Y, Z)
    label: np.ndarray  # uint8, 0 background, 1 liver, 2 tumour
    spacing: tuple[float, float, float]  # mm
    affine: np.ndarray  # 4x4 RAS affine, diag(spacing), origin so the volume is centred at 0


def make_phantom(
    shape: Sequence[int] = (224, 176, 80),
    spacing: Sequence[float] = (1.6, 1.6, 2.5),
    *,
    lesions: int = 0,
    seed: int | np.random.Generator = 0,
) -> Phantom:
    """Draw a procedural portal-venous abdominal CT with a liver label.

    Args:
        shape: voxels along (X, Y, Z) = (right-left, anterior-posterior, superior-inferior axes).
        spacing: voxel size in mm along (X, Y, Z).
        lesions: number of simple hypodense tumours (label 2) to put in the liver; a lesion that
            finds no room away from the capsule, the vessels and the other lesions is skipped.
        seed: int (or a numpy Generator, which is consumed) for ``numpy.random.default_rng``.

    The field of view is ``shape * spacing`` mm centred on the abdomen; the default,
    358 x 282 x 200 mm, holds the whole liver.

    Example:
        >>> import numpy as np
        >>> from synth.phantom import make_phantom
        >>> ph = make_phantom((112, 88, 40), (3.2, 3.2, 5.0), lesions=2, seed=1)
        >>> ph.volume.shape, ph.volume.dtype.name, ph.label.dtype.name
        ((112, 88, 40), 'int16', 'uint8')
        >>> sorted(np.unique(ph.label).tolist())
        [0, 1, 2]
        >>> liver_ml = (ph.label > 0).sum() * np.prod(ph.spacing) / 1000  # about 1300 mL
    """
    shape, spacing, lesions, seed_seq = _validate(shape, spacing, lesions, seed)
    parts = _build(shape, spacing, lesions, seed_seq)
    return Phantom(parts.volume, parts.label, spacing, _affine(shape, spacing))


def _validate(
    shape, spacing, lesions, seed
) -> tuple[tuple[int, int, int], tuple[float, float, float], int, np.random.SeedSequence]:
    """make_phantom's arguments as (shape ints, spacing floats, lesions int, SeedSequence);
    ValueError naming the bad argument."""

    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    try:
        shape_t = tuple(shape)
    except TypeError:
        shape_t = None
    if shape_t is None or len(shape_t) != 3 or not all(is_int(n) and n > 0 for n in shape_t):
        raise ValueError(f"shape must be 3 positive integers (X, Y, Z), got {shape!r}")
    try:
        spacing_t = tuple(spacing)
    except TypeError:
        spacing_t = None
    if (
        spacing_t is None
        or len(spacing_t) != 3
        or not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in spacing_t)
        or not all(math.isfinite(s) and s > 0 for s in spacing_t)
    ):
        raise ValueError(f"spacing must be 3 positive finite numbers in mm, got {spacing!r}")
    if not is_int(lesions) or lesions < 0:
        raise ValueError(f"lesions must be an integer >= 0, got {lesions!r}")
    if isinstance(seed, np.random.Generator):
        seed_seq = np.random.SeedSequence(int(seed.integers(0, 2**63)))
    elif is_int(seed) and seed >= 0:
        seed_seq = np.random.SeedSequence(int(seed))
    else:
        raise ValueError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    nx, ny, nz = (int(n) for n in shape_t)  # three of each: checked above
    sx, sy, sz = (float(s) for s in spacing_t)
    return (nx, ny, nz), (sx, sy, sz), int(lesions), seed_seq


def _affine(shape, spacing) -> np.ndarray:
    """Voxel-to-RAS affine of a grid centred on the world origin (matches geometry.make_grid)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape, spacing)]
    return affine
