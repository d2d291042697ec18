"""Tissue ids, their nominal HU, and painting the sampled anatomy onto the voxel grid.

The tissue map (uint8 ids) is painted from the outside in, and each organ is painted only over the
tissues it may displace (``onto``), so later organs take only free space: the liver, painted late,
keeps the impressions of the kidney, IVC and gallbladder. Structures constant along z (body wall,
aorta, IVC, paraspinal muscles) are drawn once in 2-D and broadcast along z.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .anatomy import (
    AORTA_CIRCLE,
    CANAL_CENTRE,
    IVC_CIRCLE,
    VERTEBRA_CENTRE,
    Anatomy,
    diaphragm_height,
)
from .geometry import Box, Ellipsoid, Grid, voxels_in_box

AIR, SKIN, FAT, MUSCLE, CAVITY, LUNG, HEART, BONE_CORTEX, BONE_MARROW, DISC, CSF = range(11)
AORTA, IVC, PORTAL, KIDNEY_CORTEX, KIDNEY_MEDULLA, RENAL_SINUS, SPLEEN = range(11, 18)
GUT_WALL, GUT_FLUID, GAS, BILE, LIVER = range(18, 23)

# Nominal Hounsfield value of each tissue id (portal-venous phase), before blur and noise; a
# 256-entry table so that NOMINAL_HU[tissue_map] converts a whole map at once.
NOMINAL_HU = np.zeros(256, dtype=np.float32)
for _tissue, _value in {
    AIR: -1000, SKIN: 30, FAT: -100, MUSCLE: 50, CAVITY: -90, LUNG: -850, HEART: 120,
    BONE_CORTEX: 800, BONE_MARROW: 220, DISC: 90, CSF: 15, AORTA: 190, IVC: 150, PORTAL: 175,
    KIDNEY_CORTEX: 160, KIDNEY_MEDULLA: 125, RENAL_SINUS: -80, SPLEEN: 115,
    GUT_WALL: 45, GUT_FLUID: 15, GAS: -950, BILE: 10, LIVER: 110,
}.items():
    NOMINAL_HU[_tissue] = _value
del _tissue, _value


def paint_tissue_map(grid: Grid, anat: Anatomy) -> tuple[np.ndarray, Box | None]:
    """The uint8 tissue map of `anat` on `grid`, and the box that holds the liver (None when
    the liver's bounding box misses the grid)."""
    tissue = np.empty(grid.shape, dtype=np.uint8)
    tissue[...] = _body_cross_section(grid, anat)[:, :, None]
    _paint_spine(tissue, grid, anat)
    for muscle in anat.psoas + anat.crura:
        _paint_shape(tissue, grid, muscle, MUSCLE, (CAVITY,))
    _paint_thorax_base(tissue, grid, anat)
    _paint_ribs(tissue, grid, anat)
    _paint_kidneys(tissue, grid, anat)
    _paint_shape(tissue, grid, anat.spleen, SPLEEN, (CAVITY,))
    _paint_shape(tissue, grid, anat.gallbladder, BILE, (CAVITY,))
    _paint_hollow_organ(tissue, grid, anat.stomach, gas_above=anat.stomach.centre[1] + 8.0)
    for vein in anat.portal_vein:
        _paint_shape(tissue, grid, vein, PORTAL, (CAVITY,))
    liver_box = _paint_liver(tissue, grid, anat)
    _paint_gut(tissue, grid, anat)
    return tissue, liver_box


def _paint(tissue, box: Box, mask, tid, onto: Sequence[int]):
    """Set `tid` where mask is true inside box, only over the tissues in `onto`."""
    view = tissue[box.sl]
    mask = np.broadcast_to(mask, view.shape)
    allowed = np.zeros(256, dtype=bool)
    allowed[list(onto)] = True
    view[mask & allowed[view]] = tid


def _paint_shape(tissue, grid, shape, tid, onto: Sequence[int], grow=0.0):
    """Paint an Ellipsoid or Tube (optionally grown by `grow` mm) into the tissue map."""
    box = shape.box(grid, pad=max(grow, 0.0))
    if box is not None:
        _paint(tissue, box, shape.signed(box.x, box.y, box.z) < grow, tid, onto)


def _body_cross_section(grid: Grid, anat: Anatomy) -> np.ndarray:
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
    for (cx, cy, r), tid in ((AORTA_CIRCLE, AORTA), (IVC_CIRCLE, IVC)):
        t2[((x - cx) ** 2 + (y - cy) ** 2 < r**2) & (t2 == CAVITY)] = tid
    return t2


def _paint_spine(tissue, grid: Grid, anat: Anatomy):
    """Lumbar-like vertebrae every 30 mm: body (cortical rim, cancellous core, endplates), disc,
    spinal canal, neural arch, transverse and spinous processes."""
    box = voxels_in_box(grid, (-45, -110, -np.inf), (45, -20, np.inf))
    if box is None:
        return
    x, y = box.x[:, :, 0], box.y[:, :, 0]
    vx, vy = VERTEBRA_CENTRE
    cx, cy = CANAL_CENTRE
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
    """Cortical tubes first, then marrow 2 mm inside them."""
    onto = (FAT, MUSCLE, CAVITY, LUNG)
    for rib in anat.ribs:
        _paint_shape(tissue, grid, rib, BONE_CORTEX, onto)
    for rib in anat.ribs:
        _paint_shape(tissue, grid, rib, BONE_MARROW, (BONE_CORTEX,), grow=-2.0)


def _paint_thorax_base(tissue, grid: Grid, anat: Anatomy):
    """Lung bases above the diaphragm domes, a 4 mm muscular diaphragm, and the heart."""
    box = voxels_in_box(grid, (-np.inf, -np.inf, 30.0), (np.inf, np.inf, np.inf))
    if box is None:
        return
    dome = diaphragm_height(box.x, box.y)
    _paint(tissue, box, box.z > dome, LUNG, (CAVITY,))
    _paint(tissue, box, box.z > dome - 4.0, MUSCLE, (CAVITY,))
    _paint_shape(tissue, grid, anat.heart, HEART, (LUNG,))


def _paint_kidneys(tissue, grid, anat):
    """Cortex, a medulla core, and renal-sinus fat opening medially at the hilum."""
    for kidney in anat.kidneys:
        box = kidney.box(grid)
        if box is None:
            continue
        rho = kidney.rho(box.x, box.y, box.z)
        _paint(tissue, box, rho < 1, KIDNEY_CORTEX, (CAVITY,))
        _paint(tissue, box, rho < 0.72, KIDNEY_MEDULLA, (KIDNEY_CORTEX,))
        lateral = kidney.rot[:, 0] * np.sign(kidney.centre[0])  # local axis 0 points outwards
        sinus = Ellipsoid(kidney.centre - 0.62 * kidney.semi[0] * lateral,
                          kidney.semi * np.array([0.42, 0.35, 0.42]), kidney.rot)
        _paint(tissue, box, sinus.rho(box.x, box.y, box.z) < 1, RENAL_SINUS,
               (KIDNEY_CORTEX, KIDNEY_MEDULLA))


def _paint_hollow_organ(tissue, grid, outer, gas_above=None):
    """Paint a 3 mm gut wall around fluid; with gas_above (mm of y), gas floats anteriorly."""
    box = outer.box(grid)
    if box is None:
        return
    d = outer.signed(box.x, box.y, box.z)
    _paint(tissue, box, d < 0, GUT_WALL, (CAVITY,))
    _paint(tissue, box, d < -3.0, GUT_FLUID, (GUT_WALL,))
    if gas_above is not None:
        _paint(tissue, box, (d < -3.0) & (box.y > gas_above), GAS, (GUT_FLUID,))


def _paint_gut(tissue, grid, anat):
    """Colon and small-bowel loops."""
    for segment in anat.colon:
        # Colon: mostly gas with some dependent (posterior) faecal fluid.
        _paint_hollow_organ(tissue, grid, segment, gas_above=min(segment.a[1], segment.b[1]) - 8.0)
    for loop, gassy in zip(anat.small_bowel, anat.bowel_gas):
        for segment in loop:
            _paint_hollow_organ(tissue, grid, segment,
                                gas_above=segment.a[1] + 2.0 if gassy else None)


def _paint_liver(tissue, grid: Grid, anat: Anatomy) -> Box | None:
    """Paint the liver on free visceral space (so kidney, IVC, gallbladder leave impressions)
    and return the box that holds it."""
    box = voxels_in_box(grid, *anat.liver.bounds())
    if box is None:
        return None
    inside = anat.liver.signed(box.x, box.y, box.z) < 0
    _paint(tissue, box, inside, LIVER, (CAVITY,))
    return box
