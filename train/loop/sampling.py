"""Training patches: foreground/tumour oversampling and on-the-fly synthetic tumours.

Every draw for step ``s`` on DDP rank ``r`` comes from ``numpy.random.default_rng([seed, s, r])``,
so a batch depends on nothing but (seed, step, rank): a resumed run sees exactly the batches an
uninterrupted run would have seen, without saving any random state. This holds for the diffusion
synthesiser (its noise is seeded from the insertion's seed) and for the TorchIO augmentation (its
torch RNG is seeded from the step's generator), on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synth.hu_window import range_to_window, window_to_range
from synth.labels import IGNORE, Label
from synth.seeding import rng_for

from .config import TrainConfig, parse_synthetic_size

__all__ = ["PatchSampler", "PreparedCase", "check_diffusion_folder", "denormalise_hu", "load_bank",
           "load_diffusion_model", "load_quality_gate", "normalise_hu", "prepare_case", "step_rng"]

# HU of the padding around hosts smaller than a patch: air.
PAD_HU = -1000.0


def check_diffusion_folder(folder) -> None:
    """Raise a clear ``ValueError`` when ``TrainConfig.synthetic_model`` is not a folder."""
    from pathlib import Path

    if folder is None or not Path(folder).is_dir():
        raise ValueError(f"synthetic_model {folder!r}: no such folder; expected a diffusion model "
                         f"folder (config.json + weights.safetensors) from tumorsynth diffusion train")


def load_diffusion_model(folder, *, device=None):
    """Load the diffusion model of ``TrainConfig.synthetic_model`` (a clear ``ValueError`` when the
    folder is missing or is not a model)."""
    check_diffusion_folder(folder)
    from synth.diffusion import load_model

    try:
        return load_model(folder, device=device)
    except FileNotFoundError as exc:
        raise ValueError(f"synthetic_model {str(folder)!r} is not a diffusion model folder: {exc}") from None


def load_bank(folder):
    """The lesion bank of ``TrainConfig.synthetic_bank``, loaded (once per process) and checked: a
    missing, empty or corrupt bank is a ``ValueError`` naming it."""
    from synth.copy_paste import cached_bank

    try:
        return cached_bank(folder)
    except FileNotFoundError as exc:
        raise ValueError(f"synthetic_bank: {exc}") from None


def load_quality_gate(path):
    """The quality gate of ``TrainConfig.synthetic_quality_gate``, loaded (once per process) and
    checked: a missing, empty, corrupt or outdated file is a ``ValueError`` naming the setting."""
    from synth.realism.gate import cached_gate

    try:
        return cached_gate(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"synthetic_quality_gate: {exc}") from None


def step_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of every random draw made for ``step`` on ``rank``."""
    return rng_for(int(seed), int(step), int(rank))


# The window map is defined once, in synth.hu_window; these are its names in the training loop.
normalise_hu = window_to_range
denormalise_hu = range_to_window


def _pad_to(array: np.ndarray, shape: Sequence[int], value) -> np.ndarray:
    """Pad symmetrically so every side is at least ``shape`` (``array`` itself when it already is)."""
    widths = [(max(0, s - n) // 2, max(0, s - n) - max(0, s - n) // 2) for n, s in zip(array.shape, shape)]
    if not any(a or b for a, b in widths):
        return array
    return np.pad(array, widths, mode="constant", constant_values=value)


def _crop(arrays, centre, size):
    """Crops of ``size`` that contain ``centre``, as centred as the array bounds allow."""
    shape = arrays[0].shape
    start = [min(max(0, c - s // 2), n - s) for c, s, n in zip(centre, size, shape)]
    box = tuple(slice(a, a + s) for a, s in zip(start, size))
    return [a[box] for a in arrays]


@dataclass(frozen=True)
class PreparedCase:
    """A case ready for patch drawing: normalised image, label, padded to at least the patch.

    ``foreground`` and ``tumor`` hold the flat indices of label >= 1 and label == 2 voxels.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    foreground: np.ndarray
    tumor: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm; the augmentation's affine needs it


def prepare_case(case, patch_size: Sequence[int], hu_window: Sequence[float]) -> PreparedCase:
    """Normalise and pad a :class:`train.data.Case` (pad value: the window's low end, label 0)."""
    image = _pad_to(normalise_hu(case.image, hu_window), patch_size, 0.0)
    label = _pad_to(np.asarray(case.label, dtype=np.uint8), patch_size, 0)
    flat = label.ravel()
    sx, sy, sz = (float(s) for s in case.spacing)
    return PreparedCase(case.case_id, image, label, np.flatnonzero(flat >= Label.LIVER),
                        np.flatnonzero(flat == Label.TUMOR), (sx, sy, sz))


@dataclass(frozen=True)
class _Host:
    """A host case prepared once for insertion (``scan``: a :class:`synth.HostScan` over the
    sampler's own copy of the case, in HU); each synthetic patch inserts into it in place and puts
    it back."""

    case_id: str
    scan: Any
    liver: np.ndarray  # flat indices of label == 1: patch centres when no lesion found room


class PatchSampler:
    """Draws training patches from cases and, with a probability, from hosts with new tumours.

    Args:
        cases: :class:`train.data.Case` records (HU images, 0/1/2 labels).
        config: patch size, HU window, shares and synthetic settings are read from it.
        hosts: cases whose liver receives synthetic tumours (typically healthy ones).
        diffusion_model: with ``config.synthetic_method="diffusion"``, the loaded
            :class:`synth.diffusion.DiffusionModel` to use (the trainer loads it once, on its
            device); ``None`` loads ``config.synthetic_model`` here, on the CPU.

    With ``config.augmentation="torchio"`` every patch is cut as a larger block
    (:func:`~train.loop.augmentation.augmentation_block`), augmented, and cut to the patch
    (:class:`~train.loop.augmentation.PatchAugmenter`). With ``config.augmentation="device"``
    the sampler hands out the larger blocks themselves (normalised, not augmented): the trainer
    augments them on its device and cuts the patch there (:func:`~train.loop.augmentation.augment_on_device`).
    """

    def __init__(self, cases: Sequence, config: TrainConfig, hosts: Sequence = (), *,
                 diffusion_model=None):
        if not cases and not (hosts and config.synthetic_probability > 0):
            raise ValueError("no training cases (and no hosts with synthetic_probability > 0)")
        if config.synthetic_probability > 0 and not hosts:
            raise ValueError(f"synthetic_probability is {config.synthetic_probability} but no hosts were given")
        if config.synthetic_probability < 1 and not cases:
            raise ValueError("without training cases synthetic_probability must be 1")
        self.config = config
        self.patch = tuple(config.patch_size)
        self.augmenter = None
        # The size cut from a case or a synthetic region: the patch itself, or the larger block
        # the augmentation turns and deforms before the patch is cut from its centre.
        self.block = self.patch
        if config.augmentation in ("torchio", "device"):
            from .augmentation import PatchAugmenter, augmentation_block

            self.block = augmentation_block(self.patch)
            if config.augmentation == "torchio":
                self.augmenter = PatchAugmenter(self.patch, config.hu_window)
        self.cases = [prepare_case(c, self.block, config.hu_window) for c in cases]
        self.hosts = [self._prepare_host(h) for h in hosts] if config.synthetic_probability > 0 else []
        self.synthetic_size = parse_synthetic_size(config.synthetic_size)
        self.insert_options = {}
        if config.synthetic_method == "diffusion" and self.hosts:
            if diffusion_model is None:
                diffusion_model = load_diffusion_model(config.synthetic_model, device="cpu")
            self.insert_options = {"method": "diffusion", "model": diffusion_model}
        if config.synthetic_method == "copy-paste" and self.hosts:
            self.insert_options = {"method": "copy-paste", "bank": load_bank(config.synthetic_bank)}
        if config.synthetic_quality_gate is not None and self.hosts:
            self.insert_options["quality_filter"] = load_quality_gate(config.synthetic_quality_gate)

    def _prepare_host(self, case) -> _Host:
        import synth

        # The sampler's own copies (np.array copies): insertions write into them and undo it.
        image = _pad_to(np.array(case.image, dtype=np.float32), self.block, PAD_HU)
        label = _pad_to(np.array(case.label, dtype=np.uint8), self.block, 0)
        liver = np.flatnonzero(label.ravel() == Label.LIVER)
        if liver.size == 0:
            raise ValueError(f"host {case.case_id!r} has no liver voxels (label 1) for synthetic tumours")
        try:
            scan = synth.prepare_host(image, label, spacing=case.spacing)
        except ValueError as exc:
            raise ValueError(f"host {case.case_id!r}: {exc}") from None
        return _Host(case.case_id, scan, liver)

    # --- real patches ---------------------------------------------------------------------
    def draw_centre(self, case: PreparedCase, rng: np.random.Generator) -> tuple[str, tuple[int, int, int]]:
        """Pick a patch centre: ``("tumor" | "liver" | "random", voxel)``."""
        kind = self.draw_centre_kind(rng)
        if kind != "random":
            pool = case.tumor if kind == "tumor" and case.tumor.size else case.foreground
            kind = "tumor" if pool is case.tumor else "liver"
            if pool.size:
                flat = pool[rng.integers(pool.size)]
                x, y, z = (int(v) for v in np.unravel_index(flat, case.label.shape))
                return kind, (x, y, z)
        x, y, z = (int(rng.integers(n)) for n in case.label.shape)
        return "random", (x, y, z)

    def draw_centre_kind(self, rng: np.random.Generator) -> str:
        """``"tumor"``, ``"liver"`` or ``"random"`` with the configured shares (one draw)."""
        u = rng.random()
        if u < self.config.tumor_share:
            return "tumor"
        return "liver" if u < self.config.tumor_share + self.config.foreground_share else "random"

    def real_patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A patch (or, for device augmentation, a block) of a training case."""
        image, label, _ = self._real_patch(rng)
        return image, label

    def _real_patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        case = self.cases[int(rng.integers(len(self.cases)))]
        _, centre = self.draw_centre(case, rng)
        image, label = _crop([case.image, case.label], centre, self.block)
        if self.augmenter is not None:
            # The prepared case holds the normalised image; the augmentation works in HU.
            image, label = self.augmenter(denormalise_hu(image, self.config.hu_window), label, case.spacing, rng)
        return image, label, case.spacing

    # --- synthetic patches ----------------------------------------------------------------
    def synthetic_patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A patch of a host with tumours inserted into its liver, centred on one of them (or, with
        ``synthetic_centre="shares"``, as a real patch is centred)."""
        image, label, _ = self._synthetic_patch(rng)
        return image, label

    def _synthetic_patch(self, rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        """The synthetic patch and its spacing (mm).

        The host is prepared once; the insertion writes into it in place (no copy of the scan), the
        patch is copied out, and the host is put back (``HostScan.restore``), so every patch
        depends only on its own random draws.
        """
        import synth

        host = self.hosts[int(rng.integers(len(self.hosts)))]
        scan = host.scan
        kind = "tumor" if self.config.synthetic_centre == "lesion" else self.draw_centre_kind(rng)
        seed = int(rng.integers(2**63 - 1))
        try:
            result = scan.insert(size=self.synthetic_size, count=self.config.synthetic_count, seed=seed,
                                 out=(scan.volume, scan.label), **self.insert_options)
        except synth.LesionPlacementError:
            result = None  # no room: a patch of the host without a new lesion
        try:
            if kind == "tumor" and result is not None and result.lesions:
                centre = result.lesions[int(rng.integers(len(result.lesions)))].center_voxel
            elif kind == "random":
                x, y, z = (int(rng.integers(n)) for n in scan.label.shape)
                centre = (x, y, z)
            else:
                x, y, z = np.unravel_index(host.liver[rng.integers(host.liver.size)], scan.label.shape)
                centre = (int(x), int(y), int(z))
            image, label = (a.copy() for a in _crop([scan.volume, scan.label], centre, self.block))
        finally:
            if result is not None:
                scan.restore(result)
        if self.config.host_tumors == "ignore":  # the host's own tumours: out of the loss
            real_tumor = _crop([scan.label], centre, self.block)[0] == Label.TUMOR
            if real_tumor.any():
                label = np.where(real_tumor, np.uint8(IGNORE), label)
        if self.augmenter is not None:
            image, label = self.augmenter(image, label, scan.spacing, rng)
            return image, label, scan.spacing
        return normalise_hu(image, self.config.hu_window), np.asarray(label, dtype=np.uint8), scan.spacing

    # --- batches --------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One ``(image, label)`` patch pair, each of the patch shape (the block's, for device
        augmentation)."""
        image, label, _ = self._sample(rng)
        return image, label

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        if self.hosts and rng.random() < self.config.synthetic_probability:
            return self._synthetic_patch(rng)
        return self._real_patch(rng)

    def batch(self, step: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Batch of step ``step``: images ``(B, 1, X, Y, Z)`` float32, labels uint8, same shape."""
        images, labels, _ = self.batch_with_spacing(step, rank)
        return images, labels

    def batch_with_spacing(self, step: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`batch` and each sample's voxel size in mm, ``(B, 3)`` float64 (what device
        augmentation needs to rotate and deform in mm)."""
        rng = step_rng(self.config.seed, step, rank)
        samples = [self._sample(rng) for _ in range(self.config.batch_size)]
        images = np.stack([s[0] for s in samples])[:, None].astype(np.float32, copy=False)
        labels = np.stack([s[1] for s in samples])[:, None].astype(np.uint8, copy=False)
        spacing = np.array([s[2] for s in samples], dtype=np.float64)
        return images, labels, spacing
