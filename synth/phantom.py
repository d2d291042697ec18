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

Speed: shapes are evaluated by broadcasting 1-D coordinate arrays inside each structure's bounding
box; z-invariant structures (body wall, aorta, IVC, paraspinal muscles) are drawn once in 2-D.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

# scipy.ndimage is imported inside the functions that need it, so importing this module costs
# only numpy.

__all__ = ["Phantom", "make_phantom"]


# ----------------------------------------------------------------------------------------------
# Tissues
# ----------------------------------------------------------------------------------------------

# Tissue ids of the internal tissue map (uint8); _HU gives each its nominal Hounsfield value.
AIR, SKIN, FAT, MUSCLE, CAVITY, LUNG, HEART, BONE_CORTEX, BONE_MARROW, DISC, CSF = range(11)
AORTA, IVC, PORTAL, KIDNEY_CORTEX, KIDNEY_MEDULLA, RENAL_SINUS, SPLEEN = range(11, 18)
GUT_WALL, GUT_FLUID, GAS, BILE, LIVER = range(18, 23)

_HU = np.zeros(256, dtype=np.float32)
for _tissue, _value in {
    AIR: -1000, SKIN: 30, FAT: -100, MUSCLE: 50, CAVITY: -90, LUNG: -850, HEART: 120,
    BONE_CORTEX: 800, BONE_MARROW: 220, DISC: 90, CSF: 15, AORTA: 190, IVC: 150, PORTAL: 175,
    KIDNEY_CORTEX: 160, KIDNEY_MEDULLA: 125, RENAL_SINUS: -80, SPLEEN: 115,
    GUT_WALL: 45, GUT_FLUID: 15, GAS: -950, BILE: 10, LIVER: 110,
}.items():
    _HU[_tissue] = _value

VESSEL_HU = 175.0          # intrahepatic portal and hepatic veins, portal-venous phase
LIVER_TEXTURE_SD = 4.0     # HU, fine correlated parenchymal texture
LIVER_TEXTURE_MM = 2.0     # correlation length of that texture
LIVER_DRIFT_SD = 3.0       # HU, slow intensity drift across the liver
NOISE_SD = 12.0            # HU, image noise after correlation
NOISE_CORRELATION_MM = 0.7 # in-plane Gaussian sigma that correlates the noise
BLUR_MM = 0.8              # in-plane reconstruction-kernel sigma
SLICE_BLUR_VOXELS = 0.35   # through-plane sigma in slices (slice-sensitivity profile)
HU_RANGE = (-1024, 3071)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Arguments, grid and geometry helpers
# ----------------------------------------------------------------------------------------------


def _validate(shape, spacing, lesions, seed):
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
    return (
        tuple(int(n) for n in shape_t),
        tuple(float(s) for s in spacing_t),
        int(lesions),
        seed_seq,
    )


def _affine(shape, spacing) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape, spacing)]
    return affine


class _Grid(NamedTuple):
    """Voxel-centre coordinates in mm along each axis (1-D, ascending) of a (sub-)volume."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def shape(self):
        return (self.x.size, self.y.size, self.z.size)


def _make_grid(shape, spacing) -> _Grid:
    axes = [((np.arange(n) - (n - 1) / 2) * s).astype(np.float32) for n, s in zip(shape, spacing)]
    return _Grid(*axes, spacing)


class _Box(NamedTuple):
    """The voxels of a grid inside an axis-aligned mm box: slices plus broadcastable coordinates."""

    sl: tuple[slice, slice, slice]
    x: np.ndarray  # (nx, 1, 1)
    y: np.ndarray  # (1, ny, 1)
    z: np.ndarray  # (1, 1, nz)

    def grid(self, spacing) -> _Grid:
        return _Grid(self.x.ravel(), self.y.ravel(), self.z.ravel(), spacing)


def _box(grid: _Grid, lo, hi) -> _Box | None:
    """Voxels whose centres lie in [lo, hi] (mm); None when the box misses the grid."""
    sl = []
    for axis, a, b in zip((grid.x, grid.y, grid.z), lo, hi):
        i0, i1 = np.searchsorted(axis, a, "left"), np.searchsorted(axis, b, "right")
        if i1 <= i0:
            return None
        sl.append(slice(int(i0), int(i1)))
    return _Box(
        tuple(sl),
        grid.x[sl[0], None, None],
        grid.y[None, sl[1], None],
        grid.z[None, None, sl[2]],
    )


def _rotation(rx=0.0, ry=0.0, rz=0.0) -> np.ndarray:
    """Rotation matrix (columns = local axes in world coordinates) from angles in degrees."""
    a, b, c = np.radians([rx, ry, rz])
    mx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    my = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    mz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return mz @ my @ mx


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass(frozen=True)
class _Ellipsoid:
    centre: np.ndarray  # mm
    semi: np.ndarray  # semi-axes along the local axes, mm
    rot: np.ndarray  # 3x3, columns are the local axes in world coordinates

    def extent(self) -> np.ndarray:
        """Half-size of the world-axis-aligned bounding box."""
        return np.sqrt(((self.rot * self.semi) ** 2).sum(axis=1))

    def box(self, grid: _Grid, pad=0.0) -> _Box | None:
        e = self.extent() + pad
        return _box(grid, self.centre - e, self.centre + e)

    def rho(self, x, y, z, scale=1.0) -> np.ndarray:
        """Normalised radius (1 on the surface) of the ellipsoid scaled by `scale`; broadcasts."""
        # Python floats keep float32 coordinate arrays in float32.
        cx, cy, cz = self.centre.tolist()
        r = self.rot.tolist()
        d = (x - cx, y - cy, z - cz)
        total = 0.0
        for j, semi in enumerate(self.semi.tolist()):
            u = r[0][j] * d[0] + r[1][j] * d[1] + r[2][j] * d[2]
            total = total + (u / (semi * scale)) ** 2
        return np.sqrt(total)

    def signed(self, x, y, z) -> np.ndarray:
        """Approximate signed distance in mm (negative inside); exact on the smallest axis."""
        return (self.rho(x, y, z) - 1.0) * float(self.semi.min())


def _ellipsoid(centre, semi, rot=(0.0, 0.0, 0.0)) -> _Ellipsoid:
    return _Ellipsoid(np.asarray(centre, float), np.asarray(semi, float), _rotation(*rot))


@dataclass(frozen=True)
class _Tube:
    """A straight tube from a to b whose radius tapers linearly from r0 to r1 (mm)."""

    a: np.ndarray
    b: np.ndarray
    r0: float
    r1: float

    def box(self, grid: _Grid, pad=0.0) -> _Box | None:
        r = max(self.r0, self.r1) + pad
        return _box(grid, np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r)

    def signed(self, x, y, z) -> np.ndarray:
        """Distance to the axis minus the local radius (mm, negative inside); broadcasts."""
        ax, ay, az = (self.b - self.a).tolist()
        length2 = ax * ax + ay * ay + az * az or 1e-9
        x0, y0, z0 = self.a.tolist()
        dx, dy, dz = x - x0, y - y0, z - z0
        t = np.clip((dx * ax + dy * ay + dz * az) / length2, 0.0, 1.0)
        dist = np.sqrt((dx - t * ax) ** 2 + (dy - t * ay) ** 2 + (dz - t * az) ** 2)
        return dist - (self.r0 + (self.r1 - self.r0) * t)


def _tube(a, b, r0, r1=None) -> _Tube:
    r1 = r0 if r1 is None else r1
    return _Tube(np.asarray(a, float), np.asarray(b, float), float(r0), float(r1))


def _polyline(points, radius) -> list[_Tube]:
    return [_tube(p, q, radius) for p, q in zip(points[:-1], points[1:])]


class _SmoothField:
    """A smooth random function of position (mm): a sum of random plane waves.

    Defined analytically in world space, so it is the same at any voxel grid and can be evaluated
    at single points (vessel growth) as well as over a box (broadcast 1-D coordinates).
    """

    def __init__(self, rng, n_waves, wavelength_mm, sd):
        self.k = _unit(rng.normal(size=(n_waves, 3))) * (
            2 * np.pi / rng.uniform(*wavelength_mm, size=(n_waves, 1))
        )
        self.phase = rng.uniform(0, 2 * np.pi, n_waves)
        self.amp = sd * math.sqrt(2.0 / n_waves)  # each cosine has variance 1/2

    def __call__(self, x, y, z):
        if np.ndim(x) == 1 and np.shape(x) == np.shape(y) == np.shape(z):
            # A list of points: one matrix product instead of a loop over waves.
            phases = np.stack([x, y, z], axis=-1) @ self.k.T + self.phase
            return self.amp * np.cos(phases).sum(axis=-1)
        out = 0.0
        for (kx, ky, kz), phase in zip(self.k.tolist(), self.phase.tolist()):
            out = out + np.cos(kx * x + ky * y + kz * z + phase)
        return self.amp * out


def _smooth_min(values, k):
    """Log-sum-exp soft minimum with a blending length k (mm); exact far from ties."""
    m = values[0]
    for v in values[1:]:
        m = np.minimum(m, v)
    total = 0.0
    for v in values:
        total = total + np.exp(-(v - m) / k)
    return m - k * np.log(total)


def _paint(tissue, box: _Box, mask, tid, onto: Sequence[int] | None = None):
    """Set `tid` where mask is true inside box, optionally only over the tissues in `onto`."""
    view = tissue[box.sl]
    mask = np.broadcast_to(mask, view.shape)
    if onto is not None:
        allowed = np.zeros(256, dtype=bool)
        allowed[list(onto)] = True
        mask = mask & allowed[view]
    view[mask] = tid


def _paint_shape(tissue, grid, shape, tid, onto=None, grow=0.0):
    """Paint an _Ellipsoid or _Tube (optionally grown by `grow` mm) into the tissue map."""
    box = shape.box(grid, pad=max(grow, 0.0))
    if box is not None:
        _paint(tissue, box, shape.signed(box.x, box.y, box.z) < grow, tid, onto)


# ----------------------------------------------------------------------------------------------
# Anatomy, drawn in mm from the anatomy random stream (no voxel grid involved)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BodyWall:
    """Elliptical body cross-section (constant along z) and its layers, in mm."""

    half_width: float  # x semi-axis of the skin
    half_front: float  # y semi-axis anteriorly
    half_back: float  # y semi-axis posteriorly (the back is flatter: superellipse)
    fat: tuple[float, float, float]  # subcutaneous fat thickness: lateral, anterior, posterior
    muscle: tuple[float, float, float]  # muscle wall thickness: lateral, anterior, posterior
    lumps: np.ndarray  # (m, amplitude, phase) rows: angular harmonics of the outline

    def rho(self, x, y, inset=(0.0, 0.0, 0.0)) -> np.ndarray:
        """< 1 inside the outline shrunk by `inset` (lateral, anterior, posterior mm)."""
        a = self.half_width - inset[0]
        front = y >= 0
        b = np.where(front, self.half_front - inset[1], self.half_back - inset[2])
        p = np.where(front, 2.0, 2.6)
        return np.abs(x / a) ** p + np.abs(y / b) ** p


def _diaphragm_height(x, y) -> np.ndarray:
    """z (mm) of the diaphragm surface: two domes, the right one higher, falling off laterally
    and posteriorly into the costophrenic recesses."""
    top = np.where(x > 0, np.float32(90.0), np.float32(84.0))
    return top - 45.0 * ((np.abs(x) - 62.0) / 95.0) ** 2 - 50.0 * ((y + 5.0) / 100.0) ** 2


@dataclass(frozen=True)
class _LiverShape:
    """Smooth union of ellipsoids, randomly deformed, below the right diaphragm dome.

    `signed` is an approximate signed distance in mm (negative inside) that works on points and
    broadcast boxes alike; the painted liver is this shape minus whatever organs were there first.
    """

    lobes: tuple[_Ellipsoid, ...]
    deformation: _SmoothField
    blend_mm: float = 12.0

    def signed(self, x, y, z):
        # Lobes merge without creases (smooth union).
        d = _smooth_min([lobe.signed(x, y, z) for lobe in self.lobes], self.blend_mm)
        # The dome sits under the diaphragm; the inferior (visceral) surface rises medially, which
        # makes the left lobe a thin wedge. Smooth intersections round the edges off.
        under_dome = z - (_diaphragm_height(x, y) - 5.0)
        above_floor = (-55.0 + 0.5 * (110.0 - x) + 0.003 * (y - 10.0) ** 2) - z
        d = -_smooth_min([-d, -under_dome, -above_floor], 6.0)
        # The random deformation comes last so that cut surfaces are organic too.
        return d + self.deformation(x, y, z)

    def bounds(self):
        pad = 3 * 6.0 + 2.0  # deformation amplitude (3 sd) + margin
        lo = np.min([lobe.centre - lobe.extent() for lobe in self.lobes], axis=0) - pad
        hi = np.max([lobe.centre + lobe.extent() for lobe in self.lobes], axis=0) + pad
        return lo, hi


@dataclass(frozen=True)
class _Anatomy:
    body: _BodyWall
    vertebra_phase: float
    liver: _LiverShape
    portal_tree: np.ndarray  # (n, 8): a(3), b(3), r0, r1
    hepatic_tree: np.ndarray
    kidneys: tuple[_Ellipsoid, ...]
    spleen: _Ellipsoid
    stomach: _Ellipsoid
    gallbladder: _Ellipsoid
    heart: _Ellipsoid
    portal_vein: tuple[_Tube, ...]
    psoas: tuple[_Tube, ...]
    crura: tuple[_Tube, ...]
    ribs: tuple[_Tube, ...]
    colon: tuple[_Tube, ...]
    small_bowel: tuple[tuple[_Tube, ...], ...]
    bowel_gas: tuple[bool, ...]


# Fixed landmarks (mm, RAS+): vessels in front of the spine, right kidney lower than the left.
_VERTEBRA_CENTRE = (0.0, -45.0)
_CANAL_CENTRE = (0.0, -74.0)
_AORTA = (-13.0, -20.0, 11.0)  # x, y, radius: left of the midline
_IVC = (24.0, -20.0, 11.0)  # right of the midline, embedded in the liver's back
_PORTAL_HILUM = (34.0, 2.0, 4.0)
_HEPATIC_CONFLUENCE = (26.0, -20.0, 62.0)


def _sample_anatomy(rng) -> _Anatomy:
    """Draw every random anatomical parameter, in mm, in a fixed order."""

    def jitter(scale, size=None):
        return rng.normal(0.0, scale, size)

    body = _BodyWall(
        half_width=165.0 + jitter(5.0),
        half_front=118.0 + jitter(4.0),
        half_back=112.0 + jitter(2.0),
        fat=(28.0 + jitter(3.0), 22.0 + jitter(3.0), 15.0 + jitter(2.0)),
        muscle=(13.0, 11.0, 8.0),
        lumps=np.column_stack(
            [np.arange(2, 7), rng.uniform(0.004, 0.015, 5), rng.uniform(0, 2 * np.pi, 5)]
        ),
    )
    vertebra_phase = rng.uniform(0.0, 30.0)

    liver = _LiverShape(
        lobes=(
            # right lobe
            _ellipsoid((72 + jitter(3), -8 + jitter(3), 24 + jitter(3)),
                       (62 + jitter(3), 80 + jitter(3), 72 + jitter(3)), (0, 0, jitter(6))),
            # left lobe: anterior, crossing the midline to the subject's left
            _ellipsoid((-8 + jitter(4), 32 + jitter(3), 44 + jitter(3)),
                       (62 + jitter(4), 36 + jitter(2), 34 + jitter(2)),
                       (0, 8 + jitter(4), -12 + jitter(5))),
            # caudate lobe, medial to and in front of the IVC
            _ellipsoid((14 + jitter(2), -12 + jitter(2), 40 + jitter(3)), (22, 17, 32)),
        ),
        deformation=_SmoothField(rng, 16, (50.0, 140.0), 6.0),
    )

    portal_tree = _vessel_tree(
        rng, liver, _PORTAL_HILUM,
        [(1.0, -0.3, 0.35), (-1.0, 0.9, 0.55), (0.25, -0.4, 1.0)], [6.0, 4.5, 3.5], 600,
    )
    hepatic_tree = _vessel_tree(
        rng, liver, _HEPATIC_CONFLUENCE,
        [(1.0, 0.15, -0.45), (0.1, 1.0, -0.5), (-0.9, 0.8, -0.2)], [5.5, 4.5, 4.0], 450,
    )

    kidneys = (
        _ellipsoid((74 + jitter(3), -50 + jitter(2), -42 + jitter(4)),
                   (30, 22, 55), (0, -12 + jitter(3), -30 + jitter(5))),
        _ellipsoid((-74 + jitter(3), -50 + jitter(2), -22 + jitter(4)),
                   (30, 22, 55), (0, 12 + jitter(3), 30 + jitter(5))),
    )
    spleen = _ellipsoid((-90 + jitter(3), -38 + jitter(3), 40 + jitter(4)),
                        (22, 58, 48), (0, 0, -40 + jitter(5)))
    stomach = _ellipsoid((-52 + jitter(3), 2 + jitter(3), 40 + jitter(4)),
                         (34, 32, 40), (0, 15, -25 + jitter(6)))
    gallbladder = _ellipsoid((52 + jitter(3), 40 + jitter(3), -12 + jitter(3)),
                             (15, 14, 32), (25 + jitter(5), 0, 0))
    heart = _ellipsoid((-18, 25, 140), (75, 62, 66), (0, 0, -20))
    portal_vein = (
        _tube((2, -8, -32), _PORTAL_HILUM, 7.0),  # main portal vein up to the hilum
        _tube((2, -8, -32), (-60, -28, -5), 4.5),  # splenic vein towards the spleen
    )
    psoas = (
        _tube((30, -42, 10), (52, -38, -120), 6.0, 24.0),
        _tube((-30, -42, 10), (-52, -38, -120), 6.0, 24.0),
    )
    # Diaphragmatic crura: muscle bands beside the aorta, from the spine up to the domes; they
    # keep the liver off the vertebral bodies.
    crura = (
        _tube((29, -40, -30), (16, -26, 95), 4.0, 7.0),
        _tube((-28, -40, -20), (-16, -26, 95), 4.0, 6.0),
    )
    ribs = _ribs(body, rng)
    colon = tuple(
        _polyline(np.array([(98, -8, -120), (96, 2, -58), (70, 45, -62), (0, 60, -62),
                            (-70, 45, -55), (-100, 0, -45), (-102, -12, -120)], float)
                  + jitter(3.0, (7, 3)), 20.0)
    )
    small_bowel, bowel_gas = _small_bowel_loops(rng, liver)
    return _Anatomy(body, vertebra_phase, liver, portal_tree, hepatic_tree, kidneys, spleen,
                    stomach, gallbladder, heart, portal_vein, psoas, crura, ribs, colon,
                    small_bowel, bowel_gas)


def _vessel_tree(rng, liver: _LiverShape, root, directions, radii, max_segments) -> np.ndarray:
    """Grow a tree of tapering tubes from `root` inside the liver.

    Each segment runs 3-6 radii along its direction (jittered; a few tries to stay inside the
    liver with a margin), then splits in two with Murray's law (r^3 = r1^3 + r2^3):
    a main child that keeps most of the calibre and a thinner side branch that turns more, as
    portal and hepatic veins do. Breadth-first growth, so the segment cap trims the finest twigs.
    Returns an (n, 8) array: start xyz, end xyz, start and end radius (mm).
    """
    segments = []
    queue = deque((np.asarray(root, float), _unit(d), r) for d, r in zip(directions, radii))
    while queue and len(segments) < max_segments:
        start, direction, radius = queue.popleft()
        length = float(np.clip(radius * rng.uniform(3.0, 6.0), 4.0, 25.0))
        tries = _unit(direction + rng.normal(0.0, 0.3, (6, 3)))
        # End and mid points of each try must lie inside the liver, clear of the capsule.
        probe = np.concatenate([start + length * tries, start + 0.5 * length * tries])
        depth = liver.signed(probe[:, 0], probe[:, 1], probe[:, 2])
        ok = (depth[:6] < -(radius + 1.0)) & (depth[6:] < -radius)
        if not ok.any():
            continue
        k = int(np.argmax(ok))
        end, direction = probe[k], tries[k]
        # Drawn with a slight taper; the children's calibre follows from the parent's (the taper
        # is cosmetic, so it does not drain the tree).
        segments.append((*start, *end, radius, max(0.93 * radius, 0.8)))
        if radius < 1.2:
            continue
        share = rng.uniform(0.1, 0.45)
        axis = _unit(np.cross(direction, rng.normal(size=3)))
        for frac, angle in ((1 - share, rng.uniform(5, 25)), (share, -rng.uniform(35, 70))):
            t = math.radians(angle)
            child = direction * math.cos(t) + np.cross(axis, direction) * math.sin(t)
            queue.append((end, _unit(child), radius * frac ** (1 / 3)))
    return np.array(segments, dtype=float).reshape(-1, 8)


def _ribs(body: _BodyWall, rng) -> tuple[_Tube, ...]:
    """Lower ribs: arcs in the body wall from the back round the side, falling anteriorly."""
    tubes = []
    for side in (1.0, -1.0):
        for z0, reach in ((110.0, 150.0), (82.0, 140.0), (56.0, 120.0), (32.0, 95.0)):
            z0 = z0 + rng.normal(0, 2.0)
            angles = np.radians(np.arange(25.0, reach + 1, 12.0))
            # Half-way through the muscle layer, following the outline.
            a = body.half_width - body.fat[0] - 0.5 * body.muscle[0]
            b_back = body.half_back - body.fat[2] - 0.5 * body.muscle[2] - 4
            b_front = body.half_front - body.fat[1] - 0.5 * body.muscle[1]
            y_scale = np.where(np.cos(angles) > 0, b_back, b_front)
            pts = np.column_stack([
                side * a * np.sin(angles),
                -y_scale * np.cos(angles),
                z0 - 55.0 * (1 - np.cos(angles)) / 2,
            ])
            tubes += _polyline(pts, 5.0)
    return tuple(tubes)


def _small_bowel_loops(rng, liver: _LiverShape):
    """Small-bowel loops: short wiggly tubes in the lower abdomen, kept off the liver."""
    loops, gas = [], []
    while len(loops) < 14:
        centre = np.array([rng.uniform(-85, 65), rng.uniform(-5, 70), rng.uniform(-115, -25)])
        radius = rng.uniform(10.0, 13.0)
        direction = _unit(rng.normal(size=3))
        pts = [centre]
        for _ in range(3):
            direction = _unit(direction + rng.normal(0, 0.8, 3))
            pts.append(pts[-1] + rng.uniform(20, 35) * direction)
        pts = np.array(pts)
        is_gassy = rng.uniform() < 0.3
        if np.all(liver.signed(pts[:, 0], pts[:, 1], pts[:, 2]) > radius + 4):
            loops.append(tuple(_polyline(pts, radius)))
            gas.append(is_gassy)
    return tuple(loops), tuple(gas)


# ----------------------------------------------------------------------------------------------
# Rasterisation onto the voxel grid
# ----------------------------------------------------------------------------------------------


def _body_outline(grid: _Grid, anat: _Anatomy) -> np.ndarray:
    """2-D (X, Y) tissue map of everything constant along z: skin, fat, muscle wall, cavity,
    paraspinal muscles, aorta and IVC."""
    body = anat.body
    x, y = grid.x[:, None], grid.y[None, :]
    theta = np.arctan2(y / body.half_front, x / body.half_width)
    lumps = sum(a * np.cos(m * theta + p) for m, a, p in body.lumps)
    fat_in = tuple(body.fat)
    muscle_in = tuple(f + m for f, m in zip(body.fat, body.muscle))
    t2 = np.full(x.shape[:1] + y.shape[1:], AIR, dtype=np.uint8)
    t2[body.rho(x, y) < 1 + lumps] = SKIN
    t2[body.rho(x, y, (2.0, 2.0, 2.0)) < 1 + lumps] = FAT
    t2[body.rho(x, y, fat_in) < 1 + 0.5 * lumps] = MUSCLE
    t2[body.rho(x, y, muscle_in) < 1] = CAVITY
    # Erector spinae either side of the spinous processes, in the posterior wall.
    for side in (1.0, -1.0):
        para = ((x - side * 36.0) / 28.0) ** 2 + ((y + 82.0) / 20.0) ** 2 < 1
        t2[para & np.isin(t2, (FAT, MUSCLE, CAVITY))] = MUSCLE
    for (cx, cy, r), tid in ((_AORTA, AORTA), (_IVC, IVC)):
        t2[((x - cx) ** 2 + (y - cy) ** 2 < r**2) & (t2 == CAVITY)] = tid
    return t2


def _spine(tissue, grid: _Grid, anat: _Anatomy):
    """Lumbar-like vertebrae every 30 mm: body (cortical rim, cancellous core, endplates), disc,
    spinal canal, neural arch, transverse and spinous processes."""
    box = _box(grid, (-45, -110, -np.inf), (45, -20, np.inf))
    if box is None:
        return
    x, y = box.x[:, :, 0], box.y[:, :, 0]
    vx, vy = _VERTEBRA_CENTRE
    cx, cy = _CANAL_CENTRE
    body_r = ((x - vx) / 23.0) ** 2 + ((y - vy) / 17.0) ** 2
    core_r = ((x - vx) / 20.5) ** 2 + ((y - vy) / 14.5) ** 2
    canal_d2 = (x - cx) ** 2 + (y - cy) ** 2
    arch = (canal_d2 < 15.0**2) & (canal_d2 >= 9.0**2) & (y < vy)
    pedicles = (np.abs(np.abs(x) - 11.0) < 4.0) & (y < vy) & (y > cy)
    transverse = (np.abs(x) < 38.0) & (np.abs(y - (cy + 4.0)) < 4.5)
    spinous = (np.abs(x) < 3.5) & (y < cy - 10.0) & (y > -104.0)

    # Position within each 30 mm vertebral level: [0, 6) disc, then 24 mm of vertebra.
    level = np.mod(box.z[0, 0] + anat.vertebra_phase, 30.0)
    is_disc = level < 6.0
    is_endplate = (level < 7.5) | (level > 28.5)
    is_process = (level > 10.0) & (level < 22.0)  # processes at mid-vertebra, slanting down

    view = tissue[box.sl]
    soft = np.zeros(256, dtype=bool)
    soft[[FAT, MUSCLE, CAVITY]] = True

    def put(mask2d, zmask, tid):
        m = mask2d[:, :, None] & zmask[None, None, :] & soft[view]
        view[m] = tid

    put(body_r < 1, ~is_disc, BONE_CORTEX)
    put(core_r < 1, ~is_disc & ~is_endplate, BONE_MARROW)
    put(body_r < 1, is_disc, DISC)
    put(arch | pedicles, np.ones_like(is_disc), BONE_CORTEX)
    put((transverse | spinous) & ~(canal_d2 < 9.0**2), is_process, BONE_CORTEX)
    put(canal_d2 < 9.0**2, np.ones_like(is_disc), CSF)


def _paint_ribs(tissue, grid, anat):
    onto = (FAT, MUSCLE, CAVITY, LUNG)
    for rib in anat.ribs:
        _paint_shape(tissue, grid, rib, BONE_CORTEX, onto)
    for rib in anat.ribs:
        _paint_shape(tissue, grid, rib, BONE_MARROW, (BONE_CORTEX,), grow=-2.0)


def _thorax_base(tissue, grid: _Grid, anat: _Anatomy):
    """Lung bases above the diaphragm domes, a 4 mm muscular diaphragm, and the heart."""
    box = _box(grid, (-np.inf, -np.inf, 30.0), (np.inf, np.inf, np.inf))
    if box is None:
        return
    dome = _diaphragm_height(box.x, box.y)
    _paint(tissue, box, box.z > dome, LUNG, (CAVITY,))
    _paint(tissue, box, box.z > dome - 4.0, MUSCLE, (CAVITY,))
    _paint_shape(tissue, grid, anat.heart, HEART, (LUNG,))


def _kidneys(tissue, grid, anat):
    """Cortex, a medulla core, and renal-sinus fat opening medially at the hilum."""
    for kidney in anat.kidneys:
        box = kidney.box(grid)
        if box is None:
            continue
        rho = kidney.rho(box.x, box.y, box.z)
        _paint(tissue, box, rho < 1, KIDNEY_CORTEX, (CAVITY,))
        _paint(tissue, box, rho < 0.72, KIDNEY_MEDULLA, (KIDNEY_CORTEX,))
        lateral = kidney.rot[:, 0] * np.sign(kidney.centre[0])  # local axis 0 points outwards
        sinus = _Ellipsoid(kidney.centre - 0.62 * kidney.semi[0] * lateral,
                           kidney.semi * np.array([0.42, 0.35, 0.42]), kidney.rot)
        _paint(tissue, box, sinus.rho(box.x, box.y, box.z) < 1, RENAL_SINUS,
               (KIDNEY_CORTEX, KIDNEY_MEDULLA))


def _hollow(tissue, grid, outer, lumen_tid, gas_above=None):
    """Paint a 3 mm gut wall and its lumen; with gas_above (mm of y), gas floats anteriorly."""
    box = outer.box(grid)
    if box is None:
        return
    d = outer.signed(box.x, box.y, box.z)
    _paint(tissue, box, d < 0, GUT_WALL, (CAVITY,))
    _paint(tissue, box, d < -3.0, lumen_tid, (GUT_WALL,))
    if gas_above is not None:
        _paint(tissue, box, (d < -3.0) & (box.y > gas_above), GAS, (GUT_FLUID,))


def _gut(tissue, grid, anat):
    for tube in anat.colon:
        # Colon: mostly gas with some dependent (posterior) faecal fluid.
        _hollow(tissue, grid, tube, GUT_FLUID, gas_above=min(tube.a[1], tube.b[1]) - 8.0)
    for loop, gassy in zip(anat.small_bowel, anat.bowel_gas):
        for tube in loop:
            _hollow(tissue, grid, tube, GUT_FLUID, gas_above=tube.a[1] + 2.0 if gassy else None)


def _liver_mask(tissue, grid: _Grid, anat: _Anatomy) -> _Box | None:
    """Paint the liver on free visceral space (so kidney, IVC, gallbladder leave impressions)
    and return the box that holds it."""
    box = _box(grid, *anat.liver.bounds())
    if box is None:
        return None
    inside = anat.liver.signed(box.x, box.y, box.z) < 0
    _paint(tissue, box, inside, LIVER, (CAVITY,))
    return box


def _vessel_fraction(grid: _Grid, segments: np.ndarray) -> np.ndarray:
    """Partial-volume fraction (0..1) of the vessel tubes over `grid` (a box-sized sub-grid).

    Each tube is drawn only in its own bounding box; the one-voxel ramp across the wall keeps
    1-2 mm vessels visible on coarse grids instead of breaking them into dots.
    """
    frac = np.zeros(grid.shape, dtype=np.float32)
    ramp = float(np.mean(grid.spacing[:2]))
    for seg in segments:
        tube = _tube(seg[0:3], seg[3:6], seg[6], seg[7])
        box = tube.box(grid, pad=ramp)
        if box is None:
            continue
        f = np.clip(0.5 - tube.signed(box.x, box.y, box.z) / ramp, 0.0, 1.0)
        np.maximum(frac[box.sl], f, out=frac[box.sl])
    return frac


def _correlated_noise(rng, shape, sigma_vox, sd) -> np.ndarray:
    """Gaussian noise with standard deviation `sd` after smoothing with `sigma_vox` per axis."""
    from scipy import ndimage

    noise = rng.standard_normal(shape, dtype=np.float32)
    gain = 1.0
    for axis, s in enumerate(sigma_vox):
        if s <= 0.05:
            continue
        radius = max(1, int(math.ceil(3 * s)))
        k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
        k /= k.sum()
        ndimage.correlate1d(noise, k.astype(np.float32), axis=axis, output=noise, mode="wrap")
        gain *= math.sqrt(float((k**2).sum()))
    noise *= np.float32(sd / gain)
    return noise


# ----------------------------------------------------------------------------------------------
# Lesions (demo only: the project's real synthesiser lives elsewhere)
# ----------------------------------------------------------------------------------------------


def _distance_to_vessels(point, segments) -> float:
    """Distance (mm) from a point to the nearest vessel wall."""
    if len(segments) == 0:
        return np.inf
    a, b = segments[:, 0:3], segments[:, 3:6]
    ab = b - a
    t = np.clip(((point - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0, 1)
    dist = np.linalg.norm(point - (a + t[:, None] * ab), axis=1)
    return float((dist - (segments[:, 6] + (segments[:, 7] - segments[:, 6]) * t)).min())


def _add_lesions(rng, hu, label, grid: _Grid, liver_box: _Box, segments, n):
    """Put up to n hypodense ellipsoids (5-30 mm) in the liver, away from capsule, vessels and
    each other; each darkens the image by 30-80 HU with a ~1.5 mm soft edge and is labelled 2
    where the change is at least half its depth."""
    from scipy import ndimage

    liver = label[liver_box.sl] == 1
    if not liver.any():
        return
    depth = ndimage.distance_transform_edt(liver, sampling=grid.spacing)
    sub = liver_box.grid(grid.spacing)
    placed = []  # (centre, radius)
    for _ in range(n):
        radius = 0.5 * math.exp(rng.uniform(math.log(5.0), math.log(30.0)))
        centre = None
        while centre is None and radius >= 2.5:
            candidates = np.argwhere(depth > radius + 2.0)
            for _try in range(40 if len(candidates) else 0):
                i, j, k = candidates[rng.integers(len(candidates))]
                c = np.array([sub.x[i], sub.y[j], sub.z[k]], float)
                if _distance_to_vessels(c, segments) > radius + 2.0 and all(
                    np.linalg.norm(c - c2) > radius + r2 + 3.0 for c2, r2 in placed
                ):
                    centre = c
                    break
            else:
                radius *= 0.8
        if centre is None:
            continue
        shape = _Ellipsoid(centre, radius * rng.uniform(0.85, 1.15, 3),
                           _rotation(*rng.uniform(0, 360, 3)))
        box = shape.box(grid, pad=3.0)
        edge = 1.5
        f = np.clip(0.5 - (shape.rho(box.x, box.y, box.z) - 1.0) * radius / (2 * edge), 0, 1)
        f = f * f * (3 - 2 * f)  # smoothstep
        in_liver = label[box.sl] >= 1
        drop = rng.uniform(30.0, 80.0)
        hu[box.sl] -= np.float32(drop) * f * in_liver
        label[box.sl][(f >= 0.5) & in_liver] = 2
        placed.append((centre, radius))


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------


class _Parts(NamedTuple):
    """make_phantom's result plus internal maps (tests use them to check tissue intensities)."""

    volume: np.ndarray
    label: np.ndarray
    tissue: np.ndarray  # uint8 tissue ids (see the module constants)
    vessels: np.ndarray  # bool, intrahepatic vessel voxels (partial-volume fraction >= 0.5)


def _build(shape, spacing, lesions, seed_seq: np.random.SeedSequence) -> _Parts:
    from scipy import ndimage

    anatomy_ss, noise_ss, lesion_ss = seed_seq.spawn(3)
    anat = _sample_anatomy(np.random.default_rng(anatomy_ss))
    noise_rng = np.random.default_rng(noise_ss)
    grid = _make_grid(shape, spacing)

    # 1. Tissue map, painted from the outside in; later organs take only free space.
    tissue = np.empty(shape, dtype=np.uint8)
    tissue[...] = _body_outline(grid, anat)[:, :, None]
    _spine(tissue, grid, anat)
    for muscle in anat.psoas + anat.crura:
        _paint_shape(tissue, grid, muscle, MUSCLE, (CAVITY,))
    _thorax_base(tissue, grid, anat)
    _paint_ribs(tissue, grid, anat)
    _kidneys(tissue, grid, anat)
    _paint_shape(tissue, grid, anat.spleen, SPLEEN, (CAVITY,))
    _paint_shape(tissue, grid, anat.gallbladder, BILE, (CAVITY,))
    _hollow(tissue, grid, anat.stomach, GUT_FLUID, gas_above=anat.stomach.centre[1] + 8.0)
    for tube in anat.portal_vein:
        _paint_shape(tissue, grid, tube, PORTAL, (CAVITY,))
    liver_box = _liver_mask(tissue, grid, anat)
    _gut(tissue, grid, anat)

    # 2. Intensities: nominal HU per tissue, then liver texture and vessels.
    hu = _HU[tissue]
    label = (tissue == LIVER).astype(np.uint8)
    vessels = np.zeros(shape, dtype=bool)
    segments = np.concatenate([anat.portal_tree, anat.hepatic_tree])
    if liver_box is not None:
        sub = liver_box.grid(spacing)
        liver = label[liver_box.sl] == 1
        texture = _correlated_noise(
            noise_rng, sub.shape, [LIVER_TEXTURE_MM / s for s in spacing], LIVER_TEXTURE_SD
        )
        drift = _SmoothField(noise_rng, 8, (30.0, 90.0), LIVER_DRIFT_SD)
        frac = _vessel_fraction(sub, segments) * liver
        parenchyma = _HU[LIVER] + texture + drift(liver_box.x, liver_box.y, liver_box.z)
        hu_box = hu[liver_box.sl]
        hu_box[liver] = ((1 - frac) * parenchyma + frac * np.float32(VESSEL_HU))[liver]
        vessels[liver_box.sl] = frac >= 0.5

    # 3. Lesions (own random stream, so lesions=0 and lesions=N share everything else).
    if lesions and liver_box is not None:
        lesion_rng = np.random.default_rng(lesion_ss)
        _add_lesions(lesion_rng, hu, label, grid, liver_box, segments, lesions)

    # 4. Scanner: reconstruction blur, correlated noise, int16.
    sigma_blur = (BLUR_MM / spacing[0], BLUR_MM / spacing[1], SLICE_BLUR_VOXELS)
    hu = ndimage.gaussian_filter(hu, sigma_blur, mode="nearest", truncate=3.0)
    hu += _correlated_noise(
        noise_rng, shape, (NOISE_CORRELATION_MM / spacing[0], NOISE_CORRELATION_MM / spacing[1], 0),
        NOISE_SD,
    )
    np.clip(hu, *HU_RANGE, out=hu)
    volume = np.rint(hu).astype(np.int16)
    return _Parts(volume, label, tissue, vessels)
