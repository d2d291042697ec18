"""Real and synthetic lesions from the same livers, their features, and distribution distances.

Real lesions are the connected components of label 2 in labelled cases. Synthetic lesions are
inserted by the heuristic synthesiser into the same livers' tumour-free tissue, one lesion per
insertion call (each call starts again from the original scan, so synthetic lesions never meet
each other), in the size class of a real lesion. Both kinds are cut into crops the same way and
measured by the same :func:`realism.features.lesion_features`, so a difference between them is a
difference between the lesions, not between two measurement paths.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, stats

from .. import LesionPlacementError, prepare_host
from ..components import equivalent_diameter_mm, lesion_components
from ..heuristic.size import size_class
from ..labels import Label
from .features import FEATURE_NAMES, lesion_features

SIZE_CLASSES = ("tiny", "small", "medium", "large")
# Size bins of the evaluation (equivalent diameter, mm): where segmentation fails, under 10 mm.
SIZE_BINS = (("< 10 mm", 0.0, 10.0), ("10-20 mm", 10.0, 20.0), (">= 20 mm", 20.0, np.inf))
PARTS = ("report", "tune", "all")
# Slabs of the liver's axial extent in each part (see realism_part).
_TUNE_SLABS = (0, 2)


def liver_z_extent_mm(label: np.ndarray, spacing) -> tuple[float, float]:
    """The liver's (liver or tumour voxels') extent along axis 2 in voxel-grid mm: from the lower
    face of its first slice to the upper face of its last (voxel ``i``'s centre at ``i * dz``)."""
    slices = np.flatnonzero(np.asarray(label != Label.BACKGROUND).any(axis=(0, 1)))
    if slices.size == 0:
        raise ValueError("the label map has no liver: the liver's axial extent is undefined")
    dz = float(spacing[2])
    return (slices[0] - 0.5) * dz, (slices[-1] + 0.5) * dz


def liver_slab(centers_mm, liver_z_extent: tuple[float, float], *, slabs: int = 4) -> np.ndarray:
    """The index (0 at the liver's lower end) of the axial slab of the liver each centre lies in.

    The liver's axial extent (``liver_z_extent``, mm, from :func:`liver_z_extent_mm`) is cut into
    ``slabs`` equal slabs; centres beyond either end count to the nearest slab.

    Parameters
    ----------
    centers_mm : (N, 3) array
        Lesion centroids in voxel-grid mm (axis 2 axial).
    liver_z_extent : (float, float)
        Lower and upper axial bound of the liver in mm.
    slabs : int
        How many slabs.
    """
    low, high = (float(v) for v in liver_z_extent)
    if not high > low:
        raise ValueError(f"liver_z_extent must be (low, high) with high > low; got {liver_z_extent!r}")
    if slabs < 1:
        raise ValueError(f"slabs must be a positive count; got {slabs}")
    z = np.asarray(centers_mm, dtype=np.float64).reshape(-1, 3)[:, 2]
    return np.clip(np.floor(slabs * (z - low) / (high - low)), 0, slabs - 1).astype(int)


def realism_part(centers_mm, liver_z_extent: tuple[float, float]) -> np.ndarray:
    """``"tune"`` or ``"report"`` for each lesion centre: the fixed split of real lesions.

    The liver's axial extent is cut into four equal slabs (:func:`liver_slab`); lesions whose
    centroid lies in slabs 0 and 2 form the tune part, slabs 1 and 3 the report part. Defaults
    may be chosen by looking at the tune part only; quoted results come from the report part.
    Interleaved slabs keep both parts spread over the whole liver.

    Parameters
    ----------
    centers_mm : (N, 3) array
        Lesion centroids in voxel-grid mm (axis 2 axial).
    liver_z_extent : (float, float)
        Lower and upper axial bound of the liver in mm (:func:`liver_z_extent_mm`).
    """
    slab = liver_slab(centers_mm, liver_z_extent, slabs=4)
    return np.where(np.isin(slab, _TUNE_SLABS), "tune", "report").astype(object)


def size_bin(diameter_mm: float) -> str:
    """The evaluation size bin (:data:`SIZE_BINS`) of an equivalent diameter in mm."""
    return next(name for name, low, high in SIZE_BINS if low <= diameter_mm < high)


@dataclass(frozen=True)
class LesionSample:
    """One lesion cut out of its scan: a CT crop (HU), its masks and where it came from."""

    source: str  # "real" or "synthetic"
    case: str
    center_mm: tuple[float, float, float]  # centroid in the scan's voxel-grid mm
    diameter_mm: float  # equivalent diameter of the mask
    size_class: str
    volume: np.ndarray  # float32 HU crop
    lesion: np.ndarray  # bool, the lesion's voxels
    liver: np.ndarray  # bool, tumour-free liver (label 1) in the crop
    spacing: tuple[float, float, float]
    phenotype: str = ""  # the synthesiser's phenotype; empty for real lesions
    part: str = ""  # "tune" or "report" (realism_part); a synthetic lesion takes its real match's
    host: str = ""  # the scan it was inserted into (synthetic) or cut from (real)


def crop_around(mask_box, spacing, shape, *, margin_mm: float) -> tuple[slice, slice, slice]:
    """A box of slices: ``mask_box`` grown by ``margin_mm`` on every side, clipped to ``shape``."""
    grow = [int(np.ceil(margin_mm / s)) for s in spacing]
    x, y, z = (slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(mask_box, grow, shape))
    return x, y, z


def _sample(source, case, volume, label, component, box, spacing, phenotype="", part="") -> LesionSample:
    """Cut one lesion's crop; ``component`` is its full-scan-box mask restricted to ``box``."""
    index = np.argwhere(component)
    offset = np.array([b.start for b in box])
    count = index.shape[0]
    diameter = equivalent_diameter_mm(count * float(np.prod(spacing)))
    cx, cy, cz = (float(c) for c in (index.mean(axis=0) + offset) * np.asarray(spacing))
    sx, sy, sz = (float(s) for s in spacing)
    return LesionSample(
        source=source, case=case,
        center_mm=(cx, cy, cz),
        diameter_mm=float(diameter), size_class=size_class(diameter),
        volume=np.asarray(volume[box], dtype=np.float32), lesion=component,
        liver=np.asarray(label[box] == Label.LIVER), spacing=(sx, sy, sz), phenotype=phenotype, part=part,
        host=case)


def _touches_border(box, shape) -> bool:
    return any(b.start == 0 or b.stop == n for b, n in zip(box, shape))


def extract_real_lesions(volume, label, spacing, *, case: str = "case", min_diameter_mm: float = 3.0,
                         exclude_border: bool = True, margin_mm: float = 8.0) -> list[LesionSample]:
    """Cut every real tumour (26-connected component of label 2) out of a labelled scan.

    Parameters
    ----------
    volume, label : (X, Y, Z) arrays
        CT in HU and labels 0/1/2.
    spacing : three floats
        Voxel size in mm.
    min_diameter_mm : float
        Components with a smaller equivalent diameter are skipped: a lesion of a few voxels has no
        measurable shape or edge (and the synthesiser draws nothing below 3 mm).
    exclude_border : bool
        Skip components that touch the scan's border: their shape and size are cut off.
    margin_mm : float
        Margin kept around the lesion's box, for the parenchyma shell and the edge profile.

    Each sample's ``part`` is its :func:`realism_part` in this scan.
    """
    spacing = tuple(float(s) for s in spacing)
    extent = liver_z_extent_mm(label, spacing)
    components, count = lesion_components(np.asarray(label) == Label.TUMOR)
    voxel_volume = float(np.prod(spacing))
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    samples = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        diameter = equivalent_diameter_mm(sizes[index] * voxel_volume)
        if diameter < min_diameter_mm or (exclude_border and _touches_border(box, label.shape)):
            continue
        crop = crop_around(box, spacing, label.shape, margin_mm=margin_mm)
        sample = _sample("real", case, volume, label, components[crop] == index, crop, spacing)
        samples.append(replace(sample, part=str(realism_part([sample.center_mm], extent)[0])))
    return samples


def synthesize_lesions(volume, label, spacing, size_classes, *, case: str = "case", seed=0,
                       margin_mm: float = 8.0, exclude_border: bool = True,
                       synth_options: dict | None = None, parts=None,
                       progress=None) -> tuple[list[LesionSample], int]:
    """Insert one synthetic lesion per entry of ``size_classes`` into the scan's tumour-free liver.

    Each insertion starts from the original scan (one ``prepare_host``, reused), so lesions are
    independent. A lesion is cut with the record's change box grown by ``margin_mm``; its mask is
    the new tumour voxels (label 2 after, not before) connected to the record's centre.

    Parameters
    ----------
    size_classes : sequence of str or (float, float)
        The ``size`` argument of each insertion: a class name or a diameter range in mm.
    seed : int or numpy.random.Generator
        Source of the insertions' randomness.
    synth_options : dict, optional
        Further keyword options of :func:`synth.synthesize` (``phenotype``, ``edge_mm``, ...).
    parts : sequence of str, optional
        The ``part`` of each insertion's sample (the part of the real lesion it is matched to).
    progress : callable, optional
        Called once per insertion (a tqdm ``update``, for instance).

    Returns
    -------
    (samples, failures)
        The synthetic lesions, and the number of insertions that found no room
        (:class:`synth.LesionPlacementError`) or whose lesion touched the border.
    """
    spacing = tuple(float(s) for s in spacing)
    host = prepare_host(volume, label, spacing=spacing)
    rng = np.random.default_rng(seed)
    options = dict(synth_options or {})
    samples, failures = [], 0
    parts = [""] * len(size_classes) if parts is None else list(parts)
    if len(parts) != len(size_classes):
        raise ValueError(f"parts has {len(parts)} entries for {len(size_classes)} insertions; give one each")
    for size, part in zip(size_classes, parts):
        try:
            result = host.insert(size=size, count=1, rng=rng, **options)
        except LesionPlacementError:
            failures += 1
            continue
        finally:
            if progress is not None:
                progress()
        record = result.lesions[0]
        crop, component = inserted_lesion(result.label, record, spacing, margin_mm=margin_mm, before=host.label)
        body = ndimage.find_objects(component.astype(np.int8))[0]
        body = tuple(slice(b.start + c.start, b.stop + c.start) for b, c in zip(body, crop))
        if exclude_border and _touches_border(body, label.shape):
            failures += 1
            continue
        samples.append(_sample("synthetic", case, result.volume, result.label, component, crop, spacing,
                               phenotype=record.phenotype, part=part))
    return samples, failures


def inserted_lesion(label: np.ndarray, record, spacing, *, margin_mm: float = 8.0,
                    before: np.ndarray | None = None) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The crop box around an inserted lesion and its mask in that crop.

    The crop is the record's change box grown by ``margin_mm``; the mask is the tumour voxels
    (new ones only, when the label map ``before`` the insertion is given) connected to the
    record's centre, or all of them when the centre voxel is not tumour (a lobulated body).
    """
    box = tuple(slice(a, b) for a, b in record.bbox)
    crop = crop_around(box, spacing, label.shape, margin_mm=margin_mm)
    new = label[crop] == Label.TUMOR
    if before is not None:
        new &= before[crop] != Label.TUMOR
    parts, _ = lesion_components(new)
    centre = tuple(c - b.start for c, b in zip(record.center_voxel, crop))
    return crop, (parts == parts[centre]) if parts[centre] else parts > 0


def matched_sizes(real: list[LesionSample], *, per_real: int = 2, match: str = "class") -> list:
    """The ``size`` argument for ``per_real`` synthetic lesions per real lesion.

    ``match="class"`` asks for the real lesion's size class (the synthesiser draws the diameter
    inside it, as its users get); ``match="diameter"`` asks for the real diameter +-10 %, clipped
    to the synthesiser's 3-50 mm, so that size differences cannot explain other differences.
    """
    if match not in ("class", "diameter"):
        raise ValueError(f"match must be 'class' or 'diameter'; got {match!r}")
    sizes: list[str | tuple[float, float]] = []
    for sample in real:
        size: str | tuple[float, float]
        if match == "class":
            size = sample.size_class
        else:
            low = float(np.clip(0.9 * sample.diameter_mm, 3.0, 45.0))
            size = (low, float(np.clip(1.1 * sample.diameter_mm, low * 1.05, 50.0)))
        sizes.extend([size] * per_real)
    return sizes


def feature_table(samples: list[LesionSample], *, progress=None) -> dict[str, np.ndarray]:
    """Features of every sample as columns, with ``source``, ``case``, ``size_class``,
    ``phenotype``, ``center_mm``, ``part``, ``host`` and ``size_bin`` columns beside
    :data:`~realism.features.FEATURE_NAMES`."""
    rows = []
    for sample in samples:
        rows.append(lesion_features(sample.volume, sample.lesion, sample.spacing, liver=sample.liver))
        if progress is not None:
            progress()
    table = {name: np.array([row[name] for row in rows], dtype=np.float64) for name in FEATURE_NAMES}
    table["source"] = np.array([s.source for s in samples], dtype=object)
    table["case"] = np.array([s.case for s in samples], dtype=object)
    table["size_class"] = np.array([s.size_class for s in samples], dtype=object)
    table["phenotype"] = np.array([s.phenotype for s in samples], dtype=object)
    table["center_mm"] = np.array([s.center_mm for s in samples], dtype=np.float64).reshape(-1, 3)
    table["part"] = np.array([s.part for s in samples], dtype=object)
    table["host"] = np.array([s.host for s in samples], dtype=object)
    table["size_bin"] = np.array([size_bin(s.diameter_mm) for s in samples], dtype=object)
    return table


def subset(table: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``keep`` (a boolean or index array) of every column."""
    return {name: column[keep] for name, column in table.items()}


def distribution_distances(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float | list[float]]:
    """Distances between two samples of one feature (NaNs dropped).

    ``wasserstein`` is in the feature's unit; ``wasserstein_scaled`` divides it by the real
    sample's standard deviation, so features of different units can be ranked; ``ks`` is the
    two-sample Kolmogorov-Smirnov statistic (0 to 1) with its ``ks_p`` value.
    """
    real = real[np.isfinite(real)]
    synthetic = synthetic[np.isfinite(synthetic)]
    out: dict[str, float | list[float]] = {"n_real": int(real.size), "n_synthetic": int(synthetic.size)}
    if real.size < 2 or synthetic.size < 2:
        return out | {"real_median": float(np.median(real)) if real.size else float("nan"),
                      "synthetic_median": float(np.median(synthetic)) if synthetic.size else float("nan"),
                      "wasserstein": float("nan"), "wasserstein_scaled": float("nan"),
                      "ks": float("nan"), "ks_p": float("nan")}
    distance = float(stats.wasserstein_distance(real, synthetic))
    ks = stats.ks_2samp(real, synthetic)
    return out | {
        "real_median": float(np.median(real)),
        "synthetic_median": float(np.median(synthetic)),
        "real_iqr": [float(q) for q in np.percentile(real, [25, 75])],
        "synthetic_iqr": [float(q) for q in np.percentile(synthetic, [25, 75])],
        "wasserstein": distance,
        "wasserstein_scaled": distance / max(float(real.std()), 1e-9),
        "ks": float(ks.statistic),
        "ks_p": float(ks.pvalue),
    }


def compare_tables(table: dict[str, np.ndarray], *, features=FEATURE_NAMES) -> dict[str, dict]:
    """Distances between real and synthetic rows, per size class and over all lesions.

    Returns ``{group: {feature: distances}}`` with groups ``"all"`` and every size class present.
    """
    real = table["source"] == "real"
    groups = {"all": np.ones(real.size, dtype=bool)}
    groups.update({name: table["size_class"] == name for name in SIZE_CLASSES
                   if np.any(table["size_class"] == name)})
    return {group: {feature: distribution_distances(table[feature][in_group & real],
                                                    table[feature][in_group & ~real])
                    for feature in features}
            for group, in_group in groups.items()}
