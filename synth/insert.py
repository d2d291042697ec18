"""The heuristic insertion: compose size, shape, location, texture, mass effect and blending.

``insert_tumor`` is the public one-liner; ``synthesize`` is the same with the full result
(:class:`~synth.records.InsertionResult`), and :func:`~synth.host.prepare_host` lets many
insertions share one prepared scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .defaults import EDGE_MM, MAX_ATTEMPTS, PHASE, SUBCAPSULAR_PROBABILITY
from .errors import LesionPlacementError
from .heuristic.blend import soft_edge, to_dtype
from .heuristic.cluster import CLUSTER_FROM_MM, CLUSTER_PROBABILITY, sample_body
from .heuristic.location import PlacementRules, sample_location
from .heuristic.mass_effect import MASS_EFFECT_FROM_MM, displacement_box, push_outward
from .heuristic.paint import heuristic_change
from .heuristic.partial_volume import edge_weight, lesion_change, lesion_stencil, sub_slice_count
from .heuristic.phase import check_phase, resolve_phase
from .heuristic.shape import sample_shape
from .heuristic.size import SizeSpec, parse_size, sample_diameter, size_class, voxel_count_for
from .heuristic.texture import parse_phenotype, sample_appearance, sample_phenotype
from .host import HostScan, prepare_host
from .labels import Label
from .records import InsertionResult, Lesion
from .types import (
    TypeBank,
    TypeCount,
    TypeMethod,
    TypeModel,
    TypeOut,
    TypePhase,
    TypePhenotype,
    TypeRange,
    TypeSampler,
    TypeSize,
    TypeSpacing,
    TypeVolume,
)
from .validation import check_count, check_seed

if TYPE_CHECKING:  # the realism code is imported only when a quality gate is used
    from .realism.gate import QualityGate

# Each round draws a new size and shape and relaxes the rules: more vessel overlap allowed, then a
# thinner layer of liver towards the capsule, so crowded livers still take lesions.
_VESSEL_TOLERANCE = (0.02, 0.10, 0.25)
_CAPSULE_MARGIN_SCALE = (1.0, 0.5, 0.0)
# Multinodular bodies take more room: the last round draws single bodies only, so a crowded liver
# that has no room for a cluster still takes a lesion about as often as before clusters existed.
_CLUSTER_SCALE = (1.0, 1.0, 0.0)
# The clear zone kept free of other tumours is the edge width plus 1 mm, counting at most this
# much edge: a wide soft edge changes only tumour-free liver anyway, and large lesions' 4-5 mm
# edges would otherwise keep them out of crowded livers.
_PLACEMENT_EDGE_MAX_MM = 3.0
_PLACEMENT_ROUNDS = len(_VESSEL_TOLERANCE)


def insert_tumor(
    volume: TypeVolume,
    mask: TypeVolume,
    *,
    spacing: TypeSpacing | None = None,
    size: TypeSize = "mix",
    count: TypeCount = (1, 3),
    phenotype: TypePhenotype = "mix",
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    edge_mm: TypeRange | None = EDGE_MM,
    phase: TypePhase = PHASE,
    subcapsular_probability: float = SUBCAPSULAR_PROBABILITY,
    mass_effect: bool = True,
    partial_volume: bool | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    method: TypeMethod = "heuristic",
    model: TypeModel = None,
    sampling_steps: int | None = None,
    sampler: TypeSampler | None = None,
    bank: TypeBank = None,
    out: TypeOut | None = None,
    quality_filter: QualityGate | str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Insert synthetic tumours into the liver of a CT scan.

    Parameters
    ----------
    volume : (X, Y, Z) array or nibabel image
        CT in Hounsfield units. Never modified.
    mask : (X, Y, Z) array or nibabel image
        0 background, 1 liver, 2 tumour (existing tumours are kept and avoided), or a binary
        liver mask.
    spacing : three floats in mm, optional
        Voxel size along X, Y, Z. Defaults to the image's zooms for a nibabel image, else 1 mm.
    size : str or (float, float)
        ``"tiny"`` (3-5 mm), ``"small"`` (5-10), ``"medium"`` (10-20), ``"large"`` (20-50 mm
        equivalent diameter), a ``(min_mm, max_mm)`` range, or ``"mix"`` (real lesion statistics,
        median about 13 mm).
    count : int or (int, int)
        Number of lesions, or an inclusive range to draw it from.
    phenotype : str or dict
        ``"hypodense"``, ``"isodense"``, ``"hyperdense"``, ``"rim-enhancing"``, ``"necrotic"``,
        ``"mix"`` (realistic: 92.5 % hypodense, 1.5 % iso- or hyperdense), ``"diverse"`` (a
        deliberately varied mix) or a ``{name: weight}`` dict.
    phase : ``"auto"``, ``"portal-venous"``, ``"arterial"`` or ``"unenhanced"``
        The host's contrast phase, which sets the lesions' contrast; ``"auto"`` estimates it from
        the liver's median HU (below 80 HU unenhanced, else portal-venous).
    seed : int, optional / rng : numpy.random.Generator, optional
        Source of randomness (give at most one). The same seed gives the same output.
    method : ``"heuristic"``, ``"diffusion"`` or ``"copy-paste"``
        Who draws the lesion's appearance: the numpy texture model, a trained diffusion
        model that inpaints the lesion (``model`` required; see ``docs/diffusion.md``), or a real
        lesion from a bank, turned, scaled to the drawn size and pasted with its contrast to the
        liver kept (``bank`` required; its mask is also the lesion's shape; see
        ``docs/copy_paste.md``). Size, location, edge and label rules are the same for all.
    model : path or synth.diffusion.DiffusionModel, optional
        The diffusion model folder (``config.json`` + ``weights.safetensors``) or a loaded model.
    bank : path or synth.copy_paste.LesionBank, optional
        The lesion bank folder (``tumorsynth bank build``) or a loaded bank.
    edge_mm, subcapsular_probability, mass_effect, partial_volume, max_attempts, sampling_steps, sampler, out,
    quality_filter
        See :func:`synthesize`. ``out=(volume, mask)`` inserts in place (arrays only; the mask
        must then be a C-ordered uint8 label map).

    Returns
    -------
    (volume, label)
        A new volume of the input dtype and a new uint8 label map with the lesions as 2 (the
        ``out`` arrays when given). When nibabel images were given, nibabel images with the input
        affines are returned.

    Examples
    --------
    >>> from synth import insert_tumor
    >>> from synth.phantom import make_phantom
    >>> case = make_phantom()
    >>> ct, label = insert_tumor(case.volume, case.label, spacing=case.spacing, size="small", seed=0)
    """
    images = _as_arrays(volume, mask)
    if images is not None:
        if out is not None:
            raise TypeError("out= takes numpy arrays; give volume and mask as arrays, not nibabel images")
        volume, mask, image, header_spacing = images
        spacing = header_spacing if spacing is None else spacing
    result = prepare_host(volume, mask, spacing=(1.0, 1.0, 1.0) if spacing is None else spacing).insert(
        size=size, count=count, phenotype=phenotype, seed=seed, rng=rng, edge_mm=edge_mm, phase=phase,
        subcapsular_probability=subcapsular_probability, mass_effect=mass_effect, partial_volume=partial_volume,
        max_attempts=max_attempts, method=method, model=model, sampling_steps=sampling_steps, sampler=sampler,
        bank=bank, out=out, quality_filter=quality_filter)
    if images is None:
        return result.volume, result.label
    return _like(image, result.volume), _like(image, result.label)


def synthesize(
    host: HostScan,
    *,
    size: TypeSize = "mix",
    count: TypeCount = (1, 3),
    phenotype: TypePhenotype = "mix",
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    edge_mm: TypeRange | None = EDGE_MM,
    phase: TypePhase = PHASE,
    subcapsular_probability: float = SUBCAPSULAR_PROBABILITY,
    mass_effect: bool = True,
    partial_volume: bool | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    method: TypeMethod = "heuristic",
    model: TypeModel = None,
    sampling_steps: int | None = None,
    sampler: TypeSampler | None = None,
    bank: TypeBank = None,
    out: TypeOut | None = None,
    quality_filter: QualityGate | str | os.PathLike[str] | None = None,
) -> InsertionResult:
    """Insert lesions into a prepared scan and return the new arrays with lesion records.

    Parameters beyond :func:`insert_tumor`'s
    ----------------------------------------
    edge_mm : (float, float), optional
        Range of the soft edge's 10-90 % width in mm; by default (None) it grows with the lesion's
        size (:data:`synth.defaults.EDGE_MM_BY_SIZE`: 2.1-3.1 mm under 10 mm, 2.5-3.5 mm to 20 mm,
        4.25-5.25 mm beyond), as real tumours' margins soften with size.
    phase : str
        As in :func:`insert_tumor`.
    subcapsular_probability : float
        Chance that a lesion may touch the liver capsule; the others keep about half their radius
        (1.5-5 mm) of liver between their surface and the capsule.
    mass_effect : bool
        Push surrounding parenchyma outward around lesions of 20 mm and more.
    partial_volume : bool, optional
        Draw lesions on sub-slices (at most 1 mm thick) and average each slice over its profile, so
        that a lesion grazing a thick slice shows there faintly, as on a real scanner; the label is
        the lesion's voxel count of most occupied voxels, so it keeps the lesion's volume. None
        (default) does so when the slices are at least twice the in-plane pixel and at least 2.5 mm
        thick (``synth.heuristic.partial_volume``); thinner or near-isotropic scans are drawn
        directly, as before.
    max_attempts : int
        Candidate centres tried per lesion before :class:`LesionPlacementError` is raised.
    method, model, bank
        As in :func:`insert_tumor`.
    sampling_steps : int, optional / sampler : str, optional
        Diffusion only: sampler steps (default the model's, 10) and ``"ddim"`` or
        ``"dpm-solver"`` (default the model's, ``"ddim"``).
    out : (volume, label) arrays, optional
        Where to write the result instead of new arrays: the scan's shape, the volume's dtype and
        memory order, a C-ordered uint8 label map. The host's own arrays
        (``out=(host.volume, host.label)``) insert in place: nothing is copied, and
        :meth:`HostScan.restore` puts the scan back afterwards. Other arrays first receive a copy of
        the scan (no allocation). Checked before anything is written; when a lesion cannot be
        placed (or anything else fails), the lesions already written are undone.
    quality_filter : synth.realism.QualityGate or path, optional
        A quality gate (``tumorsynth realism --save-gate``; see ``docs/realism.md``). Each painted
        lesion is scored on its crop; below the gate's threshold it is undone and drawn again, at
        most ``gate.max_tries`` times (5), keeping the best-scoring draw when none passes. The
        records count the tries (``quality_tries``) and keep the score (``quality_score``).
    """
    rng = check_seed(seed, rng)
    size_spec = parse_size(size)
    low, high = check_count(count)
    phenotype_weights = parse_phenotype(phenotype)
    sub_slices = sub_slice_count(host.spacing, partial_volume)
    edge_range = None if edge_mm is None else _check_range(edge_mm, "edge_mm")
    drawn_phase = resolve_phase(check_phase(phase), host.stats.median_hu)
    if not 0.0 <= subcapsular_probability <= 1.0:
        raise ValueError(f"subcapsular_probability must be in [0, 1]; got {subcapsular_probability}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1; got {max_attempts}")
    painter = _painter(method, model, sampling_steps, sampler, bank, host)
    gate = None if quality_filter is None else _quality_gate(quality_filter)
    smallest_ml = np.pi * size_spec.smallest_mm**3 / 6.0 / 1000.0
    if low * smallest_ml > host.stats.volume_ml:
        raise LesionPlacementError(
            f"count {low} is impossible: {low} lesions of at least {size_spec.smallest_mm:g} mm "
            f"need {low * smallest_ml:.1f} mL, more than the {host.stats.volume_ml:.1f} mL of free liver")

    request = _Request(size_spec, phenotype_weights, edge_range, subcapsular_probability,
                       mass_effect, max_attempts, n_lesions=int(rng.integers(low, high + 1)),
                       painter=painter, sub_slices=sub_slices, phase=drawn_phase)
    volume, label = _output_arrays(host, out)
    lesions: list[Lesion] = []
    try:
        for index in range(1, request.n_lesions + 1):
            if gate is None:
                lesions.append(_insert_one(host, volume, label, index, request, rng))
            else:
                lesions.append(_insert_gated(host, volume, label, index, request, rng, gate))
    except BaseException:
        if out is not None:  # the caller's arrays: put the scan back, nothing half-inserted stays
            host.restore(InsertionResult(volume=volume, label=label, lesions=lesions, spacing=host.spacing))
        raise
    return InsertionResult(volume=volume, label=label, lesions=lesions, spacing=host.spacing)


@dataclass(frozen=True)
class _Request:
    """The validated settings of one call."""

    size: SizeSpec
    phenotype_weights: dict
    edge_mm: tuple[float, float] | None  # None: by size
    subcapsular_probability: float
    mass_effect: bool
    max_attempts: int
    n_lesions: int
    painter: object = None  # None: the heuristic texture; else a DiffusionPainter or CopyPastePainter
    sub_slices: int = 1  # per slice, to draw lesions on (synth.heuristic.partial_volume); 1: none
    phase: str = "portal-venous"  # resolved: never "auto"


def _painter(method, model, sampling_steps, sampler, bank, host):
    """The painter of ``method``: None for the heuristic, a diffusion or copy-paste painter."""
    diffusion_only = [name for name, value in (("model", model), ("sampling_steps", sampling_steps),
                                               ("sampler", sampler)) if value is not None]
    if method != "copy-paste" and bank is not None:
        raise ValueError("bank only applies to method='copy-paste'")
    if method in ("heuristic", "copy-paste") and diffusion_only:
        raise ValueError(f"{', '.join(diffusion_only)} only apply to method='diffusion'")
    if method == "heuristic":
        return None
    if method == "copy-paste":
        from .copy_paste.insertion import CopyPastePainter

        return CopyPastePainter(bank, liver_hu=host.stats.median_hu, noise_hu=host.stats.noise_hu)
    if method != "diffusion":
        raise ValueError(f"method must be 'heuristic', 'diffusion' or 'copy-paste'; got {method!r}")
    from .diffusion.insertion import DiffusionPainter  # torch is imported only here

    return DiffusionPainter(model, steps=sampling_steps, sampler=sampler)


def _stencil(painter, diameter, size_range, voxel_count, spacing, pad, rng, *, sub_slices=1,
             cluster_probability=CLUSTER_PROBABILITY):
    """The lesion's stencil: a painter's own (a donor's shape, drawn on the scan's own slices), else
    a heuristic body. On thick-slice scans, lesions under ``CLUSTER_FROM_MM`` (20 mm) are drawn on
    sub-slices (partial volume); larger ones, several slices thick and often multinodular, on the
    scan's grid."""
    if hasattr(painter, "stencil"):
        return painter.stencil(diameter, voxel_count, spacing, pad_mm=pad, rng=rng, size_range=size_range)
    if sub_slices > 1 and diameter < CLUSTER_FROM_MM:
        return lesion_stencil(sample_shape(diameter, rng), voxel_count, spacing, pad_mm=pad, sub_slices=sub_slices,
                              rng=rng)
    return sample_body(diameter, voxel_count, spacing, rng, pad_mm=pad, cluster_probability=cluster_probability)


def _quality_gate(quality_filter):
    """The gate object of ``quality_filter=`` (imported here: ``synth.insert`` stays light)."""
    from .realism.gate import as_gate

    return as_gate(quality_filter)


def _insert_gated(host: HostScan, volume, label, index: int, request: _Request, rng, gate) -> Lesion:
    """Insert lesion ``index`` and redraw it while the quality gate scores it below its threshold.

    Each draw's box is saved before painting and restored when the draw is rejected (not from the
    host's arrays: earlier lesions of this call may lie in the box). With no passing draw after
    ``gate.max_tries``, the best-scoring one is written back.
    """
    best = None
    for tries in range(1, gate.max_tries + 1):
        snapshot: list = []
        record = _insert_one(host, volume, label, index, request, rng, snapshot=snapshot)
        box, volume_before, label_before = snapshot[0]
        if any(b.start > lo or b.stop < hi for b, (lo, hi) in zip(box, record.bbox)):
            # _paint wrote outside the saved box: undoing would leave part of the lesion behind.
            raise RuntimeError(f"lesion {index} changed the box {record.bbox}, outside the saved {box}; the "
                               f"quality gate's snapshot in _insert_one must cover everything _paint writes")
        score = gate.score_inserted(volume, label, record, host.spacing)
        if gate.passes(score):
            return replace(record, quality_tries=tries, quality_score=score)
        if best is None or score > best[0]:
            best = (score, box, volume[box].copy(), label[box].copy(), record)
        volume[box], label[box] = volume_before, label_before
    assert best is not None  # max_tries >= 1: at least one draw was scored
    score, box, volume_after, label_after, record = best
    volume[box], label[box] = volume_after, label_after
    return replace(record, quality_tries=gate.max_tries, quality_score=score)


def _insert_one(host: HostScan, volume, label, index: int, request: _Request, rng, snapshot=None) -> Lesion:
    """Draw, place and paint lesion ``index``, writing into ``volume`` and ``label``; with a
    ``snapshot`` list, first append ``(box, volume[box], label[box])`` of every voxel it may change."""
    spacing = host.spacing
    voxel_volume = float(np.prod(spacing))
    subcapsular = bool(rng.random() < request.subcapsular_probability)
    for round_ in range(_PLACEMENT_ROUNDS):
        diameter, size_range = sample_diameter(request.size, rng)
        voxel_count = voxel_count_for(diameter, size_range, voxel_volume)
        phenotype = sample_phenotype(request.phenotype_weights, diameter, rng)
        appearance = sample_appearance(phenotype, diameter, host.stats.median_hu, host.stats.noise_hu, rng,
                                       edge_mm=request.edge_mm, phase=request.phase)
        rules = PlacementRules(
            capsule_margin_mm=0.0 if subcapsular else
            _CAPSULE_MARGIN_SCALE[round_] * float(np.clip(0.25 * diameter, 1.5, 5.0)),
            gap_mm=1.0,
            vessel_tolerance=_VESSEL_TOLERANCE[round_],
        )
        pad = max(rules.capsule_margin_mm, appearance.edge_mm + rules.gap_mm)
        stencil = _stencil(request.painter, diameter, size_range, voxel_count, spacing, pad, rng,
                           sub_slices=request.sub_slices,
                           cluster_probability=_CLUSTER_SCALE[round_] * CLUSTER_PROBABILITY)
        placed = sample_location(host, label, stencil, rules, min(appearance.edge_mm, _PLACEMENT_EDGE_MAX_MM), rng,
                                 attempts=max(1, request.max_attempts // _PLACEMENT_ROUNDS))
        if placed is not None:
            break
    else:
        raise LesionPlacementError(
            f"could not place lesion {index} of {request.n_lesions} ({size_class(stencil.diameter_mm)}, "
            f"{stencil.diameter_mm:.1f} mm) inside the liver after {request.max_attempts} attempts: the free "
            f"liver ({host.stats.volume_ml:.0f} mL) has no room for it away from the capsule, vessels "
            f"and other tumours; ask for a smaller size or fewer lesions")
    center, box, local = placed
    stencil = stencil.crop(local)
    if snapshot is not None:  # the stencil's box, and the mass effect's reach when it may apply
        reach = box
        if request.mass_effect and stencil.diameter_mm >= MASS_EFFECT_FROM_MM:
            reach = _union(box, displacement_box(center, stencil.diameter_mm / 2.0, spacing, volume.shape))
        snapshot.append((reach, volume[reach].copy(), label[reach].copy()))
    return _paint(host, volume, label, index, center, box, stencil, appearance,
                  subcapsular, request.mass_effect, rng, request.painter)


def _paint(host, volume, label, index, center, box, stencil, appearance, subcapsular, mass_effect, rng,
           painter=None) -> Lesion:
    """Change the image and label around an accepted centre and return the lesion's record."""
    spacing = host.spacing
    radius = stencil.diameter_mm / 2.0
    # Only voxels within one edge width of the surface change; work on their box alone.
    changed = stencil.crop(stencil.around_body(appearance.edge_mm, spacing))
    paint_box = tuple(slice(b.start + c.start, b.start + c.stop) for b, c in zip(box, changed.offset))
    changed_box = paint_box
    before = volume[paint_box][changed.inside].astype(np.float32)  # what this lesion replaces

    # Mass effect first, so that the lesion is drawn on the displaced parenchyma.
    pushed = bool(mass_effect and stencil.diameter_mm >= MASS_EFFECT_FROM_MM)
    if pushed:
        effect_box = displacement_box(center, radius, spacing, volume.shape)
        region = volume[effect_box].astype(np.float32)
        movable = label[effect_box] == Label.LIVER
        local_center = [c - s.start for c, s in zip(center, effect_box)]
        pushed_region = to_dtype(push_outward(region, movable, local_center, radius, spacing), volume.dtype)
        # Only liver voxels are written: the rest keeps its exact values (a float64 scan's too).
        np.copyto(volume[effect_box], pushed_region, where=movable)
        changed_box = _union(paint_box, effect_box)

    weight = (painter.edge_weight(changed.distance_mm, appearance.edge_mm) if hasattr(painter, "edge_weight")
              else edge_weight(changed, appearance.edge_mm))  # on thick slices, averaged over the slice profile
    weight *= label[paint_box] == Label.LIVER  # only tumour-free liver changes
    requested = float("nan")
    if painter is None:  # calibrated: the measured contrast is the requested one
        # On thick slices the calibration undoes the soft edge only, not the slice profile's
        # partial volume: a small lesion on a thick slice measures fainter, as a real one does.
        direct = None if changed.sub_slices is None else (
            soft_edge(changed.distance_mm, appearance.edge_mm) * (label[paint_box] == Label.LIVER))
        change, requested = heuristic_change(
            volume, label, paint_box, changed.inside, lesion_change(appearance, changed, spacing, rng), weight,
            appearance, spacing, rng, liver_hu=host.stats.median_hu, liver_spread_hu=host.stats.spread_hu,
            calibration_weight=direct)
    else:  # the model's target values, blended in with the same soft edge
        change = painter(volume, paint_box, center, changed, spacing, rng) - volume[paint_box].astype(np.float32)
    new_region = to_dtype(volume[paint_box].astype(np.float32) + weight * change, volume.dtype)
    np.copyto(volume[paint_box], new_region, where=weight > 0)
    label[paint_box][changed.inside] = 2

    mm_x, mm_y, mm_z = (float(c * s) for c, s in zip(center, spacing))
    box_x, box_y, box_z = ((int(s.start), int(s.stop)) for s in changed_box)
    return Lesion(
        index=index,
        center_voxel=center,
        center_mm=(mm_x, mm_y, mm_z),
        diameter_mm=stencil.diameter_mm,
        voxel_count=stencil.voxel_count,
        size_class=size_class(stencil.diameter_mm),
        phenotype=appearance.phenotype if painter is None else painter.phenotype,
        mean_hu_change=float((new_region[changed.inside].astype(np.float32) - before).mean()),
        edge_mm=appearance.edge_mm,
        subcapsular=subcapsular,
        contrast_hu=requested,
        mass_effect=pushed,
        bbox=(box_x, box_y, box_z),
        donor=getattr(stencil, "donor", None),
    )


def _output_arrays(host: HostScan, out) -> tuple[np.ndarray, np.ndarray]:
    """The arrays an insertion writes: new copies, the host's own (in place), or ``out`` filled
    with the scan. Every check runs before anything is written."""
    if out is None:
        return host.volume.copy(order="K"), host.label.copy()  # "K": keep the caller's memory layout
    try:
        volume, label = out
    except (TypeError, ValueError):
        raise TypeError(f"out must be a (volume, label) pair of arrays; got {type(out).__name__}") from None
    for name, array, like, dtype in (("volume", volume, host.volume, host.volume.dtype),
                                     ("label", label, host.label, np.dtype(np.uint8))):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"out {name} must be a numpy array; got {type(array).__name__}")
        if array.shape != like.shape:
            raise ValueError(f"out {name} has shape {array.shape}; the scan's is {like.shape}")
        if array.dtype != dtype:
            raise ValueError(f"out {name} has dtype {array.dtype}; it must be {dtype}, as the scan's "
                             f"{'volume' if name == 'volume' else 'label map (0/1/2)'}")
        order = "C" if like.flags.c_contiguous else "F" if like.flags.f_contiguous else None
        if order is not None and not (array.flags.c_contiguous if order == "C" else array.flags.f_contiguous):
            raise ValueError(f"out {name} must be {order}-contiguous like the scan's {name}; "
                             f"use np.empty_like(host.{name}) to make one")
        if not array.flags.writeable:
            raise ValueError(f"out {name} is read-only")
    if _same_array(volume, host.volume) and _same_array(label, host.label):
        return volume, label
    for name, array, source in (("volume", volume, host.volume), ("label", label, host.label)):
        if np.may_share_memory(array, source):
            raise ValueError(f"out {name} overlaps the scan's {name} without being it: pass the host's own "
                             f"arrays to insert in place, or separate buffers")
    np.copyto(volume, host.volume)
    np.copyto(label, host.label)
    return volume, label


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` are views of the same memory with the same layout."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def _union(a, b):
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _check_range(pair, name):
    try:
        low, high = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (min, max) pair of numbers; got {pair!r}") from None
    if not 0 < low <= high:
        raise ValueError(f"{name} must satisfy 0 < min <= max; got {pair!r}")
    return low, high


def _as_arrays(volume, mask):
    """Unpack nibabel images (both or neither) into arrays and the image's spacing."""
    is_image = [hasattr(x, "affine") and hasattr(x, "dataobj") for x in (volume, mask)]
    if not any(is_image):
        return None
    if not all(is_image):
        raise TypeError("give volume and mask both as arrays or both as nibabel images")
    if not np.allclose(volume.affine, mask.affine, atol=1e-3):
        raise ValueError("volume and mask images have inconsistent affines: they are not in one space")
    spacing = tuple(float(z) for z in volume.header.get_zooms()[:3])
    # Imported here: ``import synth`` stays free of nibabel, which the caller has loaded already.
    from .io import read_image_data  # a truncated file is a ValueError naming it

    return read_image_data(volume), read_image_data(mask), volume, spacing


def _like(image, array):
    """A nibabel image of ``array`` on ``image``'s grid, declaring ``array``'s own dtype."""
    out = type(image)(array, image.affine, image.header.copy())
    out.set_data_dtype(array.dtype)
    return out
