"""From anatomy to image: tissue map -> nominal HU -> liver texture and vessels -> lesions ->
scanner blur and correlated noise -> int16."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .anatomy import sample_anatomy
from .geometry import SmoothField, make_grid
from .lesions import add_lesions
from .tissues import LIVER, NOMINAL_HU, paint_tissue_map
from .vessels import vessel_fraction

VESSEL_HU = 175.0          # intrahepatic portal and hepatic veins, portal-venous phase
LIVER_TEXTURE_SD = 4.0     # HU, fine correlated parenchymal texture
LIVER_TEXTURE_MM = 2.0     # correlation length of that texture
LIVER_DRIFT_SD = 3.0       # HU, slow intensity drift across the liver
NOISE_SD = 12.0            # HU, image noise after correlation
NOISE_CORRELATION_MM = 0.7 # in-plane Gaussian sigma that correlates the noise
BLUR_MM = 0.8              # in-plane reconstruction-kernel sigma
SLICE_BLUR_VOXELS = 0.35   # through-plane sigma in slices (slice-sensitivity profile)
HU_RANGE = (-1024, 3071)   # int16 CT storage range


class Parts(NamedTuple):
    """make_phantom's result plus internal maps (tests use them to check tissue intensities)."""

    volume: np.ndarray
    label: np.ndarray
    tissue: np.ndarray  # uint8 tissue ids (see tissues.py)
    vessels: np.ndarray  # bool, intrahepatic vessel voxels (partial-volume fraction >= 0.5)


def build(shape, spacing, lesions, seed_seq: np.random.SeedSequence) -> Parts:
    """The phantom for validated arguments (see make_phantom), with its internal maps."""
    from scipy import ndimage

    # Separate streams, so lesions=0 and lesions=N share the anatomy and the noise.
    anatomy_ss, noise_ss, lesion_ss = seed_seq.spawn(3)
    anat = sample_anatomy(np.random.default_rng(anatomy_ss))
    noise_rng = np.random.default_rng(noise_ss)
    grid = make_grid(shape, spacing)

    # 1. Tissue map, painted from the outside in; later organs take only free space.
    tissue, liver_box = paint_tissue_map(grid, anat)

    # 2. Intensities: nominal HU per tissue, then liver texture and vessels.
    hu = NOMINAL_HU[tissue]
    label = (tissue == LIVER).astype(np.uint8)
    vessels = np.zeros(shape, dtype=bool)
    segments = np.concatenate([anat.portal_tree, anat.hepatic_tree])
    if liver_box is not None:
        sub = liver_box.grid(spacing)
        liver = label[liver_box.sl] == 1
        texture = correlated_noise(
            noise_rng, sub.shape, [LIVER_TEXTURE_MM / s for s in spacing], LIVER_TEXTURE_SD
        )
        drift = SmoothField(noise_rng, 8, (30.0, 90.0), LIVER_DRIFT_SD)
        frac = vessel_fraction(sub, segments) * liver
        parenchyma = NOMINAL_HU[LIVER] + texture + drift(liver_box.x, liver_box.y, liver_box.z)
        hu_box = hu[liver_box.sl]
        hu_box[liver] = ((1 - frac) * parenchyma + frac * np.float32(VESSEL_HU))[liver]
        vessels[liver_box.sl] = frac >= 0.5

    # 3. Lesions (own random stream, so lesions=0 and lesions=N share everything else).
    if lesions and liver_box is not None:
        lesion_rng = np.random.default_rng(lesion_ss)
        add_lesions(lesion_rng, hu, label, grid, liver_box, segments, lesions)

    # 4. Scanner: reconstruction blur, correlated noise, int16.
    sigma_blur = (BLUR_MM / spacing[0], BLUR_MM / spacing[1], SLICE_BLUR_VOXELS)
    hu = ndimage.gaussian_filter(hu, sigma_blur, mode="nearest", truncate=3.0)
    hu += correlated_noise(
        noise_rng, shape, (NOISE_CORRELATION_MM / spacing[0], NOISE_CORRELATION_MM / spacing[1], 0),
        NOISE_SD,
    )
    np.clip(hu, *HU_RANGE, out=hu)
    volume = np.rint(hu).astype(np.int16)
    return Parts(volume, label, tissue, vessels)


def correlated_noise(rng, shape, sigma_vox, sd) -> np.ndarray:
    """Gaussian noise with standard deviation `sd` after smoothing with `sigma_vox` per axis."""
    from scipy import ndimage

    noise = rng.standard_normal(shape, dtype=np.float32)
    gain = 1.0
    for axis, s in enumerate(sigma_vox):
        if s <= 0.05:  # a kernel this narrow is a delta: skip the pass
            continue
        radius = max(1, int(math.ceil(3 * s)))
        k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
        k /= k.sum()
        # Wrap mode keeps the noise stationary up to the edges of the volume.
        ndimage.correlate1d(noise, k.astype(np.float32), axis=axis, output=noise, mode="wrap")
        # Smoothing shrinks the variance by sum(k^2); undo it so `sd` is the final level.
        gain *= math.sqrt(float((k**2).sum()))
    noise *= np.float32(sd / gain)
    return noise
