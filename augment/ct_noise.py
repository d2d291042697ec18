"""CT-like correlated noise (low-dose simulation): a random transform and its deterministic twin.

CT noise is not white: reconstruction kernels correlate it over about a millimetre, so it looks
grainy rather than pixel-sharp. TorchIO's ``RandomNoise`` adds white noise; this adds Gaussian
noise smoothed over a correlation length in mm and rescaled to the asked standard deviation in
HU. Lowering the dose to a fraction ``f`` multiplies a scan's noise by ``1 / sqrt(f)``: on a scan
with noise ``s`` HU, adding ``s * sqrt(1 / f - 1)`` HU simulates that dose.
"""

from __future__ import annotations

import numpy as np
import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from torchio.transforms.intensity_transform import IntensityTransform

from synth.heuristic import texture

from . import _core


class RandomCTNoise(RandomTransform, IntensityTransform):
    """Add correlated Gaussian noise of random strength and grain to CT images.

    Args:
        std_hu: ``(min, max)`` standard deviation of the added noise in HU, drawn uniformly (a
            single number ``d`` means ``(0, d)``). Portal-venous liver CT has about 10-25 HU of
            noise; the default adds up to 15 HU, roughly a half- to quarter-dose scan.
        correlation_mm: ``(min, max)`` Gaussian smoothing sigma of the noise in mm (0: white).
        **kwargs: See :class:`~torchio.transforms.Transform` (``p``, ``include``, ``exclude``).

    Every random value (strength, grain and the noise field's seed) comes from the torch RNG and
    is recorded in the history through :class:`CTNoise`.

    Example:
        >>> from augment import RandomCTNoise
        >>> noisy = RandomCTNoise(std_hu=(0, 15), correlation_mm=(0.5, 1.5))(subject)  # doctest: +SKIP
    """

    def __init__(self, std_hu=(0.0, 15.0), correlation_mm=(0.5, 1.5), **kwargs):
        super().__init__(**kwargs)
        self.std_hu_range = self._parse_range(std_hu, "std_hu", min_constraint=0)
        self.correlation_mm_range = self._parse_range(correlation_mm, "correlation_mm", min_constraint=0)

    def get_params(self) -> tuple[float, float, int]:
        std_hu = self.sample_uniform(*self.std_hu_range)
        correlation_mm = self.sample_uniform(*self.correlation_mm_range)
        seed = int(torch.randint(0, _core.SEED_HIGH, (1,), dtype=torch.int64).item())
        return std_hu, correlation_mm, seed

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        names = list(self.get_images_dict(subject))
        if not names:
            return subject
        params = {name: self.get_params() for name in names}
        transform = CTNoise(
            std_hu={name: p[0] for name, p in params.items()},
            correlation_mm={name: p[1] for name, p in params.items()},
            seed={name: p[2] for name, p in params.items()},
            **self._get_base_args(),
        )
        return transform(subject)


class CTNoise(IntensityTransform):
    """Add the correlated Gaussian noise that one seed gives: the twin of :class:`RandomCTNoise`.

    Args:
        std_hu: Standard deviation of the added noise in HU (or a ``{image name: value}`` dict).
        correlation_mm: Gaussian smoothing sigma of the noise in mm, along each axis on the
            image's own spacing (or a dict).
        seed: Seed of the noise field (or a dict).
        **kwargs: See :class:`~torchio.transforms.Transform`.

    Example:
        >>> from augment import CTNoise
        >>> noisy = CTNoise(std_hu=10.0, correlation_mm=1.0, seed=0)(subject)  # doctest: +SKIP
    """

    def __init__(self, std_hu, correlation_mm, seed, **kwargs):
        super().__init__(**kwargs)
        self.std_hu = std_hu
        self.correlation_mm = correlation_mm
        self.seed = seed
        self.args_names = ["std_hu", "correlation_mm", "seed"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for name, image in self.get_images_dict(subject).items():
            std_hu = float(self.get_parameter(self.std_hu, name))
            correlation_mm = float(self.get_parameter(self.correlation_mm, name))
            seed = int(self.get_parameter(self.seed, name))
            noise = correlated_noise(image.spatial_shape, image.spacing, std_hu, correlation_mm, seed)
            image.set_data(image.data.float() + torch.from_numpy(noise)[None])
        return subject


def correlated_noise(shape, spacing_mm, std_hu: float, correlation_mm: float, seed: int) -> np.ndarray:
    """A float32 Gaussian noise field of standard deviation ``std_hu``, smoothed with a Gaussian of
    sigma ``correlation_mm`` (in mm, on ``spacing_mm``); the synthesiser's own texture noise."""
    unit = texture.correlated_noise(tuple(shape), 2.0 * correlation_mm, spacing_mm, np.random.default_rng(seed))
    return (np.float32(std_hu) * unit).astype(np.float32, copy=False)
