"""``nnUNetTrainerTumorSynth``: nnU-Net v2's default trainer plus synthetic liver tumours on the fly.

Everything is nnU-Net's own (network, loss, schedule, sampling, augmentation) except one step of the
training augmentation: right after nnU-Net's spatial transform has cut the final patch, a
:class:`~train.nnunet.transform.TumorInsertionTransform` inserts lesions into the patch's liver,
so that nnU-Net's intensity augmentations (noise, blur, brightness, contrast, low resolution,
gamma) and mirroring then act on synthetic and real lesions alike. Inserting after the spatial
transform puts every lesion inside the patch the network sees, and works on the patch size
rather than the larger region the spatial transform crops from. Lesion sizes are in mm at the
configuration's spacing; a patch that nnU-Net also zooms (its scaling augmentation) carries its
lesions at that zoom, like its anatomy. Validation is untouched.

The options are class attributes: subclass to change them, or let ``tumorsynth nnunet
install-trainer --probability ... --size ... --phenotype ...`` write such a subclass (see
:mod:`train.nnunet.install`). The data set must label liver 1 and tumour 2 (as ``tumorsynth export
nnunet`` writes it), have one channel named "CT", and be trained with a 3-D configuration.
"""

from __future__ import annotations

from typing import Any

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from synth.labels import Label
from synth.options import DEFAULT_COUNT
from synth.types import TypeCount, TypePhenotype, TypeSize

from . import DEFAULT_PROBABILITY, TRAINER_NAME
from .transform import CTIntensity, TumorInsertionTransform

__all__ = ["TRAINER_NAME", "nnUNetTrainerTumorSynth", "tumor_insertion_for", "with_tumor_insertion"]


def _label_value(labels: dict, names: tuple[str, ...], expected: Label) -> int:
    """The value dataset.json gives a label under one of ``names``; ValueError if absent or a region."""
    for name in names:
        if name in labels:
            value = labels[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"dataset.json label {name!r} is {value!r}; tumour insertion needs plain integer "
                                 f"labels (region-based training is not supported)")
            return value
    raise ValueError(f"dataset.json has no label {' or '.join(repr(n) for n in names)} (labels: {labels}); tumour "
                     f"insertion needs liver and tumour labels, e.g. {{'background': 0, 'liver': {int(Label.LIVER)}, "
                     f"'tumor': {int(Label.TUMOR)}}} as 'tumorsynth export nnunet' writes")


def tumor_insertion_for(plans_manager: Any, configuration_manager: Any, dataset_json: dict, *,
                        probability: float, size: TypeSize, count: TypeCount,
                        phenotype: TypePhenotype) -> TumorInsertionTransform:
    """The insertion transform for one nnU-Net configuration: its spacing (mm), its CT
    normalisation (from the plans) and the data set's liver and tumour label values.

    Raises:
        ValueError: a 2-D configuration, a normalisation other than CT, or missing liver/tumour labels.
    """
    spacing = list(configuration_manager.spacing)
    if len(spacing) != 3:
        raise ValueError(f"{TRAINER_NAME} inserts 3-D lesions; configuration {configuration_manager.data_identifier!r} "
                         f"is {len(spacing)}-D: train a 3-D configuration (3d_fullres or 3d_lowres)")
    intensity = CTIntensity.from_plans(plans_manager.foreground_intensity_properties_per_channel,
                                       configuration_manager.normalization_schemes)
    labels = dataset_json.get("labels", {})
    return TumorInsertionTransform(
        spacing=spacing, intensity=intensity, probability=probability, size=size, count=count, phenotype=phenotype,
        liver_label=_label_value(labels, ("liver",), Label.LIVER),
        tumor_label=_label_value(labels, ("tumor", "tumour"), Label.TUMOR))


def with_tumor_insertion(pipeline: Any, insertion: TumorInsertionTransform) -> Any:
    """``pipeline`` (nnU-Net's ``ComposeTransforms``) with ``insertion`` right after its spatial
    transform (and after the return to 3-D of its "dummy 2-D" augmentation, when present).

    Raises:
        ValueError: the pipeline has no SpatialTransform (an nnU-Net version this was not made for).
    """
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform

    transforms = list(pipeline.transforms)
    spatial = [i for i, t in enumerate(transforms) if isinstance(t, SpatialTransform)]
    if not spatial:
        names = [type(t).__name__ for t in transforms]
        raise ValueError(f"nnU-Net's training transforms hold no SpatialTransform ({names}); {TRAINER_NAME} was "
                         f"made for nnunetv2 2.5 or later")
    at = spatial[0] + 1
    if at < len(transforms) and isinstance(transforms[at], Convert2DTo3DTransform):
        at += 1
    transforms.insert(at, insertion)
    pipeline.transforms = transforms
    return pipeline


class nnUNetTrainerTumorSynth(nnUNetTrainer):  # noqa: N801 (nnU-Net finds trainers by this name)
    """nnU-Net's default trainer with synthetic liver tumours inserted into its training patches.

    Attributes (class level; subclass or ``tumorsynth nnunet install-trainer`` to change them):
        tumor_probability: chance that a training patch gets lesions.
        tumor_size: ``"mix"`` (real lesion statistics), a size class (``"tiny"`` 3-5 mm,
            ``"small"`` 5-10, ``"medium"`` 10-20, ``"large"`` 20-50 mm) or ``(min_mm, max_mm)``.
        tumor_count: lesions per patch, or an inclusive ``(min, max)`` range.
        tumor_phenotype: ``"mix"``, a phenotype name or a ``{name: weight}`` dict.
    """

    tumor_probability: float = DEFAULT_PROBABILITY
    tumor_size: TypeSize = "mix"
    tumor_count: TypeCount = DEFAULT_COUNT
    tumor_phenotype: TypePhenotype = "mix"

    # nnU-Net declares this a staticmethod; it calls it on the trainer instance (get_dataloaders),
    # and the insertion needs the instance's plans, configuration and dataset.json.
    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None):
        """nnU-Net's training transforms with :class:`TumorInsertionTransform` after the spatial one."""
        pipeline = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        insertion = tumor_insertion_for(
            self.plans_manager, self.configuration_manager, self.dataset_json, probability=self.tumor_probability,
            size=self.tumor_size, count=self.tumor_count, phenotype=self.tumor_phenotype)
        self.print_to_log_file(f"tumorsynth: synthetic tumours in training patches with probability "
                               f"{self.tumor_probability}, size {self.tumor_size}, count {self.tumor_count}, "
                               f"phenotype {self.tumor_phenotype}")
        return with_tumor_insertion(pipeline, insertion)
