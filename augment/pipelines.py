"""Ready TorchIO pipelines for liver CT: one for training, one for evaluation.

Both take a :class:`torchio.Subject` holding a CT in Hounsfield units (a
:class:`~torchio.ScalarImage`) and its label map (a :class:`~torchio.LabelMap`: 0 background,
1 liver, 2 tumour) and end in the network's intensity scaling, :class:`~augment.HUWindow`.

The training pipeline crops first: everything after the crop (above all TorchIO's elastic
deformation, which takes seconds on a whole 256 x 256 x 128 volume on two cores) then works on a
patch-sized block around the liver instead of the whole scan. Give it to a
:class:`torchio.SubjectsDataset` and sample patches with a :class:`torchio.Queue`:

>>> import torchio as tio
>>> from augment.pipelines import label_sampler, training_pipeline
>>> transform = training_pipeline(patch_size=(128, 128, 64), tumor_probability=0.5)
>>> dataset = tio.SubjectsDataset(subjects, transform=transform)  # doctest: +SKIP
>>> queue = tio.Queue(dataset, max_length=32, samples_per_volume=4,
...                   sampler=label_sampler((128, 128, 64)), num_workers=2)  # doctest: +SKIP

Every random value comes from the torch RNG and is recorded in the subject's history, so
``augmented.get_composed_history()`` replays a sample exactly (see ``docs/augment.md``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.intensity_transform import IntensityTransform
from torchio.transforms.spatial_transform import SpatialTransform

from synth.hu_window import check_window, range_to_window, window_to_range

from .ct_noise import RandomCTNoise
from .hu_window import HUWindow
from .tumor_insertion import RandomTumorInsertion

#: The abdominal soft-tissue window (level 40 HU, width 400 HU) the pipelines scale to [0, 1].
DEFAULT_WINDOW_HU = (-160.0, 240.0)
#: HU of air: what the crop and the affine put where the scan has no data.
AIR_HU = -1024.0

# The training pipeline's ranges. They are the documented values of training_pipeline's
# docstring; the tests and docs/augment.md read them from here.
AFFINE_SCALES = (0.9, 1.1)  # zoom factor, each axis independently
AFFINE_DEGREES = (-5.0, 5.0, -5.0, 5.0, -15.0, 15.0)  # about the x, y and z (axial) axes
AFFINE_TRANSLATION_MM = (-5.0, 5.0)
AFFINE_PROBABILITY = 0.8
ELASTIC_CONTROL_POINTS = 7
ELASTIC_MAX_DISPLACEMENT_MM = (6.0, 6.0, 3.0)
ELASTIC_PROBABILITY = 0.25
NOISE_STD_HU = (0.0, 15.0)
NOISE_CORRELATION_MM = (0.5, 1.5)
NOISE_PROBABILITY = 0.5
LOG_GAMMA = (-0.3, 0.3)  # gamma from exp(-0.3) = 0.74 to exp(0.3) = 1.35
GAMMA_PROBABILITY = 0.3
BLUR_STD_MM = (0.0, 1.0)
BLUR_PROBABILITY = 0.2
BIAS_COEFFICIENTS = 0.05
BIAS_ORDER = 2
BIAS_PROBABILITY = 0.2


def training_pipeline(
    patch_size=(128, 128, 64),
    *,
    crop_size=None,
    tumor_probability: float = 0.5,
    tumor_size="mix",
    tumor_count=(1, 3),
    tumor_phenotype="mix",
    elastic_probability: float = ELASTIC_PROBABILITY,
    window_hu=DEFAULT_WINDOW_HU,
    image_name: str = "ct",
    label_name: str = "seg",
    liver_label: int = 1,
    tumor_label: int = 2,
) -> tio.Compose:
    r"""The training augmentation for liver CT, from a whole scan to a network-ready block.

    Steps, in order (``p`` is the probability that a step runs on a given subject):

    1. **Crop** (:class:`RandomLiverCrop`, always): a block of ``crop_size`` voxels centred on a
       liver or tumour voxel drawn uniformly, moved inwards where it would leave the scan;
       scans smaller than the block are padded with air (-1024 HU, label 0).
    2. **Affine** (:class:`torchio.RandomAffine`, p 0.8): scale 0.9-1.1 per axis; rotation
       -15 to 15 degrees about the axial (z) axis and -5 to 5 degrees about x and y (thick
       slices make larger out-of-plane rotations blurry); translation -5 to 5 mm per axis;
       linear interpolation for the CT, nearest for labels; air (-1024 HU) fills the corners.
    3. **Elastic** (:class:`torchio.RandomElasticDeformation`, p ``elastic_probability``,
       0.25 by default: it is the slowest step): a 7 x 7 x 7 B-spline grid, control points moved
       by at most 6, 6 and 3 mm along x, y and z.
    4. **Tumour insertion** (:class:`~augment.RandomTumorInsertion`, p ``tumor_probability``):
       ``tumor_count`` lesions of ``tumor_size`` (equivalent diameter in mm, see
       ``docs/synthesis.md``) in the liver of the deformed block. It comes before every intensity
       change so that the lesions get the same noise, gamma, blur and bias as the liver around
       them. Where the block's liver has no room the subject passes unchanged.
    5. **CT noise** (:class:`~augment.RandomCTNoise`, p 0.5): correlated Gaussian noise of 0-15
       HU standard deviation, smoothed over 0.5-1.5 mm.
    6. **Gamma** (:class:`torchio.RandomGamma`, p 0.3): gamma from 0.74 to 1.35 (log-gamma
       -0.3 to 0.3), applied on the *window's* scale: HU are mapped to
       ``t = (HU - low) / (high - low)`` (0 at the window's lower edge, 1 at its upper edge), the
       few values below the window are clipped to ``t = 0`` (the final window clips them
       anyway), ``t ** gamma`` is taken and mapped back to HU (:class:`WindowScale`). Gamma on raw
       HU would be meaningless: HU are negative for fat and air, and a power law on them depends
       on where 0 HU happens to lie. On the window's scale it does what gamma does to the
       network's input: the window's edges stay put, soft tissue inside gets brighter
       (gamma < 1) or darker (gamma > 1), by up to about 25 HU for the liver.
    7. **Blur** (:class:`torchio.RandomBlur`, p 0.2): Gaussian, standard deviation 0-1 mm per
       axis (a softer reconstruction kernel).
    8. **Bias field** (:class:`torchio.RandomBiasField`, p 0.2): a smooth multiplicative field,
       polynomial of order 2 with coefficients in -0.05 to 0.05 (the field stays within about
       0.9-1.1). It multiplies HU, so water (0 HU) is unchanged and the liver (about 100 HU)
       moves by up to about 10 HU, slowly across the block.
    9. **Window** (:class:`~augment.HUWindow`, always): clip to ``window_hu`` (-160 to 240 HU
       by default) and scale to [0, 1]. Label maps are never changed by steps 5-9.

    Output: the CT as float32 in [0, 1], the label map with the input's values (nearest-neighbour
    resampling keeps them), both of ``crop_size`` voxels on one affine.

    Args:
        patch_size: Voxels of the patches the network trains on, ``(x, y, z)`` or one int. Only
            used to size the crop; sample the patches with :func:`label_sampler` and a
            :class:`torchio.Queue`.
        crop_size: Voxels of the block cut around the liver. Default: ``patch_size`` plus a
            quarter on each axis (e.g. 160 x 160 x 80 for 128 x 128 x 64 patches), so that the
            affine's air corners mostly stay outside the patches and the patches can move within
            the block. At least ``patch_size``.
        tumor_probability: Probability of inserting lesions into a subject (0 turns insertion
            off; the step then leaves the pipeline entirely).
        tumor_size: ``"tiny"``, ``"small"``, ``"medium"``, ``"large"``, ``"mix"`` or a
            ``(min_mm, max_mm)`` range of equivalent diameters in mm.
        tumor_count: Lesions per insertion, or an inclusive ``(min, max)`` range.
        tumor_phenotype: As in :class:`~augment.RandomTumorInsertion`.
        elastic_probability: Probability of the elastic step.
        window_hu: ``(low, high)`` HU window of the final scaling (and of the gamma step's scale).
        image_name: Name of the CT in the subject.
        label_name: Name of the label map in the subject.
        liver_label, tumor_label: Label values of liver and tumour.

    Example:
        >>> import torchio as tio
        >>> from augment.pipelines import training_pipeline
        >>> transform = training_pipeline((96, 96, 48), tumor_size="small", tumor_count=(1, 4))
        >>> augmented = transform(subject)  # doctest: +SKIP
        >>> augmented.ct.shape  # crop of 120 x 120 x 60 voxels  # doctest: +SKIP
        (1, 120, 120, 60)
    """
    patch_size = _shape_triplet(patch_size, "patch_size")
    if crop_size is None:
        crop_size = tuple(n + 2 * math.ceil(n / 8) for n in patch_size)
    crop_size = _shape_triplet(crop_size, "crop_size")
    if any(c < p for c, p in zip(crop_size, patch_size)):
        raise ValueError(f"crop_size {crop_size} must be at least patch_size {patch_size} on every "
                         f"axis: the patches are sampled from the crop")
    for name, value in (("tumor_probability", tumor_probability),
                        ("elastic_probability", elastic_probability)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1]; got {value!r}")
    # The Compose copies the subject once, so the caller's subject is never modified; each step
    # then works in place instead of deep-copying the whole subject again (TorchIO's default).
    # Keyword arguments of tio.Transform.
    in_place: dict[str, Any] = {"copy": False}
    ct_only: dict[str, Any] = {"include": [image_name], **in_place}
    steps: list[tio.Transform] = [
        RandomLiverCrop(crop_size, label_name=label_name, liver_labels=(liver_label, tumor_label),
                        **in_place),
        tio.RandomAffine(scales=AFFINE_SCALES, degrees=AFFINE_DEGREES,
                         translation=AFFINE_TRANSLATION_MM, default_pad_value=AIR_HU,
                         p=AFFINE_PROBABILITY, **in_place),
    ]
    if elastic_probability > 0:
        steps.append(tio.RandomElasticDeformation(
            num_control_points=ELASTIC_CONTROL_POINTS, max_displacement=ELASTIC_MAX_DISPLACEMENT_MM,
            p=elastic_probability, **in_place))
    if tumor_probability > 0:
        steps.append(RandomTumorInsertion(
            size=tumor_size, count=tumor_count, phenotype=tumor_phenotype, liver_label=liver_label,
            tumor_label=tumor_label, p=tumor_probability,
            # A crop's liver may be too full for the lesions asked (LiTS has livers with dozens of
            # tumours); such a subject passes without new lesions, as when p says no, and a
            # warning per subject would flood a training log.
            on_failure="ignore", include=[image_name, label_name], **in_place))
    steps += [
        RandomCTNoise(std_hu=NOISE_STD_HU, correlation_mm=NOISE_CORRELATION_MM, p=NOISE_PROBABILITY,
                      **ct_only),
        # Gamma needs non-negative values: it runs on the window's scale, between two exact maps.
        tio.Compose([WindowScale(window_hu, **ct_only),
                     tio.RandomGamma(log_gamma=LOG_GAMMA, **ct_only),
                     WindowScale(window_hu, to_hu=True, **ct_only)], p=GAMMA_PROBABILITY,
                    **in_place),
        tio.RandomBlur(std=BLUR_STD_MM, p=BLUR_PROBABILITY, **ct_only),
        tio.RandomBiasField(coefficients=BIAS_COEFFICIENTS, order=BIAS_ORDER, p=BIAS_PROBABILITY,
                            **ct_only),
        HUWindow(window_hu=window_hu, **ct_only),
    ]
    return tio.Compose(steps)


def evaluation_pipeline(
    crop_size=None,
    *,
    window_hu=DEFAULT_WINDOW_HU,
    image_name: str = "ct",
    label_name: str = "seg",
    liver_labels=(1, 2),
) -> tio.Compose:
    """The deterministic evaluation transform: the training pipeline's scaling, nothing random.

    1. **Crop** (only when ``crop_size`` is given; :class:`LiverCrop`): ``crop_size`` voxels
       centred on the bounding box of the liver (``liver_labels`` in ``label_name``), padded
       with air (-1024 HU, label 0) where the scan is smaller. Leave it out (the default) for
       sliding-window inference on whole scans (:class:`torchio.GridSampler`), which also needs
       no label map.
    2. **Window** (:class:`~augment.HUWindow`): clip to ``window_hu`` (-160 to 240 HU by
       default) and scale to [0, 1], exactly as at the end of :func:`training_pipeline`.

    Args:
        crop_size: Voxels of the liver-centred block, or ``None`` for the whole scan.
        window_hu: ``(low, high)`` HU window; use the training pipeline's.
        image_name: Name of the CT in the subject.
        label_name: Name of the label map that locates the liver (crop only).
        liver_labels: Label values that count as liver for the crop.

    Example:
        >>> from augment.pipelines import evaluation_pipeline
        >>> scaled = evaluation_pipeline()(subject)  # whole scan, CT in [0, 1]  # doctest: +SKIP
    """
    steps: list[tio.Transform] = []
    if crop_size is not None:
        steps.append(LiverCrop(_shape_triplet(crop_size, "crop_size"), label_name=label_name,
                               liver_labels=liver_labels, copy=False))
    # copy=False: the Compose has already copied the subject.
    steps.append(HUWindow(window_hu=window_hu, include=[image_name], copy=False))
    return tio.Compose(steps)


def label_sampler(patch_size=(128, 128, 64), label_name: str = "seg",
                  label_probabilities=None) -> tio.LabelSampler:
    """A :class:`torchio.LabelSampler` for :class:`torchio.Queue` that centres patches on liver and
    tumour voxels.

    Args:
        patch_size: Voxels of each patch (the training pipeline's ``patch_size``).
        label_name: Name of the label map.
        label_probabilities: ``{label value: probability of a patch centred on it}``. Default
            ``{0: 0.1, 1: 0.45, 2: 0.45}``: a tenth of the patches centred anywhere outside the
            liver (so the network sees what is not liver), the rest split between liver and
            tumour, so that tumour patches are frequent even when tumours are few voxels.

    Example:
        >>> from augment.pipelines import label_sampler
        >>> sampler = label_sampler((96, 96, 48))
    """
    if label_probabilities is None:
        label_probabilities = {0: 0.1, 1: 0.45, 2: 0.45}
    return tio.LabelSampler(_shape_triplet(patch_size, "patch_size"), label_name=label_name,
                            label_probabilities=dict(label_probabilities))


class RandomLiverCrop(RandomTransform, SpatialTransform):
    """Cut a block of fixed size around a random point of the liver.

    The block's centre is a voxel drawn uniformly from the liver (``liver_labels`` in the label
    map), so over many epochs every part of the liver is seen, in proportion to its volume; the
    block is moved inwards where it would leave the scan. Scans smaller than the block are padded:
    CT images with ``pad_value_hu`` (air), label maps with 0. Without a liver in the label map
    the block is centred on the scan. Every image of the subject is cropped alike.

    The drawn centre lands in the history through :class:`LiverCrop`, which replays the crop.

    Args:
        crop_size: Voxels of the block, ``(x, y, z)`` or one int.
        label_name: Name of the label map that locates the liver; ``None``: the subject's only
            label map.
        liver_labels: Label values that count as liver (tumours are in the liver too).
        pad_value_hu: HU put into CT voxels outside the scan.
        **kwargs: See :class:`~torchio.transforms.Transform`.

    Example:
        >>> from augment.pipelines import RandomLiverCrop
        >>> block = RandomLiverCrop((160, 160, 80), label_name="seg")(subject)  # doctest: +SKIP
    """

    def __init__(self, crop_size, label_name: str | None = None, liver_labels=(1, 2),
                 pad_value_hu: float = AIR_HU, **kwargs):
        super().__init__(**kwargs)
        self.crop_size = _shape_triplet(crop_size, "crop_size")
        self.label_name = label_name
        self.liver_labels = _label_values(liver_labels)
        self.pad_value_hu = float(pad_value_hu)

    def get_params(self, labels: torch.Tensor) -> tuple[int, int, int]:
        """A liver voxel drawn uniformly with the torch RNG, or the scan's centre voxel."""
        liver = torch.isin(labels, torch.tensor(self.liver_labels, dtype=labels.dtype))
        count = int(liver.sum())
        if count == 0:
            x, y, z = (n // 2 for n in labels.shape)
            return x, y, z
        index = int(torch.randint(0, count, (1,)).item())
        flat = int(torch.nonzero(liver.reshape(-1), as_tuple=True)[0][index])
        x, y, z = (int(i) for i in np.unravel_index(flat, tuple(labels.shape)))
        return x, y, z

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        _, label_map = _find_label_map(subject, self.label_name, type(self).__name__)
        center = self.get_params(label_map.data[0])
        transform = LiverCrop(self.crop_size, center=center, label_name=self.label_name,
                              liver_labels=self.liver_labels, pad_value_hu=self.pad_value_hu,
                              **self._get_base_args())
        return transform(subject)


class LiverCrop(SpatialTransform):
    """Cut a block of fixed size centred on a given voxel or on the liver's bounding box.

    The deterministic twin of :class:`RandomLiverCrop` and the crop of
    :func:`evaluation_pipeline`. The block is moved inwards where it would leave the scan, and
    scans smaller than the block are padded (CT images with ``pad_value_hu``, label maps with 0),
    so the output always has ``crop_size`` voxels; the affines are updated so that every voxel
    keeps its position in mm.

    Args:
        crop_size: Voxels of the block, ``(x, y, z)`` or one int.
        center: Voxel ``(i, j, k)`` of the input the block is centred on; ``None``: the centre of
            the liver's bounding box (or of the scan, without liver).
        label_name, liver_labels, pad_value_hu: As in :class:`RandomLiverCrop`.
        **kwargs: See :class:`~torchio.transforms.Transform`.

    Example:
        >>> from augment.pipelines import LiverCrop
        >>> block = LiverCrop((160, 160, 80), label_name="seg")(subject)  # doctest: +SKIP
    """

    def __init__(self, crop_size, center=None, label_name: str | None = None, liver_labels=(1, 2),
                 pad_value_hu: float = AIR_HU, **kwargs):
        super().__init__(**kwargs)
        self.crop_size = _shape_triplet(crop_size, "crop_size")
        self.center = None if center is None else tuple(int(i) for i in center)
        self.label_name = label_name
        self.liver_labels = _label_values(liver_labels)
        self.pad_value_hu = float(pad_value_hu)
        self.args_names = ["crop_size", "center", "label_name", "liver_labels", "pad_value_hu"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        images = subject.get_images_dict(intensity_only=False, include=self.include,
                                         exclude=self.exclude)
        if not images:
            return subject
        shapes = {tuple(image.spatial_shape) for image in images.values()}
        if len(shapes) != 1:
            raise ValueError(f"{self.name} needs images of one spatial shape; got {sorted(shapes)}")
        shape = shapes.pop()
        center = self.center if self.center is not None else self._liver_box_center(subject, shape)
        padding, cropping = crop_bounds(shape, self.crop_size, center)
        # Pad and Crop applied directly (no history of their own: this transform is what the
        # history replays) and in place (the subject is already this call's copy).
        base = {"copy": False, "parse_input": False}
        if any(padding):
            scalars = [n for n, i in images.items() if not isinstance(i, tio.LabelMap)]
            labels = [n for n, i in images.items() if isinstance(i, tio.LabelMap)]
            if scalars:
                tio.Pad(padding, padding_mode=self.pad_value_hu, include=scalars, **base)(subject)
            if labels:
                tio.Pad(padding, padding_mode=0, include=labels, **base)(subject)
        if any(cropping):
            tio.Crop(cropping, include=list(images), **base)(subject)
        return subject

    def _liver_box_center(self, subject, shape) -> tuple[int, int, int]:
        _, label_map = _find_label_map(subject, self.label_name, self.name)
        labels = label_map.data[0]
        liver = torch.isin(labels, torch.tensor(self.liver_labels, dtype=labels.dtype))
        if not liver.any():
            x, y, z = (n // 2 for n in shape)
            return x, y, z
        center: list[int] = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            present = torch.nonzero(liver.any(dim=other[1]).any(dim=other[0]), as_tuple=True)[0]
            center.append((int(present[0]) + int(present[-1])) // 2)
        return center[0], center[1], center[2]


def crop_bounds(shape, crop_size, center):
    """Padding and cropping, as TorchIO's ``(i0, i1, j0, j1, k0, k1)`` voxel counts, that cut a
    ``crop_size`` block centred on ``center`` from a ``shape`` scan, moved inwards where it would
    leave the scan and padded (evenly on both sides) where the scan is smaller.

    >>> crop_bounds((100, 50, 40), (60, 60, 20), (90, 25, 5))
    ((0, 0, 5, 5, 0, 0), (40, 0, 0, 0, 0, 20))
    """
    padding, cropping = [], []
    for n, size, c in zip(shape, crop_size, center):
        pad = max(size - n, 0)
        padding += [pad // 2, pad - pad // 2]
        padded = n + pad
        start = min(max(int(c) + pad // 2 - size // 2, 0), padded - size)
        cropping += [start, padded - size - start]
    return tuple(padding), tuple(cropping)


class WindowScale(IntensityTransform):
    """Map CT values from HU onto a window's scale and back: the frame of the pipeline's gamma.

    Forward, ``t = max((HU - low) / (high - low), 0)``: 0 at the window's lower edge, 1 at its
    upper edge, values above the window kept (above 1), values below it clipped to 0 so that a
    power law is defined (the final :class:`~augment.HUWindow` with the same window clips them
    anyway). With ``to_hu=True``, ``HU = low + t * (high - low)``, the exact inverse on
    everything the forward map did not clip.

    Args:
        window_hu: ``(low, high)`` in HU.
        to_hu: Map from the window's scale back to HU.
        **kwargs: See :class:`~torchio.transforms.Transform`. Label maps are never changed.

    Example:
        >>> import torchio as tio
        >>> from augment.pipelines import WindowScale
        >>> gamma_on_window = tio.Compose([WindowScale((-160, 240)), tio.RandomGamma(0.3),
        ...                                WindowScale((-160, 240), to_hu=True)])
    """

    def __init__(self, window_hu=DEFAULT_WINDOW_HU, to_hu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.window_hu = check_window(window_hu)
        self.to_hu = bool(to_hu)
        self.args_names = ["window_hu", "to_hu"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            data = image.data.float()
            if self.to_hu:
                image.set_data(range_to_window(data, self.window_hu))
            else:
                image.set_data(window_to_range(data, self.window_hu, clip_high=False))
        return subject


def _find_label_map(subject, label_name, who):
    if label_name is not None:
        if label_name not in subject or not isinstance(subject[label_name], tio.LabelMap):
            raise ValueError(f"{who}: the subject has no label map {label_name!r}; its images: "
                             f"{subject.get_images_names()}")
        return label_name, subject[label_name]
    label_maps = [(n, i) for n, i in subject.get_images_dict(intensity_only=False).items()
                  if isinstance(i, tio.LabelMap)]
    if len(label_maps) != 1:
        raise ValueError(f"{who} needs label_name when the subject has {len(label_maps)} label "
                         f"maps ({[n for n, _ in label_maps]})")
    return label_maps[0]


def _shape_triplet(value, name) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, numbers.Integral) else tuple(value)
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                               for v in values):
        raise ValueError(f"{name} must be one positive int or three (x, y, z) voxel counts; "
                         f"got {value!r}")
    x, y, z = (int(v) for v in values)
    return x, y, z


def _label_values(values) -> tuple[int, ...]:
    values = (values,) if isinstance(values, numbers.Integral) else tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
        raise ValueError(f"liver_labels must be label values (ints); got {values!r}")
    return tuple(int(v) for v in values)
