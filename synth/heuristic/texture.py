"""Lesion appearance: phenotype, contrast to the parenchyma and inner texture, in HU.

Contrast follows the host's phase (:mod:`synth.heuristic.phase`) and published lesion-to-liver
differences (sources in ``docs/synthesis.md``, "Contrast"):

- unenhanced: tumours are mildly darker than the liver, about 12 HU (6-30 HU);
- portal-venous: that same difference plus a share of the liver's enhancement over its unenhanced
  level (``liver_hu - 55``), since hypovascular tumours enhance much less than parenchyma. The
  share is 0.55 +- 0.2, which in a 118 HU liver gives about -47 HU (published hypovascular
  metastases about -57 +- 18 HU; LiTS-117's own tumours about -47 HU);
- arterial: the liver has enhanced less, so hypodense lesions are less dark and hyperdense
  (hypervascular) ones brighter.

The contrast drawn here is what a measurement will find: the painter
(:mod:`synth.heuristic.paint`) scales the lesion's pattern so that the mean of the lesion minus
the mean of the liver 1-4 mm around it equals it after the soft edge. The change is *added* to the
host scan, so the host's own noise and reconstruction texture stay in the lesion; the extra inner
texture is a fraction of the host's noise, so a lesion is no noisier than real ones.

Phenotypes:
- ``hypodense``: darker than parenchyma, the common case; from 20 mm with mottled heterogeneity
  (correlation 4-10 mm) and often a darker centre.
- ``isodense``: within 2-8 HU of parenchyma, visible mainly by texture.
- ``hyperdense``: brighter (hypervascular lesions).
- ``rim-enhancing``: a hypodense body with a brighter ring 1.5-3 mm wide at the edge.
- ``necrotic``: a hypodense rim of viable tumour around a much darker fluid-like core.

``"mix"`` is the realistic mix (:data:`REALISTIC_WEIGHTS`: 92.5 % hypodense, 1.5 % iso- or
hyperdense); ``"diverse"`` the earlier, deliberately varied one (:data:`DIVERSE_WEIGHTS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..defaults import EDGE_MM_BY_SIZE

# What real portal-venous tumours look like: nearly all hypodense, a few with a ring or a
# necrotic core, iso- or hyperdense ones rare (about 1 % of LiTS-like tumours).
REALISTIC_WEIGHTS: dict[str, float] = {
    "hypodense": 0.925,
    "necrotic": 0.035,
    "rim-enhancing": 0.025,
    "isodense": 0.008,
    "hyperdense": 0.007,
}
# A deliberately varied mix, for training a model to find unusual lesions too.
DIVERSE_WEIGHTS: dict[str, float] = {
    "hypodense": 0.65,
    "isodense": 0.08,
    "hyperdense": 0.09,
    "rim-enhancing": 0.10,
    "necrotic": 0.08,
}
PHENOTYPE_PRESETS: dict[str, dict[str, float]] = {"mix": REALISTIC_WEIGHTS, "diverse": DIVERSE_WEIGHTS}
PHENOTYPE_WEIGHTS = REALISTIC_WEIGHTS  # the default mix
PHENOTYPES = ("hypodense", "isodense", "hyperdense", "rim-enhancing", "necrotic")
# A ring or a core needs room: below this diameter a mix draws only uniform phenotypes.
STRUCTURED_FROM_MM = 10.0
UNIFORM_PHENOTYPES = ("hypodense", "isodense", "hyperdense")
# From this diameter lesions get heterogeneity at the scale of centimetres.
HETEROGENEOUS_FROM_MM = 20.0

UNENHANCED_LIVER_HU = 55.0  # a typical unenhanced liver: the zero of its enhancement
_UNENHANCED_DIFFERENCE_HU = (12.0, 5.0, 6.0, 30.0)  # lesion darker than liver: mean, sd, clip
_ENHANCEMENT_SHARE = (0.55, 0.2, 0.15, 1.1)  # share of the liver's enhancement the lesion lacks
# Lesions under 10 mm are at least this many noise sigmas darker: a faint small lesion is one a
# reader (and a model) cannot see, so it would teach labels on invisible tissue.
_SMALL_VISIBLE_NOISES = 2.0
# Inner texture, on lesions of every size: real tumours are blotchier than the noise of the liver
# around them, with structure of a few millimetres that survives a 2.8 mm slice average. Chosen
# on the realism protocol's tune part (docs/realism.md, "Texture"): 0.15-0.45 x noise at 1.5-3 mm
# and only from 64 voxels left synthetic lesions 1-3 HU smoother inside than real ones.
_TEXTURE_OF_NOISE = (0.7, 1.1)  # standard deviation, as a fraction of the host's noise
_TEXTURE_MM = (2.0, 4.0)  # correlation length, mm
_TEXTURE_FROM_VOXELS = 0  # texture on lesions of at least this many voxels
# Real tumours are also rougher than the liver at the scale of one voxel: their neighbouring voxels
# differ more (GLCM contrast, about 19.6 against 19.0 HU for the smooth texture alone, native
# grid; 17.5 against 15.8 on 2.8 mm slices). An uncorrelated part of this fraction of the host's
# noise closes that gap; chosen on the realism protocol's tune part over ten seeds
# (docs/realism.md, "Grain").
_GRAIN_OF_NOISE = 0.6
_TEXTURE_FULL_VOXELS = 64  # ... at full strength from this many (weaker in proportion below)


@dataclass(frozen=True)
class Appearance:
    """Everything that sets a lesion's intensities; all values in HU or mm.

    ``contrast_hu`` is the change of the lesion body, ``rim_hu`` and ``core_hu`` those of a ring
    and a core; the lesion's pattern built from them is scaled by the painter so that its
    measured mean contrast equals the pattern's own mean over the lesion.
    """

    phenotype: str
    contrast_hu: float  # change of the lesion body relative to the host
    texture_hu: float  # standard deviation of the fine inner texture
    texture_mm: float  # correlation length of the fine inner texture
    edge_mm: float  # 10-90 % width of the soft edge
    grain_hu: float = 0.0  # standard deviation of the texture's voxel-level part (uncorrelated)
    rim_hu: float = 0.0  # change in the ring (rim-enhancing)
    rim_mm: float = 0.0  # ring width
    core_hu: float = 0.0  # change in the core (necrotic)
    core_depth: float = 0.0  # relative radius inside which the core lies
    mottle: float = 0.0  # coarse heterogeneity, relative to the body's change
    mottle_mm: float = 0.0  # its correlation length
    centre_gain: float = 0.0  # extra darkening of the centre, relative to the body's change
    phase: str = "portal-venous"  # the phase the contrast was drawn for


def parse_phenotype(phenotype) -> dict[str, float]:
    """Turn a phenotype name, a preset (``"mix"``, ``"diverse"``) or a ``{name: weight}`` dict
    into normalised weights."""
    if isinstance(phenotype, str):
        if phenotype in PHENOTYPE_PRESETS:
            return dict(PHENOTYPE_PRESETS[phenotype])
        if phenotype not in PHENOTYPES:
            raise ValueError(f"unknown phenotype {phenotype!r}; use one of {', '.join(PHENOTYPES)}, "
                             f"'mix' (realistic) or 'diverse'")
        return {phenotype: 1.0}
    if isinstance(phenotype, Mapping):
        unknown = set(phenotype) - set(PHENOTYPES)
        if unknown:
            raise ValueError(f"unknown phenotype(s) {sorted(unknown)}; use {', '.join(PHENOTYPES)}")
        total = float(sum(phenotype.values()))
        if not total > 0 or min(phenotype.values()) < 0:
            raise ValueError(f"phenotype weights must be non-negative with a positive sum; "
                             f"got {dict(phenotype)}")
        return {name: float(w) / total for name, w in phenotype.items()}
    raise TypeError(f"phenotype must be a name, 'mix' or a dict of weights (or the preset 'diverse'); "
                    f"got {phenotype!r}")


def sample_phenotype(weights: dict[str, float], diameter_mm: float, rng: np.random.Generator) -> str:
    """Draw a phenotype; lesions under 10 mm only draw uniform ones when several are allowed."""
    names = list(weights)
    if len(names) > 1 and diameter_mm < STRUCTURED_FROM_MM:
        uniform = [n for n in names if n in UNIFORM_PHENOTYPES]
        names = uniform or names
    cumulative = np.cumsum([weights[n] for n in names])
    return names[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]


def edge_range_for(diameter_mm: float) -> tuple[float, float]:
    """The default range of the soft edge's 10-90 % width in mm for a lesion of this diameter."""
    for below_mm, edge_range in EDGE_MM_BY_SIZE:
        if diameter_mm < below_mm:
            return edge_range
    return EDGE_MM_BY_SIZE[-1][1]


def hypodense_contrast_hu(phase: str, liver_hu: float, rng: np.random.Generator) -> float:
    """A hypodense lesion's contrast to its liver in HU (negative) for a phase and liver level."""
    mean, sd, low, high = _UNENHANCED_DIFFERENCE_HU
    difference = float(np.clip(rng.normal(mean, sd), low, high))
    if phase == "unenhanced":
        return -difference
    mean, sd, low, high = _ENHANCEMENT_SHARE
    share = float(np.clip(rng.normal(mean, sd), low, high))
    # The liver's own enhancement; at least a plausible minimum if the liver is unusually dark.
    enhancement = max(liver_hu - UNENHANCED_LIVER_HU, 30.0 if phase == "portal-venous" else 15.0)
    return -(difference + share * enhancement)


def sample_appearance(
    phenotype: str,
    diameter_mm: float,
    liver_hu: float,
    noise_hu: float,
    rng: np.random.Generator,
    *,
    edge_mm: tuple[float, float] | None = None,
    phase: str = "portal-venous",
) -> Appearance:
    """Draw the intensities of one lesion in a liver of median ``liver_hu`` and noise ``noise_hu``.

    Parameters
    ----------
    phenotype : str
        One of :data:`PHENOTYPES`.
    diameter_mm : float
        Equivalent diameter; sets the edge width, the structures a lesion can hold, and its
        heterogeneity.
    liver_hu, noise_hu : float
        The host liver's median and voxel noise (robust standard deviation), in HU.
    edge_mm : (float, float), optional
        Range of the soft edge's 10-90 % width in mm; by default it grows with the diameter
        (:data:`synth.defaults.EDGE_MM_BY_SIZE`).
    phase : str
        ``"portal-venous"``, ``"arterial"`` or ``"unenhanced"`` (resolved, not ``"auto"``).
    """
    edge = float(rng.uniform(*(edge_range_for(diameter_mm) if edge_mm is None else edge_mm)))
    texture_hu = float(rng.uniform(*_TEXTURE_OF_NOISE)) * float(noise_hu)
    texture_mm = float(rng.uniform(*_TEXTURE_MM))
    enhancement = max(liver_hu - UNENHANCED_LIVER_HU, 0.0) if phase != "unenhanced" else 0.0
    base = Appearance(phenotype, 0.0, texture_hu=texture_hu, texture_mm=texture_mm,
                      grain_hu=_GRAIN_OF_NOISE * float(noise_hu), edge_mm=edge, phase=phase)
    if diameter_mm >= HETEROGENEOUS_FROM_MM:
        # Large tumours are heterogeneous at the scale of centimetres (mottled, partly necrotic).
        base = replace(base, mottle=float(rng.uniform(0.1, 0.25)), mottle_mm=float(rng.uniform(4.0, 10.0)))
    if phenotype == "hypodense":
        contrast = hypodense_contrast_hu(phase, liver_hu, rng)
        if diameter_mm < STRUCTURED_FROM_MM:
            contrast = min(contrast, -_SMALL_VISIBLE_NOISES * float(noise_hu))
        centre = float(rng.uniform(0.0, 0.4)) if diameter_mm >= HETEROGENEOUS_FROM_MM else 0.0
        return replace(base, contrast_hu=contrast, centre_gain=centre)
    if phenotype == "isodense":
        contrast = float(rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 8.0))
        return replace(base, contrast_hu=contrast, texture_hu=texture_hu + 0.3 * float(noise_hu))
    if phenotype == "hyperdense":
        brightest = {"unenhanced": 20.0, "portal-venous": 40.0, "arterial": 60.0}[phase]
        return replace(base, contrast_hu=float(rng.uniform(0.25 * brightest, brightest)))
    if phenotype == "rim-enhancing":
        contrast = float(rng.uniform(1.0, 1.3)) * hypodense_contrast_hu(phase, liver_hu, rng)
        rim_mm = float(np.clip(rng.uniform(0.08, 0.15) * diameter_mm, 1.5, 3.0))
        # The ring is enhancing tissue: it needs contrast agent (weak without it).
        rim_hu = float(rng.uniform(0.15, 0.6)) * max(enhancement, 10.0)
        return replace(base, contrast_hu=contrast, rim_hu=rim_hu, rim_mm=rim_mm)
    if phenotype == "necrotic":
        contrast = float(rng.uniform(0.6, 1.0)) * hypodense_contrast_hu(phase, liver_hu, rng)
        # The core is fluid-like: close to water (about 10 HU), whatever the phase.
        core = -float(rng.uniform(0.7, 0.95)) * max(liver_hu - 10.0, 20.0)
        return replace(base, contrast_hu=contrast, core_hu=min(core, contrast), core_depth=float(rng.uniform(0.4, 0.7)))
    raise ValueError(f"unknown phenotype {phenotype!r}")


def lesion_pattern(appearance: Appearance, distance_mm: np.ndarray, depth: np.ndarray, spacing,
                   rng: np.random.Generator) -> np.ndarray:
    """The lesion's change in HU before the soft edge, without the fine texture (same shape as
    the box): body, ring, core, darker centre and coarse mottling."""
    change = np.full(distance_mm.shape, appearance.contrast_hu, dtype=np.float32)
    if appearance.rim_mm > 0:
        # A smooth ring centred half a ring width inside the surface, so it has no hard edges.
        half = 0.5 * appearance.rim_mm
        ring = np.exp(-(((distance_mm + half) / half) ** 2))
        change += (appearance.rim_hu - appearance.contrast_hu) * ring
    if appearance.core_depth > 0:
        core = np.clip((appearance.core_depth + 0.15 - depth) / 0.3, 0.0, 1.0)
        change += (appearance.core_hu - appearance.contrast_hu) * core
    if appearance.centre_gain > 0:
        centre = np.clip(1.0 - depth, 0.0, 1.0) ** 2
        change += appearance.centre_gain * appearance.contrast_hu * centre
    if appearance.mottle > 0:
        mottling = correlated_noise(change.shape, appearance.mottle_mm, spacing, rng)
        change += (appearance.mottle * abs(appearance.contrast_hu)) * mottling
    return change


def fine_texture(appearance: Appearance, shape, inside_count: int, spacing, rng: np.random.Generator) -> np.ndarray:
    """The inner texture in HU: a correlated part and a voxel-level grain. The correlated part's
    strength grows with the lesion up to ``_TEXTURE_FULL_VOXELS`` voxels: on a lesion of a few
    voxels texture of a few millimetres is one random offset of the whole lesion, and a lesion must
    stay darker than its rim for its label to mean something. The grain, independent from voxel to
    voxel, averages out over any lesion and is drawn at full strength."""
    texture = np.zeros(shape, dtype=np.float32)
    if appearance.texture_hu > 0 and inside_count >= _TEXTURE_FROM_VOXELS:
        strength = appearance.texture_hu * min(1.0, inside_count / _TEXTURE_FULL_VOXELS)
        texture += np.float32(strength) * correlated_noise(shape, appearance.texture_mm, spacing, rng)
    if appearance.grain_hu > 0:
        texture += np.float32(appearance.grain_hu) * rng.standard_normal(shape, dtype=np.float32)
    return texture


def intensity_change(
    appearance: Appearance,
    distance_mm: np.ndarray,
    depth: np.ndarray,
    spacing,
    rng: np.random.Generator,
) -> np.ndarray:
    """The HU change inside the lesion before the soft edge is applied (same shape as the box):
    the pattern plus the fine texture, uncalibrated."""
    change = lesion_pattern(appearance, distance_mm, depth, spacing, rng)
    return change + fine_texture(appearance, change.shape, int(np.count_nonzero(depth < 1)), spacing, rng)


def correlated_noise(shape, length_mm: float, spacing, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed to a correlation length in mm (not voxels)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, [length_mm / (2.0 * s) for s in spacing], mode="reflect", truncate=3.0)
    return smooth / max(float(smooth.std()), 1e-6)
