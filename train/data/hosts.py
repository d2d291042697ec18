"""Healthy hosts for synthetic tumours: tumour-free real cases, or the procedural phantom."""

from __future__ import annotations

import numpy as np

from synth.cases import Case
from synth.labels import Label
from synth.validation import check_spacing

from .preprocess import Preprocessing, crop_to_liver

__all__ = ["healthy_hosts", "phantom_hosts"]

# The margin preprocess_case keeps around the liver by default, in mm (10).
_PHANTOM_MARGIN_MM = Preprocessing.crop_margin_mm


def healthy_hosts(cases) -> list[Case]:
    """The cases with a liver (label 1) and no tumour voxel (label 2), in their given order."""
    return [case for case in cases if not case.has_tumor and bool((case.label == Label.LIVER).any())]


def phantom_hosts(count: int, *, spacing=(1.5, 1.5, 2.0), shape_mm=(300, 240, 160), seed: int = 0,
                  lesions: int = 0) -> list[Case]:
    """``count`` procedural phantom cases (``synth.phantom.make_phantom``) prepared like real ones.

    Each phantom is drawn at ``spacing`` mm with ``round(shape_mm / spacing)`` voxels, then cropped
    to the liver plus 10 mm as ``preprocess_case`` does, image float32 HU. Phantom ``i`` gets its own
    seed from ``numpy.random.SeedSequence(seed)``, so the list is the same in any process and the
    phantoms differ from one another. With ``lesions > 0`` each holds that many (phantom) tumours,
    an offline stand-in for real tumour cases. Ids ``"phantom-<i>"``, source ``"phantom"``.
    """
    from synth.phantom import make_phantom

    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    spacing = check_spacing(spacing)
    shape_mm = check_spacing(shape_mm, name="shape_mm")
    shape = tuple(max(1, int(round(f / s))) for f, s in zip(shape_mm, spacing))
    seeds: np.ndarray | list[int] = np.random.SeedSequence(int(seed)).generate_state(int(count)) if count else []
    margin_mm = _PHANTOM_MARGIN_MM
    assert margin_mm is not None, "Preprocessing's default crop margin is a number of mm, not None"
    hosts = []
    for i, phantom_seed in enumerate(seeds):
        phantom = make_phantom(shape, spacing, lesions=int(lesions), seed=int(phantom_seed))
        image, label, affine, _ = crop_to_liver(phantom.volume.astype(np.float32), phantom.label,
                                                np.array(phantom.affine, dtype=np.float64), margin_mm)
        notes: tuple[str, ...] = ("procedural phantom (synth.phantom), not a real scan",)
        if lesions:
            notes += (f"{int(lesions)} phantom tumours asked for (a lesion without room is skipped)",)
        hosts.append(Case(case_id=f"phantom-{i}", image=np.ascontiguousarray(image),
                          label=np.ascontiguousarray(label), spacing=spacing, affine=affine,
                          source="phantom", notes=notes))
    return hosts
