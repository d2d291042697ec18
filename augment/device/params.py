"""The random values of one batch's device augmentation, drawn in one place.

:func:`draw_params` is the only function of :mod:`augment.device` that draws random numbers: every
value comes from the ``torch.Generator`` it is given, on the CPU, in a fixed order, so one seed
gives the same :class:`AugmentParams` in any process and on any machine. The functions that apply
them (:mod:`augment.device.spatial`, :mod:`augment.device.intensity`) are deterministic; the one
large random field, the CT noise, is drawn on the image's device from ``AugmentParams.noise_seed``.

The probabilities and ranges are those of :func:`augment.pipelines.training_pipeline` (read from
its module constants, not repeated here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from augment.pipelines import (
    AFFINE_DEGREES,
    AFFINE_PROBABILITY,
    AFFINE_SCALES,
    AFFINE_TRANSLATION_MM,
    BIAS_COEFFICIENTS,
    BIAS_ORDER,
    BIAS_PROBABILITY,
    BLUR_PROBABILITY,
    BLUR_STD_MM,
    ELASTIC_CONTROL_POINTS,
    ELASTIC_MAX_DISPLACEMENT_MM,
    ELASTIC_PROBABILITY,
    GAMMA_PROBABILITY,
    LOG_GAMMA,
    NOISE_CORRELATION_MM,
    NOISE_PROBABILITY,
    NOISE_STD_HU,
)

from .._core import SEED_HIGH

__all__ = ["AugmentParams", "bias_terms", "draw_params"]


def bias_terms(order: int = BIAS_ORDER) -> list[tuple[int, int, int]]:
    """Exponents ``(i, j, k)`` of the bias field's polynomial terms ``x**i * y**j * z**k`` with
    ``i + j + k <= order`` (10 terms for order 2), in the order of
    ``AugmentParams.bias_coefficients``."""
    return [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i)
            for k in range(order + 1 - i - j)]


@dataclass(frozen=True)
class AugmentParams:
    """Every random value of one batch's augmentation; each tensor is batch-first, on the CPU.

    A step runs on sample ``b`` when its flag (``affine[b]``, ``elastic[b]``, ...) is True; its
    values are drawn for every sample either way, so a sample's values do not depend on which
    steps the others run.

    Attributes:
        affine: (B,) bool. The affine moves the content: a point ``u`` (mm from the block's
            centre) goes to ``R @ diag(scales) @ u + translation_mm``.
        degrees: (B, 3) rotation angles in degrees about the x, y and z axes; ``R = Rz @ Ry @ Rx``,
            each a right-handed rotation (a positive z angle turns +x towards +y).
        scales: (B, 3) zoom factor per axis (above 1: the content gets larger).
        translation_mm: (B, 3) shift of the content in mm.
        elastic: (B,) bool.
        control_mm: (B, 3, P, P, P) displacement in mm (x, y, z components) of a P x P x P grid
            of control points spanning the patch; the outer points are 0, so the patch's border
            stays in place. The output at ``v`` shows the affined content at ``v + d(v)``, ``d``
            interpolated trilinearly between the control points (never beyond their maximum).
        noise: (B,) bool; noise_std_hu (B,) standard deviation in HU of the added noise;
            noise_correlation_mm (B,) Gaussian smoothing sigma of the noise in mm.
        noise_seed: seed of the batch's noise field, drawn on the image's device.
        gamma: (B,) bool; log_gamma (B,): gamma = exp(log_gamma) on the window's scale.
        blur: (B,) bool; blur_std_mm (B, 3): Gaussian sigma in mm along x, y, z.
        bias: (B,) bool; bias_coefficients (B, T): coefficients of :func:`bias_terms`; the field
            ``exp(sum c x**i y**j z**k)`` (x, y, z from -1 to 1 across the patch) multiplies HU.
    """

    affine: torch.Tensor
    degrees: torch.Tensor
    scales: torch.Tensor
    translation_mm: torch.Tensor
    elastic: torch.Tensor
    control_mm: torch.Tensor
    noise: torch.Tensor
    noise_std_hu: torch.Tensor
    noise_correlation_mm: torch.Tensor
    noise_seed: int
    gamma: torch.Tensor
    log_gamma: torch.Tensor
    blur: torch.Tensor
    blur_std_mm: torch.Tensor
    bias: torch.Tensor
    bias_coefficients: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.affine.shape[0])

    def replace(self, **changes) -> AugmentParams:
        """A copy with some fields changed (e.g. a step switched off), the rest shared."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def identity(cls, batch_size: int, control_points: int = ELASTIC_CONTROL_POINTS,
                 bias_order: int = BIAS_ORDER) -> AugmentParams:
        """Parameters that change nothing: every step off, neutral values."""
        off = torch.zeros(batch_size, dtype=torch.bool)
        zeros = torch.zeros(batch_size, dtype=torch.float64)
        p = int(control_points)
        return cls(affine=off, degrees=torch.zeros(batch_size, 3, dtype=torch.float64),
                   scales=torch.ones(batch_size, 3, dtype=torch.float64),
                   translation_mm=torch.zeros(batch_size, 3, dtype=torch.float64), elastic=off,
                   control_mm=torch.zeros(batch_size, 3, p, p, p, dtype=torch.float64),
                   noise=off, noise_std_hu=zeros, noise_correlation_mm=zeros, noise_seed=0,
                   gamma=off, log_gamma=zeros, blur=off,
                   blur_std_mm=torch.zeros(batch_size, 3, dtype=torch.float64), bias=off,
                   bias_coefficients=torch.zeros(batch_size, len(bias_terms(bias_order)),
                                                 dtype=torch.float64))


def _uniform(generator: torch.Generator, shape, low, high) -> torch.Tensor:
    """Uniform values in [low, high) (``low``/``high`` scalars or per-last-axis tensors)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    low_t = torch.as_tensor(low, dtype=torch.float64)
    high_t = torch.as_tensor(high, dtype=torch.float64)
    return low_t + (high_t - low_t) * u


def _flags(generator: torch.Generator, batch_size: int, probability: float) -> torch.Tensor:
    return torch.rand(batch_size, generator=generator, dtype=torch.float64) < probability


def draw_params(batch_size: int, generator: torch.Generator, *,
                elastic_probability: float = ELASTIC_PROBABILITY) -> AugmentParams:
    """Draw one batch's augmentation with :func:`~augment.pipelines.training_pipeline`'s
    probabilities and ranges (affine p 0.8: rotation -5..5 degrees about x and y, -15..15 about
    z, scale 0.9-1.1 and translation -5..5 mm per axis; elastic p 0.25: 7 x 7 x 7 control points
    moved by at most 6, 6, 3 mm; CT noise p 0.5: 0-15 HU, 0.5-1.5 mm; gamma p 0.3: log-gamma
    -0.3..0.3; blur p 0.2: 0-1 mm per axis; bias field p 0.2: order 2, coefficients -0.05..0.05).

    Args:
        batch_size: samples in the batch.
        generator: a CPU ``torch.Generator``; the only source of randomness.
        elastic_probability: probability of the elastic step (as in ``training_pipeline``).

    Example:
        >>> import torch
        >>> from augment.device import draw_params
        >>> params = draw_params(4, torch.Generator().manual_seed(0))
        >>> params.degrees.shape
        torch.Size([4, 3])
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError(f"generator must be a CPU torch.Generator (the values are the same on every "
                        f"device that way); got {generator!r}")
    if not 0.0 <= float(elastic_probability) <= 1.0:
        raise ValueError(f"elastic_probability must be in [0, 1]; got {elastic_probability!r}")
    b, g = int(batch_size), generator
    degree_low, degree_high = AFFINE_DEGREES[0::2], AFFINE_DEGREES[1::2]
    p = ELASTIC_CONTROL_POINTS
    max_mm = torch.tensor(ELASTIC_MAX_DISPLACEMENT_MM, dtype=torch.float64).view(1, 3, 1, 1, 1)
    control = (2.0 * torch.rand(b, 3, p, p, p, generator=g, dtype=torch.float64) - 1.0) * max_mm
    # Outer control points stay put (TorchIO's locked borders): the patch's edges do not move.
    locked = torch.ones(p, p, p, dtype=torch.bool)
    locked[1:-1, 1:-1, 1:-1] = False
    control[:, :, locked] = 0.0
    terms = len(bias_terms(BIAS_ORDER))
    return AugmentParams(
        affine=_flags(g, b, AFFINE_PROBABILITY),
        degrees=_uniform(g, (b, 3), degree_low, degree_high),
        scales=_uniform(g, (b, 3), *AFFINE_SCALES),
        translation_mm=_uniform(g, (b, 3), *AFFINE_TRANSLATION_MM),
        elastic=_flags(g, b, elastic_probability),
        control_mm=control,
        noise=_flags(g, b, NOISE_PROBABILITY),
        noise_std_hu=_uniform(g, (b,), *NOISE_STD_HU),
        noise_correlation_mm=_uniform(g, (b,), *NOISE_CORRELATION_MM),
        noise_seed=int(torch.randint(0, SEED_HIGH, (1,), generator=g).item()),
        gamma=_flags(g, b, GAMMA_PROBABILITY),
        log_gamma=_uniform(g, (b,), *LOG_GAMMA),
        blur=_flags(g, b, BLUR_PROBABILITY),
        blur_std_mm=_uniform(g, (b, 3), *BLUR_STD_MM),
        bias=_flags(g, b, BIAS_PROBABILITY),
        bias_coefficients=_uniform(g, (b, terms), -BIAS_COEFFICIENTS, BIAS_COEFFICIENTS),
    )
