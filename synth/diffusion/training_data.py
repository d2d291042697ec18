"""Training crops: real tumours centred in their crop, and healthy liver with random masks.

- Tumour crops: one per 26-connected tumour (label 2) component of at least ``min_tumor_mm3``,
  centred on its centroid, on the model grid (coarser for tumours that do not fit; see
  :mod:`.crops`). The lesion channel is the component; the region to generate is the component
  grown by ``region_margin_mm``.
- Healthy crops: centred on a random tumour-free liver voxel, with a lesion-shaped region from the
  heuristic shape generator (:mod:`synth.heuristic.shape`) lying wholly in liver, and an empty
  lesion channel. They teach the model parenchyma and vessels: asked to fill a region without a
  lesion, it must continue the liver around it.
All crops are made once, before training (a few MB), and flipped at random per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..components import lesion_components
from ..heuristic.shape import rasterize, sample_shape
from ..host import prepare_host
from ..hu_window import window_to_range
from ..labels import Label
from ..validation import check_label_map, check_spacing, check_volume
from .config import DiffusionConfig
from .crops import MODEL_RANGE, crop_coordinates, crop_spacing, region_around, resample_to_crop

MIN_TUMOR_MM3 = 14.0  # a 3 mm sphere: smaller components are annotation specks
_HEALTHY_TRIES = 20


@dataclass(frozen=True)
class CropSet:
    """``image`` (N, n, n, n) float32 in [-1, 1]; ``region`` and ``lesion`` (N, n, n, n) bool."""

    image: np.ndarray
    region: np.ndarray
    lesion: np.ndarray
    n_tumor: int
    n_healthy: int

    def __len__(self) -> int:
        return self.image.shape[0]


def case_arrays(data) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """Normalise the ``data`` argument of :func:`train_diffusion` to (volume, label, spacing).

    Accepted: a data set path (a folder or CSV manifest, see :func:`synth.cases.find_cases`); a
    sequence whose items are :class:`synth.cases.CaseFiles`, :class:`synth.cases.Case` records,
    ``(image_path, mask_path)`` NIfTI pairs or ``(volume, label, spacing)`` array triples.
    """
    from ..cases import Case, CaseFiles, find_cases, read_case

    if isinstance(data, (str, Path)):
        data = find_cases(data)
    cases = []
    for index, item in enumerate(data):
        if isinstance(item, tuple) and len(item) == 2:
            item = read_case(CaseFiles(f"case-{index}", Path(item[0]), Path(item[1])))
        elif isinstance(item, CaseFiles):
            item = read_case(item)
        if isinstance(item, Case):
            volume, label, spacing = item.image, item.label, item.spacing
        elif isinstance(item, tuple) and len(item) == 3:
            volume, label, spacing = item
        else:
            raise ValueError(f"training case {index}: expected a CaseFiles or Case record, (image_path, "
                             f"mask_path) or (volume, label, spacing); got {type(item).__name__}")
        volume = check_volume(volume)
        cases.append((volume, check_label_map(label, volume.shape), check_spacing(spacing)))
    if not cases:
        raise ValueError("no training cases given")
    return cases


def collect_crops(cases, config: DiffusionConfig, *, healthy_crops: int | None = None, seed: int = 0,
                  min_tumor_mm3: float = MIN_TUMOR_MM3) -> CropSet:
    """All tumour crops of ``cases`` and ``healthy_crops`` healthy ones (default: half as many
    as tumour crops, at least 4), spread over the cases' livers."""
    import cc3d

    rng = np.random.default_rng(seed)
    images, regions, lesions = [], [], []
    for volume, label, spacing in cases:
        components, _ = lesion_components(label == Label.TUMOR)
        stats = cc3d.statistics(components)
        voxel_mm3 = float(np.prod(spacing))
        for component in range(1, len(stats["voxel_counts"])):
            if stats["voxel_counts"][component] * voxel_mm3 < min_tumor_mm3:
                continue
            box = stats["bounding_boxes"][component]
            extent = [(b.stop - b.start) * s for b, s in zip(box, spacing)]
            center = np.round(stats["centroids"][component]).astype(int)
            step = crop_spacing(config, extent)
            axes = crop_coordinates(center, spacing, config.crop_size, step)
            local = [a - b.start for a, b in zip(axes, box)]
            lesion = resample_to_crop(components[box] == component, local, cval=0.0) > 0.5
            if not lesion.any():
                continue
            images.append(window_to_range(resample_to_crop(volume, axes), config.hu_window, MODEL_RANGE))
            lesions.append(lesion)
            regions.append(region_around(lesion, step, config.region_margin_mm))
    n_tumor = len(images)
    wanted = max(4, n_tumor // 2) if healthy_crops is None else int(healthy_crops)
    livers = [case for case in cases if (case[1] == Label.LIVER).any()]
    # One prepared host per liver that is used (preparing samples liver statistics per scan).
    hosts = [prepare_host(volume, label, spacing=spacing) for volume, label, spacing in livers[:wanted]]
    for k in range(wanted if livers else 0):
        crop = _healthy_crop(livers[k % len(livers)], hosts[k % len(hosts)], config, rng)
        if crop is not None:
            images.append(crop[0])
            regions.append(crop[1])
            lesions.append(np.zeros_like(crop[1]))
    if not images:
        raise ValueError("no training crops: the cases hold no tumour (label 2) of at least "
                         f"{min_tumor_mm3:g} mm^3 and no liver (label 1) for healthy crops")
    return CropSet(np.stack(images), np.stack(regions), np.stack(lesions), n_tumor, len(images) - n_tumor)


def _healthy_crop(case, host, config: DiffusionConfig, rng):
    """(image, region) of one healthy-liver crop (``host``: the case prepared), or None when no
    clear place was found."""
    volume, label, spacing = case
    n, step = config.crop_size, config.spacing_mm
    fov = n * step
    for _ in range(_HEALTHY_TRIES):
        diameter = float(rng.uniform(4.0, max(4.5, 0.45 * fov - 2 * config.region_margin_mm)))
        voxel_count = max(1, int(round(np.pi / 6.0 * diameter**3 / step**3)))
        stencil = rasterize(sample_shape(diameter, rng), voxel_count, (step,) * 3, pad_mm=0.0)
        center = host.sample_liver_voxels(rng, 1)
        if len(center) == 0:
            continue
        axes = crop_coordinates(center[0], spacing, n, step)
        region = np.zeros((n,) * 3, dtype=bool)
        place = tuple(slice(n // 2 - h, n // 2 + h + 1) for h in stencil.half_size)
        if any(p.start < 0 or p.stop > n for p in place):
            continue
        region[place] = stencil.inside
        region = region_around(region, step, config.region_margin_mm)
        crop_label = resample_to_crop(label, axes, order=0, cval=0.0)
        if not (crop_label[region] == Label.LIVER).all():
            continue
        return window_to_range(resample_to_crop(volume, axes), config.hu_window, MODEL_RANGE), region
    return None
