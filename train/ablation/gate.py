"""The quality gate of a ``+gate`` arm, one per fold, trained on that fold's training part only.

The gate of ``tumorsynth realism --save-gate`` is trained on the tune part of every labelled case,
which includes the lesions of a fold's test slab: an ablation that used it would let its test
lesions decide which synthetic lesions are learnt from. So each fold gets its own gate
(:func:`synth.realism.gate.train_gate`), trained on

* the real lesions of the fold's training cases (the training slabs of a k-fold split, the
  training cases of a case split), cut as the realism report cuts them, without those touching a
  slab's border (:func:`synth.realism.compare.extract_real_lesions`), and
* heuristic lesions of the same diameters (+-10 %) inserted into the same training livers.

It is written once under the run folder (``gates/fold-<k>/gate.json``) and reused on resume. The
file names the cases it was trained on and the world position (mm) of every real lesion it saw,
so that anyone can check that no test lesion is among them; a gate found there that names cases
outside the fold's training part is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .config import DEFAULT_GATE_SETTINGS
from .data import AblationData, fold_folder_name, refuse_other_split

__all__ = ["DEFAULT_GATE_SETTINGS", "GATES_FOLDER", "fold_gate", "fold_gate_path", "gate_summary", "train_fold_gate"]

GATES_FOLDER = "gates"
GATE_FILE = "gate.json"


def fold_gate_path(out_dir, data: AblationData) -> Path:
    """``<out_dir>/gates/fold-<k>/gate.json`` (``gates/split/gate.json`` for a single split)."""
    return Path(out_dir) / GATES_FOLDER / fold_folder_name(data) / GATE_FILE


def fold_gate(out_dir, data: AblationData, settings: dict | None = None, *, seed: int = 0) -> Path:
    """The gate file of ``data``'s fold, trained from ``data.train`` alone the first time
    (atomically); a later call, or a resumed ablation, loads and checks the one already there.

    Parameters
    ----------
    settings : dict, optional
        The configuration's ``"gate"`` section (:data:`DEFAULT_GATE_SETTINGS` where absent).
    seed : int
        Seed of the synthetic lesions the gate is trained against (the same for every arm and
        training seed: one gate per fold).
    """
    from synth.realism.gate import QualityGate

    path = fold_gate_path(out_dir, data)
    if not path.is_file():
        try:
            gate = train_fold_gate(data.train, **{**DEFAULT_GATE_SETTINGS, **(settings or {})}, seed=seed)
        except ValueError as exc:
            where = "the split" if data.fold is None else f"fold {data.fold}"
            raise ValueError(f"the quality gate of {where} cannot be trained on its training part: {exc}") from None
        gate.save(path)
    gate = QualityGate.load(path)
    refuse_other_split(f"quality gate {path} was trained on", gate.info.get("cases", []), data,
                       "remove it to train it again")
    return path


def gate_summary(path, out_dir=None) -> dict:
    """What ``results.json`` says of a fold's gate: its file (relative to ``out_dir`` when given,
    so that a report names no folder of the machine that made it), threshold and training counts
    and pass rates (out of fold), without the lesion list."""
    from synth.realism.gate import QualityGate

    gate = QualityGate.load(path)
    info = {key: value for key, value in gate.info.items() if key != "real_lesions"}
    shown = Path(path).relative_to(out_dir) if out_dir is not None else Path(path)
    return {"path": shown.as_posix(), "threshold": gate.threshold, **info}


def train_fold_gate(cases, *, per_real: int = 2, classifier: str = "logistic", real_pass: float = 0.9,
                    max_real_per_case: int | None = None, seed: int = 0):
    """A :class:`~synth.realism.gate.QualityGate` trained on the real lesions of ``cases`` against
    heuristic lesions of matched diameter inserted into the same livers.

    Parameters
    ----------
    cases : sequence of :class:`synth.cases.Case`
        The training part (HU, labels 0/1/2, spacing in mm, affine to world mm).
    per_real : int
        Synthetic lesions per real lesion.
    classifier, real_pass
        As in :func:`~synth.realism.gate.train_gate`.
    max_real_per_case : int, optional
        At most this many real lesions per case, spread evenly over their sorted diameters.
    seed : int
        Seed of the insertions (each case's own stream derives from it and the case id).

    The gate's ``info`` adds ``cases`` (the case ids) and ``real_lesions`` (case, centre in world
    mm and diameter in mm of every real lesion used) to :func:`train_gate`'s.
    """
    from synth.realism.compare import extract_real_lesions, feature_table, matched_sizes, synthesize_lesions
    from synth.realism.gate import train_gate
    from synth.realism.report import CLASSIFIER_FEATURES
    from synth.seeding import rng_for

    real, synthetic, failed = [], [], 0
    for case in cases:
        found = extract_real_lesions(case.image, case.label, case.spacing, case=case.case_id)
        if max_real_per_case is not None and len(found) > max_real_per_case:
            order = np.argsort([s.diameter_mm for s in found])
            keep = order[np.linspace(0, len(found) - 1, max_real_per_case).round().astype(int)]
            found = [found[i] for i in sorted(set(keep.tolist()))]
        if not found:  # a healthy case: nothing to match
            continue
        made, failures = synthesize_lesions(case.image, case.label, case.spacing,
                                            matched_sizes(found, per_real=per_real, match="diameter"),
                                            case=case.case_id, seed=rng_for(seed, "ablation gate", case.case_id))
        real += found
        synthetic += made
        failed += failures
    gate = train_gate(feature_table(real + synthetic), CLASSIFIER_FEATURES, classifier=classifier,
                      real_pass=real_pass)
    by_id = {case.case_id: case for case in cases}
    lesions = [{"case": s.case, "center_world_mm": _world_mm(by_id[s.case], s.center_mm),
                "diameter_mm": round(float(s.diameter_mm), 3)} for s in real]
    info = {**gate.info, "trained_on": "the fold's training part", "cases": sorted(by_id),
            "threshold_rule": f"{real_pass:.0%} of the real training lesions pass out of fold",
            "synthetic_failures": failed, "real_lesions": lesions}
    return dataclasses.replace(gate, info=info)


def _world_mm(case, center_mm) -> list[float]:
    """World position (mm) of a point given in mm from the case's first voxel centre."""
    voxel = np.asarray(center_mm, dtype=np.float64) / np.asarray(case.spacing, dtype=np.float64)
    point = np.asarray(case.affine, dtype=np.float64) @ np.append(voxel, 1.0)
    return [round(float(v), 3) for v in point[:3]]
