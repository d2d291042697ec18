"""TorchIO transforms that insert synthetic liver tumours: a random one and its deterministic twin.

``RandomTumorInsertion`` draws one seed from the torch RNG and hands it, with the settings, to
``TumorInsertion``, which calls the synthesiser. The twin is what lands in the subject's history,
so ``subject.get_composed_history()`` replays the very same lesions.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform

from . import _core


class RandomTumorInsertion(RandomTransform):
    r"""Insert synthetic liver tumours into a CT image and its label map.

    A thin wrapper over :func:`synth.insert_tumor`: lesion size, shape, location and appearance
    are the synthesiser's (see ``docs/synthesis.md``). Sizes are in millimetres on the image's own
    spacing, read from its affine, so a lesion is as round on 0.7 x 0.7 x 5 mm voxels as on 1 mm
    ones. Put it before intensity transforms, so that the lesions get the same noise, blur and
    bias as the rest of the scan, and on whole livers or liver crops (on a crop with no liver it
    does nothing; a label map with no liver whose largest value is 255, a mask saved as 0/255, is
    a ``ValueError``).

    Which images: exactly one :class:`~torchio.ScalarImage` (the CT, in Hounsfield units) and
    exactly one :class:`~torchio.LabelMap` of the subject, after TorchIO's ``include`` /
    ``exclude`` (e.g. ``include=["ct", "seg"]`` when the subject holds more images). Both must
    have one channel and share one space (shape and affine); otherwise a ``ValueError`` says why.

    Args:
        size: Equivalent diameter of each lesion: ``"tiny"`` (3-5 mm), ``"small"`` (5-10 mm),
            ``"medium"`` (10-20 mm), ``"large"`` (20-50 mm), a ``(min_mm, max_mm)`` range, or
            ``"mix"`` (real lesion statistics, median about 13 mm).
        count: Number of lesions per call, or an inclusive ``(min, max)`` range.
        phenotype: ``"hypodense"``, ``"isodense"``, ``"hyperdense"``, ``"rim-enhancing"``,
            ``"necrotic"``, ``"mix"`` (realistic: mostly hypodense), ``"diverse"`` (a deliberately
            varied mix) or a ``{name: weight}`` dict. The contrast follows the scan's phase,
            estimated from its liver unless ``synthesis_options={"phase": ...}`` says it.
        liver_label: Label value of the liver in the label map (other organs may be present and
            are left alone).
        tumor_label: Label value of tumours: existing ones are kept and avoided, new ones get it.
        on_failure: What to do when the lesions find no room in the liver: ``"warn"`` (leave the
            subject unchanged and warn), ``"ignore"`` (leave it unchanged) or ``"raise"``.
        method: ``"heuristic"`` (the numpy texture model), ``"diffusion"`` (a trained diffusion
            model inpaints each lesion; see ``docs/diffusion.md``) or ``"copy-paste"`` (real
            lesions from a bank, turned, scaled and pasted; see ``docs/copy_paste.md``).
        model: The diffusion model: a folder (``config.json`` + ``weights.safetensors``, read
            once per process) or a loaded ``synth.diffusion.DiffusionModel``. Only with
            ``method="diffusion"``.
        bank: The lesion bank: a folder (``tumorsynth bank build``, read once per process) or a
            loaded ``synth.copy_paste.LesionBank``. Only with ``method="copy-paste"``.
        quality_filter: A quality gate (``tumorsynth realism --save-gate``; see
            ``docs/realism.md``): its JSON file (read once per process) or a loaded
            ``synth.realism.QualityGate``. A lesion it scores below its threshold is drawn again,
            at most 5 times. Any method.
        synthesis_options: Further keyword arguments of :func:`synth.synthesize`
            (``edge_mm``, ``phase``, ``subcapsular_probability``, ``mass_effect``, ``partial_volume``,
            ``max_attempts``).
        space_tolerance_mm: Largest distance, in mm, by which the image's and the label map's
            affines may place a voxel apart.
        **kwargs: See :class:`~torchio.transforms.Transform` (``p``, ``include``, ``exclude``,
            ...).

    Example:
        >>> import torchio as tio
        >>> from augment import RandomTumorInsertion
        >>> transform = tio.Compose([
        ...     RandomTumorInsertion(size="small", count=(1, 3), p=0.8),
        ...     tio.RandomNoise(std=(0, 10)),
        ... ])
        >>> augmented = transform(subject)  # doctest: +SKIP
        >>> replayed = augmented.get_composed_history()(subject)  # the same lesions  # doctest: +SKIP
    """

    def __init__(self, size="mix", count=(1, 3), phenotype="mix", liver_label: int = 1,
                 tumor_label: int = 2, on_failure: str = "warn", synthesis_options: dict | None = None,
                 space_tolerance_mm: float = 1e-3, method: str = "heuristic", model=None, bank=None,
                 quality_filter=None, **kwargs):
        super().__init__(**kwargs)
        synthesis_options = _core.with_quality_filter(with_method(synthesis_options, method, model, bank),
                                                      quality_filter)
        _core.store_settings(self, size=size, count=count, phenotype=phenotype, liver_label=liver_label,
                             tumor_label=tumor_label, on_failure=on_failure,
                             synthesis_options=synthesis_options, space_tolerance_mm=space_tolerance_mm)

    def get_params(self) -> int:
        """The only random value: the synthesiser's seed, from the torch RNG.

        Drawing it from torch (not numpy) is what makes ``torch.manual_seed`` reproduce a run and
        lets every DataLoader worker, which torch seeds differently, draw different lesions.
        """
        return int(torch.randint(0, _core.SEED_HIGH, (1,), dtype=torch.int64).item())

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        base_args: dict[str, Any] = self._get_base_args()  # Transform's keyword arguments (torchio: object)
        transform = TumorInsertion(seed=self.get_params(), **_core.settings_of(self), **base_args)
        return transform(subject)


class TumorInsertion(_core.InsertionSettings, tio.Transform):
    r"""Insert the synthetic liver tumours that one seed gives: the deterministic twin of
    :class:`RandomTumorInsertion`.

    The same seed, settings and input give the same lesions (image values equal up to float
    rounding, label map identical), which is how ``subject.get_composed_history()`` replays a
    :class:`RandomTumorInsertion`.

    Args:
        seed: Non-negative integer seed of the synthesiser.
        size, count, phenotype, liver_label, tumor_label, on_failure, synthesis_options,
        space_tolerance_mm, method, model, bank, quality_filter: As in :class:`RandomTumorInsertion`.
        **kwargs: See :class:`~torchio.transforms.Transform`.

    Example:
        >>> from augment import TumorInsertion
        >>> transform = TumorInsertion(seed=42, size=(8, 12), count=2, include=["ct", "seg"])
        >>> with_lesions = transform(subject)  # doctest: +SKIP
    """



    def __init__(self, seed: int, size="mix", count=(1, 3), phenotype="mix", liver_label: int = 1,
                 tumor_label: int = 2, on_failure: str = "warn", synthesis_options: dict | None = None,
                 space_tolerance_mm: float = 1e-3, method: str = "heuristic", model=None, bank=None,
                 quality_filter=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        self.seed = seed
        synthesis_options = _core.with_quality_filter(with_method(synthesis_options, method, model, bank),
                                                      quality_filter)
        _core.store_settings(self, size=size, count=count, phenotype=phenotype, liver_label=liver_label,
                             tumor_label=tumor_label, on_failure=on_failure,
                             synthesis_options=synthesis_options, space_tolerance_mm=space_tolerance_mm)
        # Every value the insertion depends on: TorchIO records these in the history.
        self.args_names = ["seed", *_core.SETTINGS]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        (image_name, image), (label_name, label_map) = select_ct_and_label(self, subject)
        _core.check_same_space(image.spatial_shape, image.affine, label_map.spatial_shape,
                               label_map.affine, image_name=image_name, label_name=label_name,
                               tolerance_mm=self.space_tolerance_mm)
        for name, item in ((image_name, image), (label_name, label_map)):
            if item.num_channels != 1:
                raise ValueError(f"{self.name} needs single-channel images; {name!r} has "
                                 f"{item.num_channels} channels")
        inserted = _core.insert_lesions(
            image.data[0].numpy(), label_map.data[0].numpy(), image.spacing, seed=self.seed,
            size=self.size, count=self.count, phenotype=self.phenotype,
            liver_label=self.liver_label, tumor_label=self.tumor_label,
            on_failure=self.on_failure, synthesis_options=self.synthesis_options, label_name=label_name)
        if inserted is not None:
            volume, labels = inserted
            image.set_data(torch.from_numpy(volume)[None])
            label_map.set_data(torch.from_numpy(labels)[None])
        return subject


def select_ct_and_label(transform: tio.Transform, subject: tio.Subject):
    """The one CT image and the one label map that ``transform``'s include/exclude leave, as
    ``(name, image)`` pairs, or a ValueError that lists what was found."""
    images = subject.get_images_dict(intensity_only=False, include=transform.include,
                                     exclude=transform.exclude)
    scalars = [(n, i) for n, i in images.items() if isinstance(i, tio.ScalarImage)]
    label_maps = [(n, i) for n, i in images.items() if isinstance(i, tio.LabelMap)]
    for kind, found in (("scalar image (the CT)", scalars), ("label map", label_maps)):
        if len(found) != 1:
            names = [n for n, _ in found]
            raise ValueError(
                f"{transform.name} needs exactly one {kind} after include/exclude; found "
                f"{len(found)}: {names}. Choose the CT and its label map with "
                f"include=[...] or exclude=[...]")
    return scalars[0], label_maps[0]


def with_method(synthesis_options: dict | None, method: str, model, bank=None) -> dict | None:
    """The synthesis options with the synthesiser's ``method`` and its ``model`` or ``bank`` added.

    They travel inside the synthesis options, which the transforms store, record in TorchIO's
    history and hand to the deterministic twin: a replay uses the same model or bank. The heuristic
    adds nothing, so its settings (and history) are exactly what they were before the other
    methods existed.
    """
    if method not in ("heuristic", "diffusion", "copy-paste"):
        raise ValueError(f"method must be 'heuristic', 'diffusion' or 'copy-paste'; got {method!r}")
    if model is not None and method != "diffusion":
        raise ValueError("model= only applies to method='diffusion'")
    if bank is not None and method != "copy-paste":
        raise ValueError("bank= only applies to method='copy-paste'")
    if method == "heuristic":
        return synthesis_options
    if method == "diffusion" and model is None:
        raise ValueError("method='diffusion' needs model=: a model folder (config.json + "
                         "weights.safetensors) or a loaded synth.diffusion.DiffusionModel")
    if method == "copy-paste" and bank is None:
        raise ValueError("method='copy-paste' needs bank=: a lesion bank folder (tumorsynth bank build) "
                         "or a loaded synth.copy_paste.LesionBank")
    options = dict(synthesis_options or {})
    clash = {"method", "model", "bank"} & set(options)
    if clash:
        raise ValueError(f"give {sorted(clash)} as arguments of the transform, not in synthesis_options")
    name, value = ("model", model) if method == "diffusion" else ("bank", bank)
    options.update({"method": method, name: os.fspath(value) if isinstance(value, (str, os.PathLike)) else value})
    return options
