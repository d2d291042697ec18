"""Per-lesion features from a CT crop, a lesion mask and the voxel spacing, in HU or mm.

Every feature is computed the same way for a real and a synthetic lesion, from the image and the
label alone (never from a synthesiser's records), so the two can be compared.

Intensity
    ``contrast_hu``
        Mean HU inside the lesion minus mean HU of the tumour-free liver in a shell 1-4 mm
        outside it (negative: hypodense).
    ``texture_sd_hu``
        Standard deviation of HU over the lesion's inner voxels (deeper than 1.5 mm, so that the
        edge's partial volume does not count as texture; all lesion voxels when fewer than 8 are
        that deep).
    ``glcm_contrast_hu``, ``glcm_homogeneity``
        Grey-level co-occurrence of in-plane neighbours (1 voxel, 0 and 90 degrees) over the
        lesion's voxels, quantised in 10 HU bins around the lesion's median: the root of GLCM
        contrast times the bin width (an RMS neighbour difference in HU) and GLCM homogeneity.
    ``edge_width_mm``
        10-90 % rise distance across the boundary: the mean HU binned by signed distance to the
        boundary (lesion inside, tumour-free liver outside) is fitted with a Gaussian-blurred
        step, whose 10-90 % width is 2 x 1.2816 sigma.

Shape
    ``diameter_mm``
        Equivalent diameter, of the sphere with the lesion's volume (voxel count x voxel volume).
    ``sphericity``
        pi^(1/3) (6 V)^(2/3) / A: 1 for a sphere, lower for elongated or irregular bodies. V and A
        both come from one closed marching-cubes surface of the mask lightly smoothed (0.5 voxel)
        to remove voxel steps: A is the sum of the triangles' areas, V the enclosed volume by the
        divergence theorem. Measured on one closed surface, the isoperimetric inequality keeps
        it at most 1 (a voxel-count volume over a smoothed area could exceed 1).
    ``elongation``
        Longest over shortest principal axis, from the covariance of the voxel centres in mm.
    ``major_axis_mm``, ``minor_axis_mm``
        Full lengths of the principal axes of the ellipsoid with the same second moments
        (2 sqrt(5 lambda) for covariance eigenvalue lambda).
    ``roughness``
        RMS deviation of the surface from the lesion's moment ellipsoid, relative to the
        equivalent radius: the distance from the centroid to each surface triangle is compared
        with the ellipsoid's radius in that direction, area-weighted. 0 for an ellipsoid; lobes,
        spikes and ragged edges raise it.
    ``solidity``
        Volume over the volume of the convex hull of the surface: lobulation and concavities
        lower it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, optimize, spatial, special
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import marching_cubes, mesh_surface_area

# Bumped whenever a feature's definition changes, so that a stored model (a quality gate) trained
# on older features is refused instead of silently misread. 2: sphericity from one closed mesh.
FEATURE_VERSION = 2

FEATURE_NAMES = (
    "contrast_hu",
    "texture_sd_hu",
    "glcm_contrast_hu",
    "glcm_homogeneity",
    "edge_width_mm",
    "diameter_mm",
    "sphericity",
    "elongation",
    "major_axis_mm",
    "minor_axis_mm",
    "roughness",
    "solidity",
)
INTENSITY_FEATURES = FEATURE_NAMES[:5]
SHAPE_FEATURES = FEATURE_NAMES[5:]
UNITS = {
    "contrast_hu": "HU", "texture_sd_hu": "HU", "glcm_contrast_hu": "HU", "glcm_homogeneity": "",
    "edge_width_mm": "mm", "diameter_mm": "mm", "sphericity": "", "elongation": "",
    "major_axis_mm": "mm", "minor_axis_mm": "mm", "roughness": "", "solidity": "",
}

_WIDTH_10_90 = 2.0 * special.ndtri(0.9)  # 10-90 % width of a Gaussian-blurred step, in sigmas


def lesion_features(
    volume: np.ndarray,
    lesion: np.ndarray,
    spacing,
    *,
    liver: np.ndarray | None = None,
    shell_mm: tuple[float, float] = (1.0, 4.0),
    inner_depth_mm: float = 1.5,
    profile_mm: float = 6.0,
    glcm_bin_hu: float = 10.0,
) -> dict[str, float]:
    """All features of one lesion; see the module docstring for definitions and units.

    Parameters
    ----------
    volume : (X, Y, Z) array
        CT crop in HU around the lesion, with at least ``profile_mm`` of margin where possible.
    lesion : (X, Y, Z) bool array
        The lesion's voxels (one connected body).
    spacing : three floats
        Voxel size in mm.
    liver : (X, Y, Z) bool array, optional
        Tumour-free liver voxels (label 1): the only voxels the shell and the outer edge profile
        read. Everything outside the lesion when not given.
    shell_mm : (float, float)
        Inner and outer distance in mm of the parenchyma shell for ``contrast_hu``.
    inner_depth_mm : float
        Depth in mm below which voxels count as the lesion's interior for ``texture_sd_hu``.
    profile_mm : float
        Reach in mm of the edge profile on each side of the boundary.
    glcm_bin_hu : float
        Quantisation step in HU for the co-occurrence matrix.

    Returns
    -------
    dict
        ``{name: value}`` for every name in :data:`FEATURE_NAMES`; NaN where a feature cannot be
        measured (no liver around the lesion, too few voxels for a fit).
    """
    volume = np.asarray(volume, dtype=np.float64)
    lesion = np.asarray(lesion, dtype=bool)
    spacing = tuple(float(s) for s in spacing)
    if volume.shape != lesion.shape or volume.ndim != 3:
        raise ValueError(f"volume and lesion must be 3-D arrays of one shape; got {volume.shape} and {lesion.shape}")
    if not lesion.any():
        raise ValueError("lesion mask is empty")
    liver = ~lesion if liver is None else (np.asarray(liver, dtype=bool) & ~lesion)
    signed = signed_distance(lesion, spacing)
    out = {}
    out.update(intensity_features(volume, lesion, liver, signed, shell_mm=shell_mm,
                                  inner_depth_mm=inner_depth_mm, glcm_bin_hu=glcm_bin_hu))
    out["edge_width_mm"] = edge_width(volume, lesion, liver, signed, profile_mm=profile_mm)
    out.update(shape_features(lesion, spacing))
    return {name: float(out[name]) for name in FEATURE_NAMES}


def signed_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Signed distance in mm from each voxel centre to the mask's boundary (negative inside).

    The boundary is taken halfway between the last voxel in and the first voxel out: the distance
    to the nearest voxel of the other side minus half the smallest voxel side (exact along an axis
    of that spacing, within a fraction of a voxel elsewhere).
    """
    half = 0.5 * min(spacing)
    # Pad so that a mask touching the crop's border still has an outside.
    padded = np.pad(mask, 1)
    outside = ndimage.distance_transform_edt(~padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    inside = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    return np.where(mask, half - inside, outside - half)


def intensity_features(volume, lesion, liver, signed, *, shell_mm=(1.0, 4.0), inner_depth_mm=1.5,
                       glcm_bin_hu=10.0) -> dict[str, float]:
    """``contrast_hu``, ``texture_sd_hu``, ``glcm_contrast_hu`` and ``glcm_homogeneity``."""
    inside_values = volume[lesion]
    shell = liver & (signed >= shell_mm[0]) & (signed <= shell_mm[1])
    contrast = inside_values.mean() - volume[shell].mean() if shell.any() else math.nan
    inner = lesion & (signed <= -inner_depth_mm)
    texture_values = volume[inner] if np.count_nonzero(inner) >= 8 else inside_values
    glcm_contrast, homogeneity = glcm_statistics(volume, lesion, bin_hu=glcm_bin_hu)
    return {"contrast_hu": contrast, "texture_sd_hu": float(texture_values.std()),
            "glcm_contrast_hu": glcm_contrast, "glcm_homogeneity": homogeneity}


def glcm_statistics(volume, mask, *, bin_hu: float = 10.0, levels: int = 32) -> tuple[float, float]:
    """GLCM contrast (as an RMS neighbour difference in HU) and homogeneity inside ``mask``.

    Co-occurrences of in-plane neighbours one voxel apart (0 and 90 degrees, symmetric), summed
    over the axial slices. Voxels outside the mask get an extra grey level whose pairs are
    dropped, so only pairs with both voxels in the lesion count. Returns NaNs without any pair.
    """
    median = float(np.median(volume[mask]))
    quantised = np.clip(np.rint((volume - median) / bin_hu) + levels // 2, 0, levels - 1).astype(np.uint8)
    quantised[~mask] = levels  # the "outside" level
    counts = np.zeros((levels + 1, levels + 1), dtype=np.float64)
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        matrix = graycomatrix(quantised[:, :, z], distances=[1], angles=[0.0, np.pi / 2],
                              levels=levels + 1, symmetric=True, normed=False)
        counts += matrix[:, :, 0, :].sum(axis=-1)
    counts = counts[:levels, :levels]
    total = counts.sum()
    if total == 0:
        return math.nan, math.nan
    probability = (counts / total)[:, :, None, None]
    contrast = float(graycoprops(probability, "contrast")[0, 0])
    homogeneity = float(graycoprops(probability, "homogeneity")[0, 0])
    return math.sqrt(contrast) * bin_hu, homogeneity


def edge_width(volume, lesion, liver, signed, *, profile_mm: float = 6.0, bin_mm: float = 0.5) -> float:
    """10-90 % rise distance in mm across the boundary, from a fitted blurred step.

    The profile is the mean HU in bins of signed distance (``bin_mm`` wide) from the lesion's
    deepest point (at most ``profile_mm`` inside) to ``profile_mm`` outside, reading lesion voxels
    inside and tumour-free liver outside. The model is ``low + (high - low) * Phi((d - d0) /
    sigma)``, least squares weighted by the voxel count of each bin; NaN when the fit fails or
    fewer than five bins are filled.
    """
    use = (lesion | liver) & (signed >= -profile_mm) & (signed <= profile_mm)
    distance = signed[use]
    values = volume[use]
    bins = np.floor(distance / bin_mm).astype(np.int64)
    bins -= bins.min()
    counts = np.bincount(bins)
    filled = counts > 0
    if np.count_nonzero(filled) < 5 or not (distance < 0).any() or not (distance > 0).any():
        return math.nan
    centres = (np.bincount(bins, weights=distance)[filled] / counts[filled])
    means = np.bincount(bins, weights=values)[filled] / counts[filled]
    weights = np.sqrt(counts[filled])
    inside_mean, outside_mean = values[distance < 0].mean(), values[distance > 0].mean()

    def step(d, low, high, d0, sigma):
        return low + (high - low) * special.ndtr((d - d0) / sigma)

    try:
        params, _ = optimize.curve_fit(
            step, centres, means, p0=(inside_mean, outside_mean, 0.0, 1.0), sigma=1.0 / weights,
            bounds=([-2000.0, -2000.0, -profile_mm, 0.05], [4000.0, 4000.0, profile_mm, 2.0 * profile_mm]),
            maxfev=2000)
    except (RuntimeError, ValueError):
        return math.nan
    return float(_WIDTH_10_90 * params[3])


def shape_features(mask: np.ndarray, spacing) -> dict[str, float]:
    """Equivalent diameter, sphericity, principal axes, elongation, roughness and solidity."""
    spacing = np.asarray(spacing, dtype=np.float64)
    count = int(np.count_nonzero(mask))
    volume_mm3 = count * float(np.prod(spacing))
    radius = (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    points = np.argwhere(mask) * spacing
    centroid = points.mean(axis=0)
    covariance = np.cov(points.T, bias=True) if count > 1 else np.zeros((3, 3))
    # A voxel is a box, not a point: add its own second moment so small bodies are not too thin.
    covariance = covariance + np.diag(spacing**2 / 12.0)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    axes = 2.0 * np.sqrt(5.0 * eigenvalues)  # full axis lengths of the moment ellipsoid

    vertices, faces = _surface(mask, spacing)
    area = mesh_surface_area(vertices, faces)
    sphericity = np.pi ** (1.0 / 3.0) * (6.0 * mesh_volume(vertices, faces)) ** (2.0 / 3.0) / area
    # Surface vs moment ellipsoid, per triangle (area-weighted: vertices are not evenly spread).
    triangles = vertices[faces]
    centres = triangles.mean(axis=1) - centroid
    areas = 0.5 * np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    distance = np.linalg.norm(centres, axis=1)
    direction = centres / np.maximum(distance, 1e-9)[:, None]
    in_frame = direction @ eigenvectors
    semi_axes2 = 5.0 * eigenvalues
    ellipsoid_radius = 1.0 / np.sqrt((in_frame**2 / semi_axes2).sum(axis=1))
    roughness = math.sqrt(np.average((distance - ellipsoid_radius) ** 2, weights=areas)) / radius
    try:
        hull_volume = spatial.ConvexHull(vertices).volume
        solidity = min(1.0, volume_mm3 / hull_volume)
    except spatial.QhullError:
        solidity = math.nan
    return {
        "diameter_mm": 2.0 * radius,
        "sphericity": sphericity,
        "elongation": axes[2] / axes[0],
        "major_axis_mm": axes[2],
        "minor_axis_mm": axes[0],
        "roughness": roughness,
        "solidity": solidity,
    }


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume in mm^3 enclosed by a closed triangle mesh (vertices in mm), by the divergence
    theorem: the sum of the signed tetrahedra from the origin to each triangle. The absolute
    value makes it independent of the faces' orientation."""
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    return abs(float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0)


def _surface(mask, spacing):
    """Marching-cubes surface (mm, voxel-centre frame) of the mask, smoothed by half a voxel to remove voxel steps."""
    pad = 2
    padded = np.pad(mask.astype(np.float32), pad)
    smooth = ndimage.gaussian_filter(padded, 0.5)
    level = 0.5 if smooth.max() > 0.5 else 0.5 * smooth.max()  # a single voxel still has a surface
    vertices, faces, _, _ = marching_cubes(smooth, level=level, spacing=tuple(spacing))
    return vertices - pad * np.asarray(spacing), faces  # back to the mask's own frame
