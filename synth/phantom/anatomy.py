"""The phantom's anatomy, drawn in mm from the anatomy random stream (no voxel grid involved).

Because nothing here knows the voxel grid, one seed gives the same body at any shape and spacing.
``sample_anatomy`` draws every random parameter in a fixed order: changing that order changes every
phantom, so append new draws at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Ellipsoid, SmoothField, Tube, ellipsoid, polyline, smooth_min, tube, unit
from .vessels import grow_vessel_tree

# Fixed landmarks (mm, RAS+): vessels in front of the spine, right kidney lower than the left.
VERTEBRA_CENTRE = (0.0, -45.0)  # x, y of the vertebral bodies
CANAL_CENTRE = (0.0, -74.0)  # x, y of the spinal canal
AORTA_CIRCLE = (-13.0, -20.0, 11.0)  # x, y, radius: left of the midline
IVC_CIRCLE = (24.0, -20.0, 11.0)  # right of the midline, embedded in the liver's back
PORTAL_HILUM = (34.0, 2.0, 4.0)
HEPATIC_CONFLUENCE = (26.0, -20.0, 62.0)


@dataclass(frozen=True)
class BodyWall:
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


def diaphragm_height(x, y) -> np.ndarray:
    """z (mm) of the diaphragm surface: two domes, the right one higher, falling off laterally
    and posteriorly into the costophrenic recesses."""
    top = np.where(x > 0, np.float32(90.0), np.float32(84.0))
    return top - 45.0 * ((np.abs(x) - 62.0) / 95.0) ** 2 - 50.0 * ((y + 5.0) / 100.0) ** 2


@dataclass(frozen=True)
class LiverShape:
    """Smooth union of ellipsoids, randomly deformed, below the right diaphragm dome.

    `signed` is an approximate signed distance in mm (negative inside) that works on points and
    broadcast boxes alike; the painted liver is this shape minus whatever organs were there first.
    """

    lobes: tuple[Ellipsoid, ...]
    deformation: SmoothField
    blend_mm: float = 12.0

    def signed(self, x, y, z):
        # Lobes merge without creases (smooth union).
        d = smooth_min([lobe.signed(x, y, z) for lobe in self.lobes], self.blend_mm)
        # The dome sits under the diaphragm; the inferior (visceral) surface rises medially, which
        # makes the left lobe a thin wedge. Smooth intersections round the edges off.
        under_dome = z - (diaphragm_height(x, y) - 5.0)
        above_floor = (-55.0 + 0.5 * (110.0 - x) + 0.003 * (y - 10.0) ** 2) - z
        d = -smooth_min([-d, -under_dome, -above_floor], 6.0)
        # The random deformation comes last so that cut surfaces are organic too.
        return d + self.deformation(x, y, z)

    def bounds(self):
        """(lo, hi) corners (mm) of a box that holds the whole liver."""
        pad = 3 * 6.0 + 2.0  # deformation amplitude (3 sd) + margin
        lo = np.min([lobe.centre - lobe.extent() for lobe in self.lobes], axis=0) - pad
        hi = np.max([lobe.centre + lobe.extent() for lobe in self.lobes], axis=0) + pad
        return lo, hi


@dataclass(frozen=True)
class Anatomy:
    """Every sampled structure, in mm; tissues.py paints them onto a grid."""

    body: BodyWall
    vertebra_phase: float  # mm, where the 30 mm vertebral levels start along z
    liver: LiverShape
    portal_tree: np.ndarray  # (n, 8): a(3), b(3), r0, r1
    hepatic_tree: np.ndarray
    kidneys: tuple[Ellipsoid, ...]
    spleen: Ellipsoid
    stomach: Ellipsoid
    gallbladder: Ellipsoid
    heart: Ellipsoid
    portal_vein: tuple[Tube, ...]
    psoas: tuple[Tube, ...]
    crura: tuple[Tube, ...]
    ribs: tuple[Tube, ...]
    colon: tuple[Tube, ...]
    small_bowel: tuple[tuple[Tube, ...], ...]
    bowel_gas: tuple[bool, ...]  # per small-bowel loop: whether it holds gas


def sample_anatomy(rng) -> Anatomy:
    """Draw every random anatomical parameter, in mm, in a fixed order."""

    def jitter(scale, size=None):
        return rng.normal(0.0, scale, size)

    body = BodyWall(
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

    liver = LiverShape(
        lobes=(
            # right lobe
            ellipsoid((72 + jitter(3), -8 + jitter(3), 24 + jitter(3)),
                      (62 + jitter(3), 80 + jitter(3), 72 + jitter(3)), (0, 0, jitter(6))),
            # left lobe: anterior, crossing the midline to the subject's left
            ellipsoid((-8 + jitter(4), 32 + jitter(3), 44 + jitter(3)),
                      (62 + jitter(4), 36 + jitter(2), 34 + jitter(2)),
                      (0, 8 + jitter(4), -12 + jitter(5))),
            # caudate lobe, medial to and in front of the IVC
            ellipsoid((14 + jitter(2), -12 + jitter(2), 40 + jitter(3)), (22, 17, 32)),
        ),
        deformation=SmoothField(rng, 16, (50.0, 140.0), 6.0),
    )

    portal_tree = grow_vessel_tree(
        rng, liver, PORTAL_HILUM,
        [(1.0, -0.3, 0.35), (-1.0, 0.9, 0.55), (0.25, -0.4, 1.0)], [6.0, 4.5, 3.5], 600,
    )
    hepatic_tree = grow_vessel_tree(
        rng, liver, HEPATIC_CONFLUENCE,
        [(1.0, 0.15, -0.45), (0.1, 1.0, -0.5), (-0.9, 0.8, -0.2)], [5.5, 4.5, 4.0], 450,
    )

    kidneys = (
        ellipsoid((74 + jitter(3), -50 + jitter(2), -42 + jitter(4)),
                  (30, 22, 55), (0, -12 + jitter(3), -30 + jitter(5))),
        ellipsoid((-74 + jitter(3), -50 + jitter(2), -22 + jitter(4)),
                  (30, 22, 55), (0, 12 + jitter(3), 30 + jitter(5))),
    )
    spleen = ellipsoid((-90 + jitter(3), -38 + jitter(3), 40 + jitter(4)),
                       (22, 58, 48), (0, 0, -40 + jitter(5)))
    stomach = ellipsoid((-52 + jitter(3), 2 + jitter(3), 40 + jitter(4)),
                        (34, 32, 40), (0, 15, -25 + jitter(6)))
    gallbladder = ellipsoid((52 + jitter(3), 40 + jitter(3), -12 + jitter(3)),
                            (15, 14, 32), (25 + jitter(5), 0, 0))
    heart = ellipsoid((-18, 25, 140), (75, 62, 66), (0, 0, -20))
    portal_vein = (
        tube((2, -8, -32), PORTAL_HILUM, 7.0),  # main portal vein up to the hilum
        tube((2, -8, -32), (-60, -28, -5), 4.5),  # splenic vein towards the spleen
    )
    psoas = (
        tube((30, -42, 10), (52, -38, -120), 6.0, 24.0),
        tube((-30, -42, 10), (-52, -38, -120), 6.0, 24.0),
    )
    # Diaphragmatic crura: muscle bands beside the aorta, from the spine up to the domes; they
    # keep the liver off the vertebral bodies.
    crura = (
        tube((29, -40, -30), (16, -26, 95), 4.0, 7.0),
        tube((-28, -40, -20), (-16, -26, 95), 4.0, 6.0),
    )
    ribs = _sample_ribs(body, rng)
    colon = tuple(
        polyline(np.array([(98, -8, -120), (96, 2, -58), (70, 45, -62), (0, 60, -62),
                           (-70, 45, -55), (-100, 0, -45), (-102, -12, -120)], float)
                 + jitter(3.0, (7, 3)), 20.0)
    )
    small_bowel, bowel_gas = _sample_small_bowel(rng, liver)
    return Anatomy(body, vertebra_phase, liver, portal_tree, hepatic_tree, kidneys, spleen,
                   stomach, gallbladder, heart, portal_vein, psoas, crura, ribs, colon,
                   small_bowel, bowel_gas)


def _sample_ribs(body: BodyWall, rng) -> tuple[Tube, ...]:
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
            tubes += polyline(pts, 5.0)
    return tuple(tubes)


def _sample_small_bowel(rng, liver: LiverShape):
    """Small-bowel loops: short wiggly tubes in the lower abdomen, kept off the liver.

    Returns the loops (each a tuple of tubes) and, per loop, whether it holds gas.
    """
    loops: list[tuple[Tube, ...]] = []
    gas: list[bool] = []
    while len(loops) < 14:
        centre = np.array([rng.uniform(-85, 65), rng.uniform(-5, 70), rng.uniform(-115, -25)])
        radius = rng.uniform(10.0, 13.0)
        direction = unit(rng.normal(size=3))
        path = [centre]
        for _ in range(3):
            direction = unit(direction + rng.normal(0, 0.8, 3))
            path.append(path[-1] + rng.uniform(20, 35) * direction)
        pts = np.array(path)
        is_gassy = rng.uniform() < 0.3
        if np.all(liver.signed(pts[:, 0], pts[:, 1], pts[:, 2]) > radius + 4):
            loops.append(tuple(polyline(pts, radius)))
            gas.append(is_gassy)
    return tuple(loops), tuple(gas)
