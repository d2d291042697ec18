"""TorchIO augmentation of training patches (``TrainConfig.augmentation="torchio"``).

The steps are those of :func:`augment.pipelines.training_pipeline` between its crop and its
window: affine, elastic deformation, CT noise, gamma (on the window's scale), blur and bias
field, with that pipeline's probabilities and ranges. Its crop is left out (the sampler chooses
where a patch lies), so are its tumour insertion (the sampler inserts synthetic tumours itself)
and its HU window (the sampler normalises with ``TrainConfig.hu_window``).

The sampler cuts a block somewhat larger than the patch (:func:`augmentation_block`, the
pipeline's own crop rule), the block is augmented in HU, and the patch is cut from its centre:
so the rotation, scaling and translation bring mostly real tissue, not padding, into the patch.

TorchIO draws every random value from torch's global RNG. Each call seeds it from the step's
numpy generator inside :func:`torch.random.fork_rng`, so a patch depends only on (seed, step,
rank), as without augmentation, and the caller's torch RNG state is left as it was.

``TrainConfig.augmentation="device"`` runs the same steps on the training device instead
(:func:`augment_on_device`, :mod:`augment.device`): the sampler hands out the larger blocks, the
trainer augments the whole batch after moving it to the device and before the forward pass.

torchio is imported when an augmenter is built, never at ``import train.loop``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from synth.seeding import derive_seed

from .sampling import denormalise_hu, normalise_hu

if TYPE_CHECKING:
    from augment.device import DeviceAugmenter, SpacingMM

__all__ = ["PatchAugmenter", "augment_on_device", "augmentation_block", "denormalise_hu",
           "device_augmentation_generator"]


def augmentation_block(patch_size: Sequence[int]) -> tuple[int, int, int]:
    """Voxels of the block augmented for one patch: the patch plus an eighth of it on each side.

    The same rule as :func:`augment.pipelines.training_pipeline`'s default crop (e.g. 40 for a
    32-voxel patch, 120 for 96).
    """
    x, y, z = (int(n) + 2 * math.ceil(int(n) / 8) for n in patch_size)
    return x, y, z


def _centre_crop(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    start = [(n - s) // 2 for n, s in zip(array.shape, size)]
    return array[tuple(slice(a, a + s) for a, s in zip(start, size))]


class PatchAugmenter:
    """Augments an HU block and its label map, and cuts the normalised patch from its centre.

    Args:
        patch_size: voxels (X, Y, Z) of the patch returned.
        hu_window: (low, high) HU of the normalisation to [0, 1] (and of the gamma step's scale).
    """

    def __init__(self, patch_size: Sequence[int], hu_window: Sequence[float]):
        import torchio as tio

        from augment.hu_window import HUWindow
        from augment.pipelines import RandomLiverCrop, training_pipeline

        self.patch = tuple(int(n) for n in patch_size)
        self.block = augmentation_block(self.patch)
        self.hu_window = (float(hu_window[0]), float(hu_window[1]))
        pipeline = training_pipeline(self.patch, crop_size=self.block, tumor_probability=0.0,
                                     window_hu=self.hu_window, image_name="ct", label_name="seg")
        # Keep the pipeline's spatial and intensity steps only; tumor_probability=0 already left
        # its insertion out.
        steps = [t for t in pipeline.transforms if not isinstance(t, (RandomLiverCrop, HUWindow))]
        self.transform = tio.Compose(steps)
        self._tio = tio

    def __call__(self, image_hu: np.ndarray, label: np.ndarray, spacing: Sequence[float],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one block of :attr:`block` voxels (HU, labels 0/1/2; not modified).

        Returns the patch: image float32 in [0, 1] (``hu_window`` clipped and scaled), label uint8,
        both of :attr:`patch` voxels. ``rng`` gives the one seed of every TorchIO draw.
        """
        if tuple(image_hu.shape) != self.block or tuple(label.shape) != self.block:
            raise ValueError(f"augmentation needs blocks of {self.block} voxels; got image "
                             f"{tuple(image_hu.shape)}, label {tuple(label.shape)}")
        tio = self._tio
        seed = int(rng.integers(2**63 - 1))
        affine = np.diag([float(s) for s in spacing] + [1.0])
        subject = tio.Subject(
            ct=tio.ScalarImage(tensor=torch.from_numpy(np.array(image_hu, dtype=np.float32)[None]),
                               affine=affine),
            seg=tio.LabelMap(tensor=torch.from_numpy(np.array(label, dtype=np.int64)[None]), affine=affine))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            augmented = self.transform(subject)
        image = augmented["ct"].data[0].numpy()
        # Labels are resampled nearest-neighbour: the values stay 0/1/2.
        out_label = np.rint(augmented["seg"].data[0].numpy()).astype(np.uint8)
        image = normalise_hu(_centre_crop(image, self.patch), self.hu_window)
        return image, np.ascontiguousarray(_centre_crop(out_label, self.patch))


def device_augmentation_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU ``torch.Generator`` of step ``step``'s device augmentation on ``rank``: it depends on
    (seed, step, rank) only, so a resumed run augments its batches as an uninterrupted one."""
    return torch.Generator().manual_seed(derive_seed(int(seed), "device-augmentation", int(step), int(rank)))


def augment_on_device(augmenter: DeviceAugmenter, images: torch.Tensor, labels: torch.Tensor,
                      spacing_mm: SpacingMM,
                      hu_window: Sequence[float], generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of normalised blocks on their device and cut the patches from their centres.

    Args:
        augmenter: an :class:`augment.device.DeviceAugmenter` of the patch size and ``hu_window``.
        images: (B, 1, X, Y, Z) blocks in [0, 1] (``hu_window`` scaled), on the training device.
        labels: (B, 1, X, Y, Z) integer labels on the same device.
        spacing_mm: (B, 3) voxel sizes in mm.
        hu_window: the (low, high) HU of the normalisation.
        generator: the step's generator (:func:`device_augmentation_generator`).

    Returns the patches in [0, 1] (augmented in HU, then windowed again) and their labels.
    """
    image_hu = denormalise_hu(images, hu_window)
    out_hu, out_labels = augmenter(image_hu, labels, spacing_mm, generator)
    return normalise_hu(out_hu, hu_window), out_labels
