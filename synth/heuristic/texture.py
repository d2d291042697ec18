"""Lesion appearance: phenotype, contrast to the parenchyma and inner texture, in HU.

Values are for portal-venous CT, where most liver lesions are hypodense (roughly 20-150 HU below
parenchyma; LiTS-117's tumours sit about 50 HU below its 118 HU liver). A lesion's darkening scales
with how much the host liver is enhanced above water (``liver_hu - 10``), so lesions in an
unenhanced or late-phase scan (liver near 50 HU) are darkened by 10-30 HU rather than pushed to
fat-like values. The change is *added* to the host scan, so the host's own noise and reconstruction
texture stay in the lesion.

Phenotypes:
- ``hypodense``: darker than parenchyma, the common case (metastases, most HCC in this phase).
- ``isodense``: within 10-20 HU of parenchyma, visible mainly by texture; hard for models too.
- ``hyperdense``: brighter (hypervascular lesions, some HCC).
- ``rim-enhancing``: a hypodense body with a brighter ring 1.5-3 mm wide at the edge.
- ``necrotic``: a moderately hypodense rim of viable tumour around a much darker fluid-like core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

PHENOTYPE_WEIGHTS: dict[str, float] = {
    "hypodense": 0.65,
    "isodense": 0.08,
    "hyperdense": 0.09,
    "rim-enhancing": 0.10,
    "necrotic": 0.08,
}
PHENOTYPES = tuple(PHENOTYPE_WEIGHTS)
# A ring or a core needs room: below this diameter "mix" draws only uniform phenotypes.
STRUCTURED_FROM_MM = 10.0
UNIFORM_PHENOTYPES = ("hypodense", "isodense", "hyperdense")


@dataclass(frozen=True)
class Appearance:
    """Everything that sets a lesion's intensities; all values in HU or mm."""

    phenotype: str
    contrast_hu: float  # change of the lesion body relative to the host
    texture_hu: float  # standard deviation of the inner texture
    texture_mm: float  # correlation length of the inner texture
    edge_mm: float  # 10-90 % width of the soft edge
    rim_hu: float = 0.0  # change in the ring (rim-enhancing)
    rim_mm: float = 0.0  # ring width
    core_hu: float = 0.0  # change in the core (necrotic)
    core_depth: float = 0.0  # relative radius inside which the core lies


def parse_phenotype(phenotype) -> dict[str, float]:
    """Turn a phenotype name, ``"mix"`` or a ``{name: weight}`` dict into normalised weights."""
    if isinstance(phenotype, str):
        if phenotype == "mix":
            return dict(PHENOTYPE_WEIGHTS)
        if phenotype not in PHENOTYPE_WEIGHTS:
            raise ValueError(f"unknown phenotype {phenotype!r}; use one of {', '.join(PHENOTYPES)} or 'mix'")
        return {phenotype: 1.0}
    if isinstance(phenotype, dict):
        unknown = set(phenotype) - set(PHENOTYPE_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown phenotype(s) {sorted(unknown)}; use {', '.join(PHENOTYPES)}")
        total = float(sum(phenotype.values()))
        if not total > 0 or min(phenotype.values()) < 0:
            raise ValueError(f"phenotype weights must be non-negative with a positive sum; got {phenotype}")
        return {name: float(w) / total for name, w in phenotype.items()}
    raise TypeError(f"phenotype must be a name, 'mix' or a dict of weights; got {phenotype!r}")


def sample_phenotype(weights: dict[str, float], diameter_mm: float, rng: np.random.Generator) -> str:
    """Draw a phenotype; lesions under 10 mm only draw uniform ones when several are allowed."""
    names = list(weights)
    if len(names) > 1 and diameter_mm < STRUCTURED_FROM_MM:
        uniform = [n for n in names if n in UNIFORM_PHENOTYPES]
        names = uniform or names
    cumulative = np.cumsum([weights[n] for n in names])
    return names[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]


def sample_appearance(
    phenotype: str,
    diameter_mm: float,
    liver_hu: float,
    noise_hu: float,
    rng: np.random.Generator,
    *,
    edge_mm: tuple[float, float] = (1.5, 3.0),
) -> Appearance:
    """Draw the intensities of one lesion in a liver of median ``liver_hu`` and noise ``noise_hu``.

    Lesions under 10 mm get at least 2.5 times the host's noise as contrast (and at least 25 HU),
    so that small lesions stay visible and learnable rather than drowning in noise.
    """
    visible = max(25.0, 2.5 * noise_hu) if diameter_mm < STRUCTURED_FROM_MM else 10.0
    enhancement = max(liver_hu - 10.0, 40.0)  # liver above water; at least 40 HU of headroom
    edge = float(rng.uniform(*edge_mm))
    texture_hu = float(rng.uniform(3.0, 10.0))
    texture_mm = float(rng.uniform(1.5, 3.0))
    if phenotype == "hypodense":
        contrast = -max(float(rng.uniform(0.25, 0.75)) * enhancement, visible)
        return Appearance(phenotype, contrast, texture_hu, texture_mm, edge)
    if phenotype == "isodense":
        contrast = float(rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 20.0))
        return Appearance(phenotype, contrast, texture_hu + 4.0, texture_mm, edge)
    if phenotype == "hyperdense":
        contrast = float(rng.uniform(max(visible, 15.0), 45.0))
        return Appearance(phenotype, contrast, texture_hu, texture_mm, edge)
    if phenotype == "rim-enhancing":
        contrast = -float(rng.uniform(0.35, 0.8)) * enhancement
        rim_mm = float(np.clip(rng.uniform(0.08, 0.15) * diameter_mm, 1.5, 3.0))
        return Appearance(phenotype, contrast, texture_hu, texture_mm, edge,
                          rim_hu=float(rng.uniform(20.0, 50.0)), rim_mm=rim_mm)
    if phenotype == "necrotic":
        contrast = -float(rng.uniform(0.2, 0.5)) * enhancement
        # The core is fluid-like: close to water, i.e. nearly the whole enhancement below the liver.
        return Appearance(phenotype, contrast, texture_hu, texture_mm, edge,
                          core_hu=-float(rng.uniform(0.7, 0.95)) * enhancement,
                          core_depth=float(rng.uniform(0.4, 0.7)))
    raise ValueError(f"unknown phenotype {phenotype!r}")


def intensity_change(
    appearance: Appearance,
    distance_mm: np.ndarray,
    depth: np.ndarray,
    spacing,
    rng: np.random.Generator,
) -> np.ndarray:
    """The HU change inside the lesion before the soft edge is applied (same shape as the box)."""
    change = np.full(distance_mm.shape, appearance.contrast_hu, dtype=np.float32)
    if appearance.rim_mm > 0:
        # A smooth ring centred half a ring width inside the surface, so it has no hard edges.
        half = 0.5 * appearance.rim_mm
        ring = np.exp(-(((distance_mm + half) / half) ** 2))
        change += (appearance.rim_hu - appearance.contrast_hu) * ring
    if appearance.core_depth > 0:
        core = np.clip((appearance.core_depth + 0.15 - depth) / 0.3, 0.0, 1.0)
        change += (appearance.core_hu - appearance.contrast_hu) * core
    # Texture finer than the lesion is invisible; skipping it keeps tiny lesions cheap.
    if appearance.texture_hu > 0 and np.count_nonzero(depth < 1) >= 64:
        change += appearance.texture_hu * correlated_noise(change.shape, appearance.texture_mm, spacing, rng)
    return change


def correlated_noise(shape, length_mm: float, spacing, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed to a correlation length in mm (not voxels)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, [length_mm / (2.0 * s) for s in spacing], mode="reflect", truncate=3.0)
    return smooth / max(float(smooth.std()), 1e-6)
