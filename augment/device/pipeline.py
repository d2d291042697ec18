"""The whole device augmentation of a batch: spatial steps, then intensity steps, in HU."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from augment.pipelines import AIR_HU, BIAS_ORDER, DEFAULT_WINDOW_HU, ELASTIC_PROBABILITY
from synth.hu_window import check_window
from synth.validation import check_spacing

from .intensity import add_ct_noise, apply_bias_field, apply_gamma, gaussian_smooth
from .params import AugmentParams, draw_params
from .spatial import centre_crop, resample, sampling_grid

__all__ = ["DeviceAugmenter", "SpacingMM", "augment_batch"]

#: Voxel size in mm: one ``(x, y, z)`` triple for the whole batch, or one per sample ``(B, 3)``.
SpacingMM = Sequence[float] | Sequence[Sequence[float]] | torch.Tensor | float


def _spacing_rows(spacing_mm: SpacingMM, batch_size: int) -> torch.Tensor:
    """(B, 3) float64 spacing in mm from one (x, y, z) triple or one triple per sample."""
    rows = torch.as_tensor(spacing_mm, dtype=torch.float64).cpu()
    if rows.ndim <= 1:
        return torch.tensor(check_spacing(rows.tolist()), dtype=torch.float64).expand(batch_size, 3)
    if rows.ndim != 2 or rows.shape[0] != batch_size:
        raise ValueError(f"spacing_mm must be one (x, y, z) triple in mm or one per sample, shape "
                         f"({batch_size}, 3); got shape {tuple(rows.shape)}")
    return torch.tensor([check_spacing(row, name=f"spacing_mm[{b}]") for b, row in enumerate(rows.tolist())],
                        dtype=torch.float64)


def _check_batch(image: torch.Tensor, label: torch.Tensor, patch: tuple[int, int, int]) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 5 or not image.is_floating_point():
        raise ValueError(f"image must be a float tensor (B, C, X, Y, Z); got "
                         f"{getattr(image, 'dtype', type(image))} of shape {tuple(getattr(image, 'shape', ()))}")
    if not isinstance(label, torch.Tensor) or label.ndim != 5 or label.shape[1] != 1:
        raise ValueError(f"label must be a tensor (B, 1, X, Y, Z); got shape "
                         f"{tuple(getattr(label, 'shape', ()))}")
    if label.is_floating_point() or label.is_complex():
        raise ValueError(f"label must hold integer label values (e.g. uint8 or int64); got {label.dtype}: "
                         f"convert with label.round().long() if the values are whole numbers")
    if label.shape[0] != image.shape[0] or label.shape[2:] != image.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and label {tuple(label.shape)} must share the batch "
                         f"size and the spatial shape")
    if label.device != image.device:
        raise ValueError(f"image is on {image.device}, label on {label.device}: move both to one device")
    if any(p > n for p, n in zip(patch, image.shape[2:])):
        raise ValueError(f"patch_size {patch} is larger than the input block {tuple(image.shape[2:])}: the "
                         f"patch is cut from the block's centre")


def _step(volumes: torch.Tensor, flags: torch.Tensor,
          fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``volumes`` (B, C, X, Y, Z) with ``fn`` applied to the flagged samples. ``fn`` gets their
    channels as (n * C, X, Y, Z) and the batch indices of each row (CPU long tensor), and returns
    new volumes. Writes into ``volumes`` when only some samples are flagged: call it on the
    pipeline's own tensors only, never on the caller's."""
    chosen = torch.nonzero(flags, as_tuple=True)[0]
    if chosen.numel() == 0:
        return volumes
    channels = volumes.shape[1]
    rows = chosen.repeat_interleave(channels)
    if chosen.numel() == volumes.shape[0]:  # every sample: no gathering and scattering
        return fn(volumes.reshape(-1, *volumes.shape[2:]), rows).view(volumes.shape)
    on_device = chosen.to(volumes.device)
    subset = volumes.index_select(0, on_device)
    changed = fn(subset.reshape(-1, *volumes.shape[2:]), rows).view(subset.shape)
    return volumes.index_copy_(0, on_device, changed)


def augment_batch(image_hu: torch.Tensor, label: torch.Tensor, spacing_mm: SpacingMM, params: AugmentParams,
                  patch_size: Sequence[int], window_hu: Sequence[float] = DEFAULT_WINDOW_HU, *,
                  pad_hu: float = AIR_HU) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch with given parameters: deterministic (the noise from ``params.noise_seed``).

    Args:
        image_hu: (B, C, X, Y, Z) float CT blocks in HU, on any device (not modified).
        label: (B, 1, X, Y, Z) integer label maps on the same device (not modified).
        spacing_mm: voxel size in mm, one ``(x, y, z)`` triple or one per sample (B, 3).
        params: from :func:`~augment.device.draw_params` (or built by hand, e.g.
            :meth:`AugmentParams.identity`).
        patch_size: voxels (X, Y, Z) of the output, cut from the centre of the block; at most
            the block's size.
        window_hu: ``(low, high)`` HU: the scale of the gamma step.
        pad_hu: HU put where the deformation reaches outside the block (air).

    Returns:
        The image in HU (same dtype, not windowed) and the label (same dtype, values kept: nearest
        resampling, 0 outside the block), both ``patch_size``. Steps in the CPU pipeline's order:
        affine + elastic (one resampling), CT noise, gamma, blur, bias field.

    Example:
        >>> import torch
        >>> from augment.device import augment_batch, draw_params
        >>> image = torch.full((2, 1, 40, 40, 20), 60.0)
        >>> label = torch.ones(2, 1, 40, 40, 20, dtype=torch.uint8)
        >>> params = draw_params(2, torch.Generator().manual_seed(0))
        >>> out, out_label = augment_batch(image, label, (0.8, 0.8, 2.5), params, (32, 32, 16))
        >>> out.shape, out_label.dtype
        (torch.Size([2, 1, 32, 32, 16]), torch.uint8)
    """
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch_size must be three positive voxel counts (X, Y, Z); got {tuple(patch_size)}")
    _check_batch(image_hu, label, patch)
    window = check_window(window_hu)
    batch = int(image_hu.shape[0])
    if params.batch_size != batch:
        raise ValueError(f"params are for {params.batch_size} samples, the batch has {batch}: draw them "
                         f"with draw_params({batch}, generator)")
    spacing = _spacing_rows(spacing_mm, batch)
    device = image_hu.device
    block = tuple(int(s) for s in image_hu.shape[2:])

    # Spatial: samples with an affine or an elastic step are resampled, the rest only cropped.
    chosen = torch.nonzero(params.affine | params.elastic, as_tuple=True)[0]
    if chosen.numel():
        # The grid spans the block plus the one voxel of padding resample() adds on each side.
        padded_block = tuple(n + 2 for n in block)
        grid = sampling_grid(params, chosen, spacing, padded_block, patch, device, image_hu.dtype)
    if chosen.numel() == batch:
        image, out_label = resample(image_hu, label, grid, pad_hu)
    else:
        # Copies (never views of the caller's tensors): the steps below may write into them.
        image = centre_crop(image_hu, patch).clone(memory_format=torch.contiguous_format)
        out_label = centre_crop(label, patch).clone(memory_format=torch.contiguous_format)
        if chosen.numel():
            on_device = chosen.to(device)
            warped, warped_label = resample(image_hu.index_select(0, on_device),
                                            label.index_select(0, on_device), grid, pad_hu)
            image.index_copy_(0, on_device, warped)
            out_label.index_copy_(0, on_device, warped_label)

    # Intensity, in the CPU pipeline's order. Labels are never changed by these.
    generator = torch.Generator(device=device).manual_seed(params.noise_seed)
    image = _step(image, params.noise, lambda v, rows: add_ct_noise(
        v, params.noise_std_hu[rows], params.noise_correlation_mm[rows], spacing[rows], generator))
    image = _step(image, params.gamma, lambda v, rows: apply_gamma(v, params.log_gamma[rows], window))
    image = _step(image, params.blur, lambda v, rows: gaussian_smooth(
        v, params.blur_std_mm[rows] / spacing[rows]))
    image = _step(image, params.bias, lambda v, rows: apply_bias_field(
        v, params.bias_coefficients[rows], BIAS_ORDER))
    return image, out_label


class DeviceAugmenter:
    """Draws and applies the device augmentation of batches: :func:`draw_params` +
    :func:`augment_batch` with fixed patch size and window.

    Args:
        patch_size: voxels (X, Y, Z) of the augmented patches; the input blocks are larger (e.g.
            :func:`augment.pipelines.crop_size_for`) so that rotation brings tissue, not air.
        window_hu: ``(low, high)`` HU, the gamma step's scale.
        elastic_probability: probability of the elastic step.

    Example:
        >>> import torch
        >>> from augment.device import DeviceAugmenter
        >>> augmenter = DeviceAugmenter((32, 32, 16))
        >>> image = torch.full((2, 1, 40, 40, 20), 60.0)
        >>> label = torch.ones(2, 1, 40, 40, 20, dtype=torch.uint8)
        >>> out, out_label = augmenter(image, label, (0.8, 0.8, 2.5), torch.Generator().manual_seed(0))
        >>> tuple(out.shape)
        (2, 1, 32, 32, 16)
    """

    def __init__(self, patch_size: Sequence[int], window_hu: Sequence[float] = DEFAULT_WINDOW_HU, *,
                 elastic_probability: float = ELASTIC_PROBABILITY):
        self.patch_size = tuple(int(p) for p in patch_size)
        self.window_hu = check_window(window_hu)
        self.elastic_probability = float(elastic_probability)

    def draw(self, batch_size: int, generator: torch.Generator) -> AugmentParams:
        """The random values of one batch (all from ``generator``, a CPU ``torch.Generator``)."""
        return draw_params(batch_size, generator, elastic_probability=self.elastic_probability)

    def apply(self, image_hu: torch.Tensor, label: torch.Tensor, spacing_mm: SpacingMM,
              params: AugmentParams) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`augment_batch` with this augmenter's patch size and window."""
        return augment_batch(image_hu, label, spacing_mm, params, self.patch_size, self.window_hu)

    def __call__(self, image_hu: torch.Tensor, label: torch.Tensor, spacing_mm: SpacingMM,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw and apply: HU blocks in, HU patches and labels out (see :func:`augment_batch`)."""
        return self.apply(image_hu, label, spacing_mm, self.draw(int(image_hu.shape[0]), generator))
