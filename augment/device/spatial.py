"""Affine and elastic deformation of a batch on its device: one sampling grid, one resampling.

The affine and the elastic displacement are composed into ONE grid per sample, so the image is
resampled once (trilinear) and the label once (nearest), with
:func:`torch.nn.functional.grid_sample`. The grid is built separably: the affine part as a sum of
three per-axis vectors, the elastic part by trilinear interpolation of the coarse control grid,
axis by axis (small matrix products), so building it costs little next to the resampling.

The output patch lies at the centre of a larger input block (the block-larger-than-patch rule of
:func:`augment.pipelines.training_pipeline`): rotation and scaling then bring tissue of the block
into the patch, not padding. Coordinates are in mm from the block's centre, on each sample's
spacing; ``align_corners=True`` throughout (voxel centres at the grid's -1 and 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .params import AugmentParams

__all__ = ["centre_crop", "resample", "sampling_grid"]


def _rotation(degrees: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) rotation ``Rz @ Ry @ Rx`` for angles (n, 3) in degrees about x, y, z."""
    a = torch.deg2rad(degrees)
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def matrix(rows):
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    rx = matrix([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = matrix([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = matrix([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def _linear_weights(size: int, points: int) -> torch.Tensor:
    """(size, points) weights of linear interpolation from ``points`` control points spanning
    ``size`` voxels (first and last voxel on the first and last point). Rows are >= 0 and sum
    to 1, so an interpolated displacement never exceeds the control points' largest."""
    if size == 1:
        position = torch.full((1,), (points - 1) / 2.0, dtype=torch.float64)
    else:
        position = torch.arange(size, dtype=torch.float64) * ((points - 1) / (size - 1))
    low = position.floor().clamp(max=points - 2).long()
    fraction = position - low
    weights = torch.zeros(size, points, dtype=torch.float64)
    rows = torch.arange(size)
    weights[rows, low] = 1.0 - fraction
    weights[rows, low + 1] += fraction
    return weights


def sampling_grid(params: AugmentParams, index: torch.Tensor, spacing_mm: torch.Tensor,
                  block_shape: Sequence[int], patch_shape: Sequence[int],
                  device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``grid_sample`` grid (n, X, Y, Z, 3) of samples ``index`` (CPU long tensor).

    Output voxel ``i`` lies at ``v = (i + (block - patch) // 2 - (block - 1) / 2) * spacing`` mm from
    the block's centre; it shows the input at ``diag(1 / scales) @ R.T @ (v + d(v) - translation)``
    (see :class:`AugmentParams`). Samples whose affine flag is off use the identity affine, those
    whose elastic flag is off no displacement.

    The grid is exact and cheap: it is computed (in float64, on the CPU) only at the P x P x P
    control points, then interpolated trilinearly to every voxel on ``device`` in ``dtype``, axis
    by axis with three matrix products. Trilinear interpolation reproduces the affine part (linear
    in ``v``) exactly and is, by definition, how the elastic displacement is interpolated.
    """
    n = int(index.numel())
    points = int(params.control_mm.shape[-1])
    spacing = spacing_mm.index_select(0, index).to(torch.float64)  # (n, 3)
    block = torch.tensor([float(s) for s in block_shape], dtype=torch.float64)
    affine_on = params.affine.index_select(0, index).view(n, 1, 1)
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    rotation = torch.where(affine_on, _rotation(params.degrees.index_select(0, index)), eye)
    scales = torch.where(affine_on.view(n, 1), params.scales.index_select(0, index), 1.0)
    translation = torch.where(affine_on.view(n, 1), params.translation_mm.index_select(0, index), 0.0)
    # Input point u (mm) -> grid coordinate u / half-extent (align_corners=True: -1 and 1 are the
    # block's outer voxel centres). One-voxel axes get a nominal extent: any coordinate is voxel 0.
    half_extent = torch.clamp((block - 1.0) / 2.0, min=0.5) * spacing  # (n, 3)
    to_input = (1.0 / scales).unsqueeze(-1) * rotation.transpose(1, 2)  # diag(1/s) @ R.T
    matrix = to_input / half_extent.unsqueeze(-1)  # (n, 3, 3): mm in output -> grid coordinate
    offset = -(matrix @ translation.unsqueeze(-1)).squeeze(-1)  # (n, 3)

    # Control points: P per axis from the patch's first to its last voxel centre (mm).
    corners = []
    for size_b, size_p in zip(block_shape, patch_shape):
        first = (int(size_b) - int(size_p)) // 2 - (int(size_b) - 1) / 2.0
        corners.append(torch.tensor([first, first + int(size_p) - 1], dtype=torch.float64))
    fractions = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    control = [(c[0] + (c[1] - c[0]) * fractions).view(1, -1) * spacing[:, axis:axis + 1]
               for axis, c in enumerate(corners)]  # 3 x (n, P) mm
    position = torch.stack(torch.broadcast_tensors(
        control[0].view(n, points, 1, 1), control[1].view(n, 1, points, 1),
        control[2].view(n, 1, 1, points)), dim=-1)  # (n, P, P, P, 3) mm
    elastic = params.elastic.index_select(0, index).view(n, 1, 1, 1, 1)
    displacement = params.control_mm.index_select(0, index).permute(0, 2, 3, 4, 1)  # (n, P, P, P, 3)
    position = position + torch.where(elastic, displacement, 0.0)
    coarse = torch.einsum("nkc,nabdc->nabdk", matrix, position) + offset.view(n, 1, 1, 1, 3)
    # grid_sample reads the last grid component as the last tensor axis: (z, y, x) order.
    coarse = coarse.flip(-1).to(device=device, dtype=dtype).contiguous()

    X, Y, Z = (int(s) for s in patch_shape)
    wx, wy, wz = (_linear_weights(s, points).to(device=device, dtype=dtype) for s in (X, Y, Z))
    # Interpolate axis by axis, the small axes first, so the last product writes the full grid
    # in grid_sample's layout.
    field = (wz @ coarse.view(n * points * points, points, 3)).view(n * points, points, Z * 3)
    field = (wy @ field).view(n, points, Y * Z * 3)
    return (wx @ field).view(n, X, Y, Z, 3)


def centre_crop(volume: torch.Tensor, patch_shape: Sequence[int]) -> torch.Tensor:
    """The centre ``patch_shape`` of the last three axes (the block's ``(n - s) // 2`` offset)."""
    spatial = volume.shape[-3:]
    start = [(int(n) - int(s)) // 2 for n, s in zip(spatial, patch_shape)]
    return volume[..., start[0]:start[0] + patch_shape[0], start[1]:start[1] + patch_shape[1],
                  start[2]:start[2] + patch_shape[2]]


def resample(image: torch.Tensor, label: torch.Tensor, grid: torch.Tensor,
             pad_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One trilinear ``grid_sample`` of ``image`` (n, C, ...) and one nearest ``grid_sample`` of
    ``label`` (n, 1, ...; values kept).

    ``grid`` is :func:`sampling_grid` of the block *padded by one voxel on each side* (block shape
    + 2): the padding holds ``pad_value`` in the image and 0 in the label, and ``border`` padding
    repeats it beyond, so whatever the deformation reaches outside the block is ``pad_value``
    (air), while voxels inside are sampled without any shift of their values (exact identity).
    """
    padded = F.pad(image, (1, 1, 1, 1, 1, 1), value=float(pad_value))
    out = F.grid_sample(padded, grid.to(image.dtype), mode="bilinear", padding_mode="border",
                        align_corners=True)
    # One pass: the float copy of the label is written straight into its padded frame.
    padded_label = torch.zeros((*label.shape[:2], *(n + 2 for n in label.shape[2:])), dtype=grid.dtype,
                               device=label.device)
    padded_label[..., 1:-1, 1:-1, 1:-1] = label
    labels = F.grid_sample(padded_label, grid, mode="nearest", padding_mode="border", align_corners=True)
    return out, labels.to(label.dtype)  # nearest copies values: whole numbers, exactly
