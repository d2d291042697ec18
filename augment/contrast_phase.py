"""Contrast-phase shift: change how much the liver and the tumours enhance, as a random transform
and its deterministic twin.

Scans of one data set come from different moments after contrast injection: in the arterial
phase the parenchyma is 30-50 HU darker than in the portal-venous phase and hypervascular tumours
brighter; late scans wash lesions out. Shifting liver and tumour intensities separately, through
the label map, lets a model see those looks without new scans.
"""

from __future__ import annotations

import torch
import torchio as tio
from scipy import ndimage
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.intensity_transform import IntensityTransform

from . import _core
from .tumor_insertion import select_ct_and_label


class RandomContrastPhase(RandomTransform, IntensityTransform):
    """Shift liver and tumour intensities by random amounts of HU.

    Args:
        liver_shift_hu: ``(min, max)`` HU added to the liver, drawn uniformly (a single number
            ``d`` means ``(-d, d)``). The default, -40 to 20 HU, spans arterial (darker) to late
            portal-venous looks.
        tumor_shift_hu: ``(min, max)`` HU added to tumours, drawn independently.
        edge_mm: Gaussian sigma in mm of the transition at the organ and tumour borders, so that
            the shift adds no artificial edge.
        liver_label, tumor_label: Label values in the label map.
        **kwargs: See :class:`~torchio.transforms.Transform`. The CT and the label map are chosen
            as in :class:`~augment.RandomTumorInsertion` (exactly one of each after
            ``include`` / ``exclude``); the label map is not changed.

    Example:
        >>> from augment import RandomContrastPhase
        >>> arterial = RandomContrastPhase(liver_shift_hu=(-40, -20), tumor_shift_hu=(0, 40))
        >>> arterial_like = arterial(subject)  # doctest: +SKIP
    """

    def __init__(self, liver_shift_hu=(-40.0, 20.0), tumor_shift_hu=(-30.0, 30.0), edge_mm=1.0,
                 liver_label: int = 1, tumor_label: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.liver_shift_hu_range = self._parse_range(liver_shift_hu, "liver_shift_hu")
        self.tumor_shift_hu_range = self._parse_range(tumor_shift_hu, "tumor_shift_hu")
        self.edge_mm = _check_edge(edge_mm)
        self.liver_label = liver_label
        self.tumor_label = tumor_label

    def get_params(self) -> tuple[float, float]:
        return (self.sample_uniform(*self.liver_shift_hu_range),
                self.sample_uniform(*self.tumor_shift_hu_range))

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        liver_shift_hu, tumor_shift_hu = self.get_params()
        transform = ContrastPhase(liver_shift_hu=liver_shift_hu, tumor_shift_hu=tumor_shift_hu,
                                  edge_mm=self.edge_mm, liver_label=self.liver_label,
                                  tumor_label=self.tumor_label, **self._get_base_args())
        return transform(subject)


class ContrastPhase(IntensityTransform):
    """Add fixed HU shifts to the liver and the tumours: the twin of :class:`RandomContrastPhase`.

    Args:
        liver_shift_hu: HU added to liver voxels.
        tumor_shift_hu: HU added to tumour voxels.
        edge_mm, liver_label, tumor_label, **kwargs: As in :class:`RandomContrastPhase`.

    Example:
        >>> from augment import ContrastPhase
        >>> shifted = ContrastPhase(liver_shift_hu=-30.0, tumor_shift_hu=15.0)(subject)  # doctest: +SKIP
    """

    def __init__(self, liver_shift_hu: float, tumor_shift_hu: float, edge_mm: float = 1.0,
                 liver_label: int = 1, tumor_label: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.liver_shift_hu = float(liver_shift_hu)
        self.tumor_shift_hu = float(tumor_shift_hu)
        self.edge_mm = _check_edge(edge_mm)
        self.liver_label = liver_label
        self.tumor_label = tumor_label
        self.args_names = ["liver_shift_hu", "tumor_shift_hu", "edge_mm", "liver_label", "tumor_label"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        (image_name, image), (label_name, label_map) = select_ct_and_label(self, subject)
        _core.check_same_space(image.spatial_shape, image.affine, label_map.spatial_shape,
                               label_map.affine, image_name=image_name, label_name=label_name)
        labels = label_map.data[0].numpy()
        sigma = [self.edge_mm / s for s in image.spacing]
        shift = torch.zeros(image.spatial_shape, dtype=torch.float32)
        for value, shift_hu in ((self.liver_label, self.liver_shift_hu),
                                (self.tumor_label, self.tumor_shift_hu)):
            inside = labels == value
            if shift_hu != 0 and inside.any():
                # A smoothed indicator: full shift inside, a soft ramp across the border.
                weight = ndimage.gaussian_filter(inside.astype("float32"), sigma, mode="nearest")
                shift += shift_hu * torch.from_numpy(weight)
        image.set_data(image.data.float() + shift[None])
        return subject


def _check_edge(edge_mm) -> float:
    edge_mm = float(edge_mm)
    if not edge_mm >= 0:
        raise ValueError(f"edge_mm must be a non-negative width in mm; got {edge_mm!r}")
    return edge_mm
