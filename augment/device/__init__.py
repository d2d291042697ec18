"""Batched augmentation on the training device (GPU when there is one), in torch only.

The device twin of :func:`augment.pipelines.training_pipeline`'s spatial and intensity steps, for
training loops that would otherwise wait on CPU augmentation: a whole batch ``(B, C, X, Y, Z)`` in
HU is deformed with ONE sampling grid per sample (affine and elastic composed; one trilinear
``grid_sample`` for the image, one nearest for the label) and gets CT noise, gamma, blur and a bias
field, with the CPU pipeline's probabilities and ranges. TorchIO stays the CPU path and the one for
users' own pipelines.

Reproducible by construction: :func:`draw_params` draws every random value from a CPU
``torch.Generator`` (the same values in any process or machine), and :func:`augment_batch` applies
them deterministically. The CT noise field is drawn on the image's device from the parameters'
seed, so a seed gives the same batch on every machine with the same device type (CPU and CUDA
generators give different noise).

>>> import torch
>>> from augment.device import DeviceAugmenter
>>> augmenter = DeviceAugmenter(patch_size=(32, 32, 16), window_hu=(-160, 240))
>>> blocks = torch.full((4, 1, 40, 40, 20), 60.0)       # HU, a larger block around each patch
>>> labels = torch.ones(4, 1, 40, 40, 20, dtype=torch.uint8)
>>> params = augmenter.draw(4, torch.Generator().manual_seed(7))
>>> patches, patch_labels = augmenter.apply(blocks, labels, (0.8, 0.8, 2.5), params)
>>> tuple(patches.shape)
(4, 1, 32, 32, 16)
"""

from .intensity import add_ct_noise, apply_bias_field, apply_gamma, gaussian_smooth
from .params import AugmentParams, bias_terms, draw_params
from .pipeline import DeviceAugmenter, SpacingMM, augment_batch
from .spatial import centre_crop, resample, sampling_grid

__all__ = [
    "AugmentParams",
    "DeviceAugmenter",
    "SpacingMM",
    "add_ct_noise",
    "apply_bias_field",
    "apply_gamma",
    "augment_batch",
    "bias_terms",
    "centre_crop",
    "draw_params",
    "gaussian_smooth",
    "resample",
    "sampling_grid",
]
