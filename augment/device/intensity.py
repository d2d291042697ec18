"""Intensity steps of a batch on its device, in HU: CT noise, gamma, blur, bias field.

Each function takes the volumes of the samples a step runs on, ``(n, X, Y, Z)`` in HU, and that
step's per-sample values (see :class:`~augment.device.params.AugmentParams`), and returns new
volumes (the input is never modified). They match the CPU steps of
:func:`augment.pipelines.training_pipeline`: :class:`~augment.RandomCTNoise`, gamma on the
window's scale (:class:`~augment.pipelines.WindowScale`), TorchIO's ``RandomBlur`` and
``RandomBiasField``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from synth.hu_window import check_window, range_to_window, window_to_range

from .params import bias_terms

__all__ = ["add_ct_noise", "apply_bias_field", "apply_gamma", "gaussian_smooth"]

# Gaussian kernels reach this many sigmas (scipy's gaussian_filter truncate, as the CPU noise).
TRUNCATE = 3.0
# Below this sigma (voxels) an axis is not smoothed: the kernel would be a single tap.
_MIN_SIGMA = 1e-3


def gaussian_smooth(volumes: torch.Tensor, sigma_voxels: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian smoothing of ``volumes`` (n, X, Y, Z), sigma (n, 3) in voxels per sample
    and axis; borders replicate the edge voxels (no darkening by zero padding)."""
    n = volumes.shape[0]
    sigma = sigma_voxels.to(torch.float64).clamp(min=_MIN_SIGMA)
    out = volumes
    for axis in range(3):
        radius = int(math.ceil(TRUNCATE * float(sigma[:, axis].max())))
        if radius < 1 or float(sigma[:, axis].max()) <= _MIN_SIGMA:
            continue
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (taps.view(1, -1) / sigma[:, axis:axis + 1]) ** 2)
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(volumes.device, volumes.dtype)
        # The axis goes last (contiguous): a (1, k) grouped convolution per sample is fastest there.
        moved = out.movedim(axis + 1, -1)
        shape = moved.shape
        padded = F.pad(moved.reshape(1, n, -1, shape[-1]), (radius, radius, 0, 0), mode="replicate")
        smoothed = F.conv2d(padded, kernel.view(n, 1, 1, -1), groups=n)
        out = smoothed.view(shape).movedim(-1, axis + 1)
    return out.contiguous()


def add_ct_noise(volumes_hu: torch.Tensor, std_hu: torch.Tensor, correlation_mm: torch.Tensor,
                 spacing_mm: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add correlated Gaussian noise: white noise smoothed with sigma ``correlation_mm`` (n,) mm
    on ``spacing_mm`` (n, 3), scaled to unit standard deviation per sample, times ``std_hu``
    (n,) HU. The white noise is drawn from ``generator`` on the volumes' device."""
    white = torch.randn(volumes_hu.shape, generator=generator, device=volumes_hu.device,
                        dtype=volumes_hu.dtype)
    sigma = correlation_mm.to(torch.float64).view(-1, 1) / spacing_mm.to(torch.float64)
    smooth = gaussian_smooth(white, sigma)
    sd = smooth.flatten(1).std(dim=1).clamp(min=1e-6)
    scale = std_hu.to(volumes_hu.device, volumes_hu.dtype) / sd
    return volumes_hu + smooth * scale.view(-1, 1, 1, 1)


def apply_gamma(volumes_hu: torch.Tensor, log_gamma: torch.Tensor,
                window_hu: Sequence[float]) -> torch.Tensor:
    """Gamma ``exp(log_gamma)`` (n,) on the window's scale: HU -> ``t = max((HU - low) / (high -
    low), 0)`` -> ``t ** gamma`` -> HU. The window's edges stay put; values below it go to its
    lower edge (the final window clips them anyway)."""
    window = check_window(window_hu)
    t = window_to_range(volumes_hu, window, clip_high=False)
    gamma = torch.exp(log_gamma).to(volumes_hu.device, volumes_hu.dtype).view(-1, 1, 1, 1)
    return range_to_window(t.pow(gamma), window)


def apply_bias_field(volumes_hu: torch.Tensor, coefficients: torch.Tensor, order: int) -> torch.Tensor:
    """Multiply HU by ``exp(sum c x**i y**j z**k)`` over :func:`bias_terms` (``coefficients``
    (n, T)), with x, y, z from -1 to 1 across the volume: a smooth field near 1."""
    n, X, Y, Z = volumes_hu.shape
    terms = bias_terms(order)
    if coefficients.shape[1] != len(terms):
        raise ValueError(f"bias field of order {order} needs {len(terms)} coefficients per sample; "
                         f"got {coefficients.shape[1]}")
    device, dtype = volumes_hu.device, volumes_hu.dtype
    powers = torch.arange(order + 1, device=device, dtype=dtype)
    x, y, z = (torch.linspace(-1.0, 1.0, s, device=device, dtype=dtype).view(-1, 1).pow(powers) for s in (X, Y, Z))
    # c_ijk as a dense (n, order + 1, order + 1, order + 1) array, 0 where i + j + k > order.
    dense = torch.zeros(n, order + 1, order + 1, order + 1, device=device, dtype=dtype)
    for column, (i, j, k) in enumerate(terms):
        dense[:, i, j, k] = coefficients[:, column].to(device=device, dtype=dtype)
    # sum_i x^i (sum_jk c_ijk y^j z^k): one small 2D product, then one matrix product per sample.
    in_plane = torch.einsum("nijk,yj,zk->niyz", dense, y, z)
    log_field = torch.einsum("xi,niyz->nxyz", x, in_plane)
    return volumes_hu * torch.exp(log_field)
