"""The one call into the synthesiser that every transform of this package shares.

The TorchIO and MONAI transforms differ only in how they find the image, the label map, the
spacing and the seed; everything they do to the arrays happens here, on numpy arrays, through
``synth.prepare_host(...).insert(...)``. Nothing here decides what a lesion looks like.
"""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np

import synth
from synth.heuristic.size import parse_size
from synth.heuristic.texture import parse_phenotype
from synth.labels import Label
from synth.types import TypeCount, TypePhenotype, TypeSize
from synth.validation import affine_disagreement_mm, check_count

ON_FAILURE = ("raise", "warn", "ignore")
# Seeds are drawn from [0, SEED_HIGH): wide enough that two draws in a long training run
# practically never coincide, and small enough for every RNG API that draws them.
SEED_HIGH = 2**62


class InsertionSettings:
    """The settings every tumour-insertion transform carries (TorchIO and MONAI alike), validated
    by :func:`check_settings` and set by :func:`store_settings`; declared here for type checkers."""

    size: TypeSize
    count: TypeCount
    phenotype: TypePhenotype
    liver_label: int
    tumor_label: int
    on_failure: str
    synthesis_options: dict
    space_tolerance_mm: float


def check_settings(*, size, count, phenotype, liver_label, tumor_label, on_failure,
                   synthesis_options) -> dict:
    """Validate the insertion settings when a transform is built, not later inside a worker.

    Returns the synthesis options as a new plain dict.
    """
    parse_size(size)
    check_count(count)
    parse_phenotype(phenotype)
    for name, value in (("liver_label", liver_label), ("tumor_label", tumor_label)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer label value; got {value!r}")
    if liver_label == tumor_label:
        raise ValueError(f"liver_label and tumor_label must differ; both are {liver_label}")
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {', '.join(ON_FAILURE)}; got {on_failure!r}")
    options = dict(synthesis_options or {})
    reserved = {"size", "count", "phenotype", "seed", "rng"} & set(options)
    if reserved:
        raise ValueError(f"synthesis_options must not hold {sorted(reserved)}: they are arguments "
                         f"of the transform itself")
    return options


def with_quality_filter(synthesis_options: dict | None, quality_filter) -> dict | None:
    """The synthesis options with ``quality_filter`` (a quality gate or its JSON file) added.

    A path is read now (a missing or bad file fails when the transform is built, not in a data
    loader worker) and stored as the path: the transform stays small to pickle and its history
    names the file; each process then reads it once (:func:`synth.realism.gate.cached_gate`).
    """
    if quality_filter is None:
        return synthesis_options
    options = dict(synthesis_options or {})
    if "quality_filter" in options:
        raise ValueError("give quality_filter as an argument of the transform, not in synthesis_options")
    from synth.realism.gate import QualityGate, cached_gate

    if isinstance(quality_filter, (str, os.PathLike)):
        cached_gate(quality_filter)
        quality_filter = os.fspath(quality_filter)
    elif not isinstance(quality_filter, QualityGate):
        raise TypeError(f"quality_filter must be a synth.realism.QualityGate or the path of a gate JSON file "
                        f"(tumorsynth realism --save-gate); got {type(quality_filter).__name__}")
    options["quality_filter"] = quality_filter
    return options


# The settings every insertion transform holds (besides its seed): validated once, stored as
# attributes, recorded in TorchIO's history and handed to the deterministic twin.
SETTINGS = ("size", "count", "phenotype", "liver_label", "tumor_label", "on_failure",
            "synthesis_options", "space_tolerance_mm")


def store_settings(transform, *, size, count, phenotype, liver_label, tumor_label, on_failure,
                   synthesis_options, space_tolerance_mm) -> None:
    """Validate the insertion settings and set them as attributes of ``transform``."""
    synthesis_options = check_settings(
        size=size, count=count, phenotype=phenotype, liver_label=liver_label,
        tumor_label=tumor_label, on_failure=on_failure, synthesis_options=synthesis_options)
    values = dict(size=size, count=count, phenotype=phenotype, liver_label=liver_label,
                  tumor_label=tumor_label, on_failure=on_failure, synthesis_options=synthesis_options,
                  space_tolerance_mm=space_tolerance_mm)
    for name in SETTINGS:
        setattr(transform, name, values[name])


def settings_of(transform) -> dict:
    """The stored settings of an insertion transform, as keyword arguments."""
    return {name: getattr(transform, name) for name in SETTINGS}


def check_same_space(image_shape, image_affine, label_shape, label_affine, *, image_name="image",
                     label_name="label", tolerance_mm=1e-3) -> None:
    """Raise ValueError unless the image and the label map lie on one voxel grid.

    TorchIO and MONAI happily carry a label map whose affine differs from its image's (after a
    resampling applied to one of them, or a label saved with another header); inserting a lesion
    into both arrays voxel by voxel would then misplace the label. The affines are compared where
    they differ most, at the grid's corners, so the message gives a distance in mm.
    """
    image_shape, label_shape = tuple(int(n) for n in image_shape), tuple(int(n) for n in label_shape)
    if image_shape != label_shape:
        raise ValueError(
            f"image {image_name!r} and label map {label_name!r} are not in one space: spatial shapes "
            f"{image_shape} and {label_shape} differ; resample the label map onto the image first "
            f"(e.g. tio.Resample({image_name!r}))")
    distance_mm = affine_disagreement_mm(image_shape, image_affine, label_affine)
    if not distance_mm <= tolerance_mm:  # also catches NaN
        raise ValueError(
            f"image {image_name!r} and label map {label_name!r} are not in one space: their affines "
            f"place the same voxel up to {distance_mm:.4g} mm apart (tolerance {tolerance_mm:g} mm); "
            f"a lesion inserted into both would be misaligned. Resample the label map onto the image "
            f"(e.g. tio.Resample({image_name!r})) or fix its header")


# A label map whose largest value is this, with no liver or tumour voxel, is a mask saved as an
# 8-bit image (0/255), not a crop beside the liver.
_EIGHT_BIT_ON = 255


def refuse_eight_bit_mask(labels: np.ndarray, *, liver_label: int, tumor_label: int,
                       label_name: str = "label") -> None:
    """Refuse a label map with neither liver nor tumour voxels whose largest value is 255.

    Such a map is a binary (or 3-level) mask saved as an 8-bit image, on which the transforms
    would silently insert nothing. Maps with other values and no liver (a crop beside the liver
    of a multi-organ segmentation, say) stay allowed: there is nothing to insert into.
    """
    if liver_label == _EIGHT_BIT_ON or tumor_label == _EIGHT_BIT_ON or labels.size == 0:
        return
    if labels.max() != _EIGHT_BIT_ON or (labels == tumor_label).any():
        return
    found = np.unique(labels)
    shown = ", ".join(f"{v:g}" for v in found[:8].tolist()) + (", ..." if found.size > 8 else "")
    raise ValueError(
        f"label map {label_name!r} has no liver (label {liver_label}) or tumour (label {tumor_label}) "
        f"voxel: found label values {shown}; expected 0 background, {liver_label} liver, "
        f"{tumor_label} tumour (or a binary liver mask 0/{liver_label}), as set by liver_label and "
        f"tumor_label. A mask saved as 0/255 needs converting (e.g. label // 255) or liver_label=255")


def insert_lesions(volume: np.ndarray, labels: np.ndarray, spacing, *, seed: int, size, count,
                   phenotype, liver_label: int, tumor_label: int, on_failure: str,
                   synthesis_options: dict,
                   label_name: str = "label") -> tuple[np.ndarray, np.ndarray] | None:
    """Insert lesions into one 3-D CT volume and its label map.

    ``labels`` may hold any label values (a multi-organ segmentation, say): voxels equal to
    ``liver_label`` are the liver lesions go into, voxels equal to ``tumor_label`` are existing
    tumours that are kept and avoided, and every other value is left alone. New tumour voxels get
    ``tumor_label``. A map without liver whose largest value is 255 (a mask saved as 0/255) is
    refused with a ValueError naming ``label_name`` (:func:`refuse_eight_bit_mask`).

    Returns new arrays of the inputs' dtypes, or ``None`` when nothing was inserted: the label map
    has no liver (a crop beside the liver, say), or the lesions found no room and ``on_failure`` is
    not ``"raise"``.
    """
    liver = labels == liver_label
    if not liver.any():
        refuse_eight_bit_mask(labels, liver_label=liver_label, tumor_label=tumor_label, label_name=label_name)
        return None
    # synth reads 0 background / 1 liver / 2 tumour; other organs count as background.
    host_mask = liver.astype(np.uint8)
    host_mask[labels == tumor_label] = 2
    # TorchIO runs transforms under np.errstate(all="raise"); the synthesiser is written for
    # numpy's default error handling, so give it that back.
    with np.errstate(divide="warn", over="warn", invalid="warn", under="ignore"):
        try:
            result = synth.prepare_host(volume, host_mask, spacing=spacing).insert(
                size=size, count=count, phenotype=phenotype, seed=seed, **synthesis_options)
        except synth.LesionPlacementError as error:
            if on_failure == "raise":
                raise
            if on_failure == "warn":
                warnings.warn(f"tumour insertion skipped (seed {seed}): {error}", RuntimeWarning,
                              stacklevel=2)
            return None
    new_tumor = (result.label == Label.TUMOR) & (host_mask != Label.TUMOR)
    out_labels = labels.copy()
    out_labels[new_tumor] = tumor_label
    return result.volume, out_labels

