"""MONAI dictionary transform that inserts synthetic liver tumours, for MONAI pipelines.

It shares the TorchIO transforms' core (:mod:`augment._core`); only the plumbing differs: keys
instead of image names, MONAI's ``self.R`` instead of the torch RNG, MetaTensor affines.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

from synth.validation import check_spacing

from . import _core
from .tumor_insertion import with_method


class RandTumorInsertiond(_core.InsertionSettings, RandomizableTransform, MapTransform):
    """Insert synthetic liver tumours into a CT image and its label map in a MONAI data dict.

    A thin wrapper over :func:`synth.insert_tumor` (see ``docs/synthesis.md`` for what the lesions
    look like). The random seed of the synthesiser is drawn from MONAI's ``self.R``, so
    ``set_random_state(seed=...)`` (or ``Compose(...).set_random_state``, or MONAI's
    ``DataLoader``, which reseeds each worker) makes a run reproducible.

    Images may be ``(1, X, Y, Z)`` (channel first, as after ``EnsureChannelFirstd``) or
    ``(X, Y, Z)``, as MetaTensors, tensors or numpy arrays, on any device; outputs keep each
    input's type, dtype, device and metadata. Sizes are in mm: the spacing comes from the image's
    MetaTensor affine when there is one, else from ``spacing``. When both image and label are
    MetaTensors their shapes and affines must agree; otherwise their shapes must.

    Args:
        keys: Key of the CT image (Hounsfield units); exactly one.
        label_key: Key of the label map.
        prob: Probability of inserting lesions at each call.
        size: ``"tiny"`` (3-5 mm), ``"small"`` (5-10 mm), ``"medium"`` (10-20 mm), ``"large"``
            (20-50 mm) equivalent diameter, a ``(min_mm, max_mm)`` range, or ``"mix"``.
        count: Number of lesions per call, or an inclusive ``(min, max)`` range.
        phenotype: ``"hypodense"``, ``"isodense"``, ``"hyperdense"``, ``"rim-enhancing"``,
            ``"necrotic"``, ``"mix"`` (realistic: mostly hypodense), ``"diverse"`` (a deliberately
            varied mix) or a ``{name: weight}`` dict. The contrast follows the scan's phase,
            estimated from its liver unless ``synthesis_options={"phase": ...}`` says it.
        liver_label: Label value of the liver (other organ labels are left alone).
        tumor_label: Label value of tumours: existing ones are kept and avoided, new ones get it.
        spacing: Voxel size in mm along the three spatial axes, for images without an affine.
            If the image has one too, the two must agree.
        on_failure: ``"warn"``, ``"ignore"`` or ``"raise"`` when the lesions find no room.
        synthesis_options: Further keyword arguments of :func:`synth.synthesize`.
        method: ``"heuristic"``, ``"diffusion"`` (a trained diffusion model inpaints each lesion)
            or ``"copy-paste"`` (real lesions from a bank).
        model: The diffusion model folder or a loaded ``synth.diffusion.DiffusionModel``; only
            with ``method="diffusion"``.
        bank: The lesion bank folder or a loaded ``synth.copy_paste.LesionBank``; only with
            ``method="copy-paste"``.
        quality_filter: A quality gate's JSON file (``tumorsynth realism --save-gate``, read once
            per process) or a loaded ``synth.realism.QualityGate``: lesions it scores below its
            threshold are drawn again (at most 5 draws). Any method.
        space_tolerance_mm: Largest distance, in mm, by which image and label affines may place
            a voxel apart.
        allow_missing_keys: Leave the data unchanged when the image or label key is missing.

    Example:
        >>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
        >>> from augment import RandTumorInsertiond
        >>> pipeline = Compose([
        ...     LoadImaged(keys=["image", "label"]),
        ...     EnsureChannelFirstd(keys=["image", "label"]),
        ...     RandTumorInsertiond(keys="image", label_key="label", size="small", prob=0.8),
        ... ])
        >>> pipeline.set_random_state(seed=0)  # doctest: +SKIP
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection, label_key: str = "label", prob: float = 1.0,
                 size="mix", count=(1, 3), phenotype="mix", liver_label: int = 1,
                 tumor_label: int = 2, spacing=None, on_failure: str = "warn",
                 synthesis_options: dict | None = None, space_tolerance_mm: float = 1e-3,
                 allow_missing_keys: bool = False, method: str = "heuristic", model=None,
                 bank=None, quality_filter=None):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if len(self.keys) != 1:
            raise ValueError(f"keys must name exactly one CT image (the lesions are drawn into one "
                             f"label map); got {list(self.keys)}")
        synthesis_options = _core.with_quality_filter(with_method(synthesis_options, method, model, bank),
                                                      quality_filter)
        _core.store_settings(self, size=size, count=count, phenotype=phenotype, liver_label=liver_label,
                             tumor_label=tumor_label, on_failure=on_failure,
                             synthesis_options=synthesis_options, space_tolerance_mm=space_tolerance_mm)
        self.label_key = label_key
        self.spacing = None if spacing is None else _spacing_triplet(spacing)
        self.seed: int | None = None  # the last seed drawn, for logging and replay

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.seed = int(self.R.randint(0, _core.SEED_HIGH, dtype=np.int64))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        image_key = self.keys[0]
        missing = [k for k in (image_key, self.label_key) if k not in d]
        if missing:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"{type(self).__name__}: key(s) {missing} not in the data")
        image, label = d[image_key], d[self.label_key]
        volume = _spatial_array(image, image_key)
        labels = _spatial_array(label, self.label_key)
        image_affine: torch.Tensor | np.ndarray | None = image.affine if isinstance(image, MetaTensor) else None
        label_affine: torch.Tensor | np.ndarray | None = label.affine if isinstance(label, MetaTensor) else None
        if image_affine is None or label_affine is None:
            # Without two affines only the shapes can be compared.
            image_affine = label_affine = np.eye(4)
        _core.check_same_space(volume.shape, image_affine, labels.shape, label_affine,
                               image_name=str(image_key), label_name=str(self.label_key),
                               tolerance_mm=self.space_tolerance_mm)
        assert self.seed is not None, "randomize draws a seed whenever the transform applies"
        inserted = _core.insert_lesions(
            volume, labels, self._spacing_of(image), seed=self.seed, size=self.size,
            count=self.count, phenotype=self.phenotype, liver_label=self.liver_label,
            tumor_label=self.tumor_label, on_failure=self.on_failure,
            synthesis_options=self.synthesis_options, label_name=str(self.label_key))
        if inserted is None:
            return d
        new_volume, new_labels = inserted
        d[image_key] = _like(new_volume, image)
        d[self.label_key] = _like(new_labels, label)
        return d

    def _spacing_of(self, image) -> tuple[float, float, float]:
        if isinstance(image, MetaTensor):
            sx, sy, sz = (float(s) for s in image.pixdim[-3:])  # a 4x4 affine: three spacings
            from_affine = (sx, sy, sz)
            if self.spacing is not None and not np.allclose(self.spacing, from_affine, atol=1e-3):
                raise ValueError(f"spacing {self.spacing} mm disagrees with the image affine's "
                                 f"{from_affine} mm; drop the spacing argument or fix the affine")
            return from_affine
        if self.spacing is None:
            raise ValueError(f"{type(self).__name__} needs the voxel spacing in mm: give the image "
                             f"as a MetaTensor with its affine (e.g. from LoadImaged) or pass "
                             f"spacing=(sx, sy, sz)")
        return self.spacing


def _spacing_triplet(spacing) -> tuple[float, float, float]:
    return check_spacing(np.asarray(spacing, dtype=np.float64).ravel())


def _spatial_array(item, key) -> np.ndarray:
    """The (X, Y, Z) numpy array of a channel-first single-channel or channel-less image."""
    array = convert_data_type(item.detach() if isinstance(item, torch.Tensor) else item,
                              np.ndarray)[0]
    if array.ndim == 4 and array.shape[0] == 1:
        return array[0]
    if array.ndim == 3:
        return array
    raise ValueError(f"{key!r} must be (1, X, Y, Z) or (X, Y, Z); got shape {tuple(array.shape)}")


def _like(array: np.ndarray, original):
    """``array`` shaped, typed and placed like ``original`` (MetaTensor metadata included)."""
    if np.ndim(original) == 4:
        array = array[None]
    return convert_to_dst_type(array, dst=original)[0]
