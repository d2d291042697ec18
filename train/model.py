"""The segmentation network: MONAI's DynUNet (the nnU-Net architecture) built from a filter list.

The depth is ``len(filters)``: the first level keeps the resolution (stride 1), every further level
halves it (stride 2), so a patch side must be divisible by ``2 ** (len(filters) - 1)``.
All convolutions are 3x3x3; transposed-convolution upsampling mirrors the strides.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DynUNet

__all__ = ["build_model", "count_parameters", "deep_supervision_heads"]


def deep_supervision_heads(depth: int) -> int:
    """Extra low-resolution outputs used with deep supervision: up to 2, fewer for shallow nets.

    MONAI allows between 1 and ``depth - 2`` of them.
    """
    return max(0, min(2, depth - 2))


def build_model(*, in_channels: int = 1, out_channels: int = 3,
                filters: Sequence[int] = (16, 32, 64, 128, 256),
                deep_supervision: bool = False,
                patch_size: Sequence[int] = (96, 96, 96)) -> torch.nn.Module:
    """A 3D DynUNet for ``(B, in_channels, X, Y, Z)`` patches, returning logits.

    Args:
        in_channels: image channels (1 for CT).
        out_channels: classes (3: background, liver, tumour).
        filters: channels per resolution level, from full resolution down; at least 2 levels
            (at least 3 with deep supervision).
        deep_supervision: in training mode the network returns a ``(B, 1 + heads, C, X, Y, Z)``
            stack (the full-resolution output first, then the upsampled deeper heads); in eval mode
            a plain ``(B, C, X, Y, Z)`` tensor. :func:`train.losses.build_loss` handles both.
        patch_size: training patch in voxels; checked against the network's downsampling.

    Raises:
        ValueError: on a bad filter list or a patch side the strides cannot divide.
    """
    filters = [int(f) for f in filters]
    depth = len(filters)
    if depth < 2 or any(f < 1 for f in filters):
        raise ValueError(f"filters must list at least two positive channel counts; got {tuple(filters)}")
    if in_channels < 1 or out_channels < 2:
        raise ValueError(f"need in_channels >= 1 and out_channels >= 2; got {in_channels}, {out_channels}")
    patch = tuple(int(p) for p in patch_size)
    factor = 2 ** (depth - 1)
    if len(patch) != 3 or any(p < factor or p % factor for p in patch):
        raise ValueError(f"patch_size {patch} must be three sides divisible by {factor} "
                         f"(2 ** (len(filters) - 1) for {depth} levels)")
    heads = deep_supervision_heads(depth)
    if deep_supervision and heads < 1:
        raise ValueError(f"deep supervision needs at least 3 levels of filters; got {tuple(filters)}")
    strides = [1] + [2] * (depth - 1)
    return DynUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[3] * depth,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=filters,
        norm_name="instance",
        deep_supervision=bool(deep_supervision),
        deep_supr_num=max(1, heads),
        res_block=False,
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
