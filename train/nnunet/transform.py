"""A batchgeneratorsv2 transform that inserts synthetic liver tumours into nnU-Net training patches.

nnU-Net v2 (2.5 and later) augments one sample at a time: a dict with ``image`` (a float tensor
``(C, *patch)``) and ``segmentation`` (an int16 tensor ``(1, *patch)`` holding the label values as
stored, 0/1/2, and -1 where the patch reaches past the scan). :class:`TumorInsertionTransform`
takes such a dict, inserts lesions into the liver (label 1) of channel 0 through the same core as
the TorchIO and MONAI transforms (:func:`augment._core.insert_lesions`), and marks them tumour
(label 2). Voxels of any other label, -1 included, never become tumour.

Intensities. nnU-Net hands its transforms normalised images, not Hounsfield units. For a channel
named "CT" it clips every scan to the 0.5 and 99.5 percentiles of the data set's foreground
intensities and z-scores it with their mean and standard deviation (``CTNormalization``; the four
numbers are in the plans, ``foreground_intensity_properties_per_channel``). That map is linear
inside the clipping window, so the transform maps the patch back to HU (``x * std + mean``), lets
the synthesiser insert there (its lesion textures, contrasts and noise are defined in HU), clips
the result to the same window and maps it forward again, writing back only the voxels the
synthesiser changed. A synthetic lesion thus ends up exactly as a real lesion of the same HU
would after nnU-Net's preprocessing, clipping included. Other normalisation schemes (per-image
z-scores) cannot be inverted from the plans and are refused when the transform is built
(:meth:`CTIntensity.from_plans`).

Randomness. Whether a sample gets lesions, and the seed of the synthesiser, are drawn from
numpy's global generator, as nnU-Net's own data loader draws its patches: batchgenerators seeds
that generator in each augmentation worker process (``np.random.seed`` with the worker's seed), so
every worker draws other lesions, and a run whose workers are seeded (batchgenerators' ``seeds``)
repeats them. The last seed is kept in :attr:`TumorInsertionTransform.last_seed`: the same seed
on the same patch gives the same lesions in any process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from augment import _core
from synth.labels import Label
from synth.options import DEFAULT_COUNT
from synth.types import TypeCount, TypePhenotype, TypeSize
from synth.validation import check_spacing

from . import DEFAULT_PROBABILITY

__all__ = ["CT_NORMALIZATION", "CTIntensity", "TumorInsertionTransform"]

CT_NORMALIZATION = "CTNormalization"  # nnU-Net's name of its CT scheme, as the plans record it


@dataclass(frozen=True)
class CTIntensity:
    """nnU-Net's CT normalisation of one channel: clip HU to ``[lower_hu, upper_hu]``, then
    ``(hu - mean_hu) / std_hu``. All four numbers in HU."""

    mean_hu: float
    std_hu: float
    lower_hu: float
    upper_hu: float

    def __post_init__(self) -> None:
        values = (self.mean_hu, self.std_hu, self.lower_hu, self.upper_hu)
        if not all(math.isfinite(v) for v in values) or self.std_hu <= 0 or self.lower_hu > self.upper_hu:
            raise ValueError(f"CT intensity properties must be finite with std > 0 and lower <= upper; got mean "
                             f"{self.mean_hu}, std {self.std_hu}, window [{self.lower_hu}, {self.upper_hu}] HU")

    @classmethod
    def from_plans(cls, foreground_intensity_properties: Mapping[str, Any],
                   normalization_schemes: Sequence[str]) -> CTIntensity:
        """The normalisation of channel 0 from nnU-Net's plans.

        Args:
            foreground_intensity_properties: the plans' ``foreground_intensity_properties_per_channel``
                (``{"0": {"mean": ..., "std": ..., "percentile_00_5": ..., "percentile_99_5": ...}}``).
            normalization_schemes: the configuration's ``normalization_schemes``.

        Raises:
            ValueError: more than one channel, a scheme other than CTNormalization (its images
                cannot be mapped back to HU), or missing properties.
        """
        schemes = list(normalization_schemes)
        if len(schemes) != 1:
            raise ValueError(f"tumour insertion needs a data set with one channel, the CT; the plans have "
                             f"{len(schemes)} ({schemes})")
        if schemes[0] != CT_NORMALIZATION:
            raise ValueError(f"tumour insertion needs nnU-Net's {CT_NORMALIZATION} to map patches back to HU; the "
                             f"plans use {schemes[0]}. Name the channel 'CT' in dataset.json (tumorsynth export "
                             f"nnunet does) and plan again")
        try:
            properties = foreground_intensity_properties["0"]
            return cls(float(properties["mean"]), float(properties["std"]), float(properties["percentile_00_5"]),
                       float(properties["percentile_99_5"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the plans' foreground_intensity_properties_per_channel lacks {exc} for channel 0; "
                             f"plan the data set again with nnUNetv2_plan_and_preprocess") from None

    def to_hu(self, normalised: np.ndarray) -> np.ndarray:
        """Normalised intensities back to HU (exact inside the clipping window)."""
        return normalised.astype(np.float32) * np.float32(self.std_hu) + np.float32(self.mean_hu)

    def normalise(self, hu: np.ndarray) -> np.ndarray:
        """HU to nnU-Net's normalised intensities, clipped to the window as nnU-Net clips."""
        clipped = np.clip(hu, self.lower_hu, self.upper_hu).astype(np.float32)
        return (clipped - np.float32(self.mean_hu)) / np.float32(self.std_hu)


class TumorInsertionTransform(BasicTransform):
    """Insert synthetic liver tumours into an nnU-Net training sample (see the module docstring).

    Args:
        spacing: voxel size in mm along the patch's spatial axes (the configuration's ``spacing``).
        intensity: the normalisation of the CT channel (:meth:`CTIntensity.from_plans`).
        probability: chance that a sample gets lesions, in [0, 1].
        size: ``"tiny"`` (3-5 mm), ``"small"`` (5-10 mm), ``"medium"`` (10-20 mm), ``"large"``
            (20-50 mm) equivalent diameter, a ``(min_mm, max_mm)`` range, or ``"mix"`` (real lesion
            statistics).
        count: lesions per sample, or an inclusive ``(min, max)`` range.
        phenotype: ``"hypodense"``, ``"isodense"``, ``"hyperdense"``, ``"rim-enhancing"``,
            ``"necrotic"``, ``"mix"`` or a ``{name: weight}`` dict.
        liver_label, tumor_label: label values in the segmentation (nnU-Net stores them as given
            in dataset.json).
        synthesis_options: further keyword arguments of :func:`synth.synthesize`.

    A sample without liver, or whose liver has no room for the lesions, passes unchanged.
    """

    def __init__(self, *, spacing: Sequence[float], intensity: CTIntensity,
                 probability: float = DEFAULT_PROBABILITY, size: TypeSize = "mix", count: TypeCount = DEFAULT_COUNT,
                 phenotype: TypePhenotype = "mix", liver_label: int = int(Label.LIVER),
                 tumor_label: int = int(Label.TUMOR), synthesis_options: dict | None = None):
        super().__init__()
        if not (isinstance(probability, (int, float)) and 0.0 <= float(probability) <= 1.0):
            raise ValueError(f"probability must be a number in [0, 1]; got {probability!r}")
        self.spacing = check_spacing(spacing)
        self.intensity = intensity
        self.probability = float(probability)
        # "ignore": a patch whose liver is too small for the drawn lesions is common, not news.
        _core.store_settings(self, size=size, count=count, phenotype=phenotype, liver_label=liver_label,
                             tumor_label=tumor_label, on_failure="ignore", synthesis_options=synthesis_options,
                             space_tolerance_mm=0.0)
        self.last_seed: int | None = None

    def get_parameters(self, **data_dict) -> dict:
        """Draw whether to insert and the synthesiser's seed from numpy's global generator."""
        if np.random.uniform() >= self.probability:
            return {"seed": None}
        return {"seed": int(np.random.randint(0, _core.SEED_HIGH, dtype=np.int64))}

    def apply(self, data_dict: dict, **params) -> dict:
        seed = params.get("seed")
        if seed is None:
            return data_dict
        self.last_seed = seed
        image, segmentation = data_dict["image"], data_dict["segmentation"]
        if image.ndim != 4 or segmentation.ndim != 4:
            raise ValueError(f"tumour insertion needs 3-D patches (C, X, Y, Z); got image {tuple(image.shape)} and "
                             f"segmentation {tuple(segmentation.shape)}")
        normalised = image[0].detach().cpu().numpy()
        labels = segmentation[0].detach().cpu().numpy()
        hu = self.intensity.to_hu(normalised)
        inserted = _core.insert_lesions(
            hu, labels, self.spacing, seed=seed, size=self.size, count=self.count, phenotype=self.phenotype,
            liver_label=self.liver_label, tumor_label=self.tumor_label, on_failure=self.on_failure,
            synthesis_options=self.synthesis_options, label_name="segmentation")
        if inserted is None:
            return data_dict
        new_hu, new_labels = inserted
        changed = new_hu != hu
        out_image = normalised.copy()
        out_image[changed] = self.intensity.normalise(new_hu[changed])
        image = image.clone()
        image[0] = torch.from_numpy(out_image).to(image.dtype)
        segmentation = segmentation.clone()
        segmentation[0] = torch.from_numpy(new_labels).to(segmentation.dtype)
        data_dict["image"], data_dict["segmentation"] = image, segmentation
        return data_dict
