"""The segmentation networks, built from a filter list.

``"dynunet"`` (the default): MONAI's 3D DynUNet, the nnU-Net architecture. The depth is
``len(filters)``: the first level keeps the resolution (stride 1), every further level halves it
(stride 2), so a patch side must be divisible by ``2 ** (len(filters) - 1)``. All convolutions are
3x3x3; transposed-convolution upsampling mirrors the strides.

``"unet2d"``: a 2.5D slice model, MONAI's 2D ``BasicUNet`` (five levels, ``filters`` of length 5)
that sees an odd number of neighbouring axial slices as channels (the patch's third side) and
predicts the centre slice. On a CPU it trains many more steps per minute than the 3D network, and
each slice keeps the scan's full in-plane resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet, DynUNet

__all__ = ["SliceUNet", "build_model", "count_parameters", "deep_supervision_heads"]


class SliceUNet(torch.nn.Module):
    """A 2D network over stacks of axial slices: ``(B, 1, X, Y, S)`` in, ``(B, C, X, Y, 1)`` out.

    The ``S`` (odd) slices become the channels of :attr:`unet`, a 2D network whose output is the
    centre slice's logits. :attr:`unet` takes ``(B, S, X, Y)`` directly, for slice-wise inference.
    """

    def __init__(self, unet: torch.nn.Module, slices: int):
        super().__init__()
        self.unet = unet
        self.slices = int(slices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1 or x.shape[-1] != self.slices:
            raise ValueError(f"expected (B, 1, X, Y, {self.slices}) slice stacks; got {tuple(x.shape)}")
        return self.unet(x[:, 0].permute(0, 3, 1, 2)).unsqueeze(-1)


def _build_unet2d(filters: Sequence[int], in_channels: int, out_channels: int, patch: tuple[int, ...]
                  ) -> SliceUNet:
    if len(filters) != 5:
        raise ValueError(f"network 'unet2d' (MONAI BasicUNet) needs 5 filter counts; got {tuple(filters)}")
    slices = patch[2]
    if in_channels != 1 or slices < 1 or slices % 2 == 0:
        raise ValueError(f"network 'unet2d' needs one image channel and an odd number of slices as the patch's "
                         f"third side; got in_channels {in_channels}, patch {patch}")
    if any(p < 32 or p % 16 for p in patch[:2]):  # four halvings, and instance norm needs > 1 pixel
        raise ValueError(f"network 'unet2d': the patch's in-plane sides must be multiples of 16, at least 32; "
                         f"got {patch}")
    unet = BasicUNet(spatial_dims=2, in_channels=slices, out_channels=out_channels,
                     features=(*filters, filters[0]))
    return SliceUNet(unet, slices)


def deep_supervision_heads(depth: int) -> int:
    """Extra low-resolution outputs used with deep supervision: up to 2, fewer for shallow nets.

    MONAI allows between 1 and ``depth - 2`` of them.
    """
    return max(0, min(2, depth - 2))


def build_model(*, network: str = "dynunet", in_channels: int = 1, out_channels: int = 3,
                filters: Sequence[int] = (16, 32, 64, 128, 256),
                deep_supervision: bool = False,
                patch_size: Sequence[int] = (96, 96, 96)) -> torch.nn.Module:
    """The network called ``network`` (:data:`train.loop.config.NETWORKS`) for ``(B, in_channels, X, Y, Z)`` patches,
    returning logits: ``"dynunet"`` (3D DynUNet) or ``"unet2d"`` (:class:`SliceUNet`, whose patch's
    third side is its number of slices).

    Args:
        network: ``"dynunet"`` or ``"unet2d"``.
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
    from .loop.config import NETWORKS  # here: train.loop imports this module

    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    filters = [int(f) for f in filters]
    if network == "unet2d":
        if deep_supervision:
            raise ValueError("network 'unet2d' has no deep supervision; set deep_supervision to false")
        return _build_unet2d(filters, in_channels, out_channels, tuple(int(p) for p in patch_size))
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
