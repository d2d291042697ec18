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

__all__ = ["add_ct_noise", "apply_bias_field", "apply_gamma", "correlated_noise", "gaussian_smooth"]

# Gaussian kernels reach this many sigmas (scipy's gaussian_filter truncate, as the CPU noise).
TRUNCATE = 3.0
# Below this sigma (voxels) an axis is not smoothed: the kernel would be a single tap.
_MIN_SIGMA = 1e-3


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(n, 2 * radius + 1) normalised Gaussian taps for sigmas (n,) in voxels."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps.view(1, -1) / sigma.view(-1, 1)) ** 2)
    return kernel / kernel.sum(dim=1, keepdim=True)


def gaussian_smooth(volumes: torch.Tensor, sigma_voxels: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian smoothing of ``volumes`` (n, X, Y, Z), sigma (n, 3) in voxels per sample
    and axis, kernels reaching :data:`TRUNCATE` sigmas; borders replicate the edge voxels (no
    darkening by zero padding)."""
    n = volumes.shape[0]
    sigma = sigma_voxels.to(torch.float64).clamp(min=_MIN_SIGMA)
    # Always along the last, contiguous axis (a grouped (1, 1, k) convolution, a kernel per
    # sample: several times faster on a CPU than along the other axes), then the axes are rotated
    # (X, Y, Z) -> (Z, X, Y) so the next one comes last; after three turns they are back in order.
    out = volumes.unsqueeze(0)  # (1, n, X, Y, Z)
    for axis in (2, 1, 0):
        largest = float(sigma[:, axis].max())
        radius = int(math.ceil(TRUNCATE * largest))
        if radius >= 1 and largest > _MIN_SIGMA:
            kernel = _gaussian_kernels(sigma[:, axis], radius).to(volumes.device, volumes.dtype)
            padded = F.pad(out, (radius, radius, 0, 0, 0, 0), mode="replicate")
            out = F.conv3d(padded, kernel.view(n, 1, 1, 1, -1), groups=n)
        out = out.permute(0, 1, 4, 2, 3).contiguous()
    return out[0]


def correlated_noise(shape: Sequence[int], sigma_voxels: torch.Tensor, generator: torch.Generator,
                     device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, X, Y, Z) Gaussian noise of unit standard deviation per sample, correlated like white
    noise smoothed with a Gaussian of sigma (n, 3) voxels.

    Drawn in the Fourier domain: white complex noise times the Gaussian's transfer function
    ``exp(-2 pi^2 sigma^2 f^2)``, one inverse FFT (several times cheaper than smoothing white
    noise by convolution). The field is periodic across the volume, which noise does not mind.
    """
    n = int(sigma_voxels.shape[0])
    X, Y, Z = (int(s) for s in shape)
    sigma = sigma_voxels.to(torch.float64)
    spectrum = torch.randn(n, X, Y, Z // 2 + 1, 2, generator=generator, device=device, dtype=dtype)
    gains = []
    for axis, frequencies in enumerate((torch.fft.fftfreq(X), torch.fft.fftfreq(Y), torch.fft.rfftfreq(Z))):
        gain = torch.exp(-2.0 * math.pi**2 * sigma[:, axis:axis + 1] ** 2 * frequencies.double().view(1, -1) ** 2)
        gains.append(gain.to(device=device, dtype=dtype))
    transfer = gains[0].view(n, X, 1, 1) * gains[1].view(n, 1, Y, 1) * gains[2].view(n, 1, 1, -1)
    field = torch.fft.irfftn(torch.view_as_complex(spectrum) * transfer, s=(X, Y, Z), dim=(1, 2, 3))
    field = field - field.mean(dim=(1, 2, 3), keepdim=True)
    return field / field.flatten(1).std(dim=1).clamp(min=1e-12).view(n, 1, 1, 1)


def add_ct_noise(volumes_hu: torch.Tensor, std_hu: torch.Tensor, correlation_mm: torch.Tensor,
                 spacing_mm: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add correlated Gaussian noise of standard deviation ``std_hu`` (n,) HU, correlated like
    white noise smoothed with a Gaussian of sigma ``correlation_mm`` (n,) mm on ``spacing_mm``
    (n, 3) (as :class:`~augment.RandomCTNoise`). Drawn from ``generator`` on the volumes' device
    (:func:`correlated_noise`)."""
    sigma = correlation_mm.to(torch.float64).view(-1, 1) / spacing_mm.to(torch.float64)
    unit = correlated_noise(volumes_hu.shape[1:], sigma, generator, volumes_hu.device, volumes_hu.dtype)
    return volumes_hu + unit * std_hu.to(volumes_hu.device, volumes_hu.dtype).view(-1, 1, 1, 1)


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
