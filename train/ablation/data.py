"""The ablation's data: training, validation and test cases, and the hosts for synthetic tumours.

Sources (``data.source`` of the configuration):

* ``lits117-kfold``: LiTS case 117 (as below), cut into ``folds`` axial slabs
  (:func:`train.data.axial_folds`): fold k tests slab k and trains on the slabs around it, with a gap,
  so that every real tumour of the case is a test lesion once. One :class:`AblationData` per fold.
* ``lits117-axial``: LiTS case 117 (fetched with :func:`train.data.fetch_lits117`, or read from
  ``data.path``), preprocessed, then cut along the axial axis (:func:`train.data.split_axial`): the
  lower part trains, the upper part is the test set, with a gap between them, so the test tumours
  are real tumours that no arm trained on. Offline (FetchError), a phantom case with phantom
  tumours stands in, split the same way, and the report says so.
* ``folder``: every case of a LiTS, MSD Task03 or manifest folder (:func:`train.data.load_cases`),
  split by case (:func:`train.data.split_cases`) into train / val / test.

Hosts: phantom livers (tumour-free), the tumour-free training cases ("healthy cases") and the
training cases themselves ("training part"; the synthesiser keeps away from their tumours).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError

PHANTOM_HOST_SEED = 0  # phantom hosts are the same livers in every arm and seed
FALLBACK_SEED = 117  # the offline stand-in for LiTS-117; differs from the host phantoms
FALLBACK_LESIONS = 12  # phantom tumours asked for in the stand-in case


@dataclass
class AblationData:
    """Everything the runs need; the same objects serve every arm and seed."""

    train: list
    val: list
    test: list
    heuristic_hosts: list  # livers that receive synthetic tumours next to real training data
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    fallback: bool = False
    fold: int | None = None  # the fold of a k-fold source; None for a single split

    def describe(self) -> dict:
        """JSON-ready description for the report."""
        def ids(cases):
            return [c.case_id for c in cases]

        return {
            "fold": self.fold,
            "summary": self.summary,
            "notes": list(self.notes),
            "fallback_to_phantom": self.fallback,
            "train": ids(self.train), "val": ids(self.val), "test": ids(self.test),
            "heuristic_hosts": ids(self.heuristic_hosts),
            "test_shapes": {c.case_id: list(c.image.shape) for c in self.test},
            "spacing_mm": {c.case_id: list(c.spacing) for c in self.test},
        }


def fold_folder_name(data: AblationData) -> str:
    """``fold-<k>``, or ``split`` for a single split: the folder of what a fold builds for itself
    (its lesion bank, its quality gate)."""
    return "split" if data.fold is None else f"fold-{data.fold}"


def refuse_other_split(what: str, cases, data: AblationData, advice: str) -> None:
    """Raise ValueError unless ``cases`` (the case ids a bank or gate was built from) are some of
    ``data``'s training cases: a file left by another split may hold this fold's test lesions.
    ``what`` starts the message ("lesion bank PATH was built on")."""
    used, allowed = set(cases), {case.case_id for case in data.train}
    if not used or not used <= allowed:
        raise ValueError(f"{what} {sorted(used)}, not on this fold's training cases {sorted(allowed)}; {advice}")


def _settings(cfg: dict):
    from train.data import Preprocessing

    # Preprocessing turns the JSON list of target_spacing into a tuple itself.
    return Preprocessing(**cfg["data"].get("preprocessing", {}))


def _lits117_case(cfg: dict, settings, *, progress: bool, say):
    """LiTS-117 preprocessed, or (offline) the phantom stand-in; returns (case, fallback, notes)."""
    from train.data import FetchError, fetch_lits117, load_cases, phantom_hosts

    path = cfg["data"].get("path")
    try:
        folder = path if path else fetch_lits117(progress=progress)
        cases = load_cases(folder, settings, progress=progress)
    except FetchError as exc:
        say(
            "LiTS-117 could not be fetched, so this ablation runs on a PHANTOM case with phantom "
            f"tumours instead of real CT ({exc}). The numbers then only show that the pipeline "
            "works. To use the real case, run `tumorsynth data fetch lits117` when online, or "
            "pass --data FOLDER holding volume-117.nii.gz and segmentation-117.nii.gz."
        )
        spacing = settings.target_spacing or (2.0, 2.0, 2.0)
        case = phantom_hosts(1, spacing=spacing, shape_mm=cfg["hosts"]["phantom shape mm"],
                             seed=FALLBACK_SEED, lesions=FALLBACK_LESIONS)[0]
        case = dataclasses.replace(case, case_id="phantom-tumours")
        return case, True, ["offline: a phantom case with phantom tumours replaced LiTS-117"]
    if len(cases) != 1:
        raise ValueError(f"data.source 'lits117-axial' expects one case in {folder}; found {len(cases)}")
    return cases[0], False, []


def _check_fold(fold: AblationData) -> None:
    """A fold must have liver and tumour in its test part and training data, or it measures nothing."""
    from synth.labels import Label

    where = f"fold {fold.fold}" if fold.fold is not None else "the split"
    for case in fold.test:
        if not (case.label >= Label.LIVER).any():
            raise ConfigError(f"{where}: test part {case.case_id} holds no liver; use fewer folds")
    if not any(c.has_tumor for c in fold.test):
        raise ConfigError(f"{where}: the test part holds no tumour, so lesion-wise results would be empty; "
                          f"use fewer folds or another case")
    if not any(c.has_tumor for c in fold.train):
        raise ConfigError(f"{where}: the training part holds no tumour for the 'real' arm; use fewer folds")


def prepare_data(cfg: dict, *, progress: bool = True, say=print) -> list[AblationData]:
    """Load, preprocess and split the data of a validated configuration; build the hosts.

    Returns one :class:`AblationData` per fold (one in all for a single split). The data folder is
    ``data.path`` (``run_ablation(data_path=...)`` sets it, so that the report's configuration
    names the folder that was used).

    Raises:
        ConfigError: a fold without liver or tumour in its test part, or without tumour to train on.
    """
    from train.data import axial_folds, healthy_hosts, load_cases, phantom_hosts, split_axial, split_cases

    settings = _settings(cfg)
    source, split = cfg["data"]["source"], cfg["data"].get("split", {})
    notes: list[str] = []
    fallback = False
    hosts_cfg = cfg["hosts"]
    if source == "lits117-kfold":
        case, fallback, notes = _lits117_case(cfg, settings, progress=progress, say=say)
        what = "phantom stand-in" if fallback else "LiTS-117"
        origin = Path(case.source).name if case.source else case.case_id
        phantoms = phantom_hosts(hosts_cfg["phantoms"], spacing=settings.target_spacing or case.spacing,
                                 shape_mm=hosts_cfg["phantom shape mm"], seed=PHANTOM_HOST_SEED)
        try:
            cut = axial_folds(case, folds=int(split["folds"]), gap_mm=float(split.get("gap_mm", 5.0)))
        except ValueError as exc:
            raise ConfigError(f"data.split: {exc}") from None
        result = []
        for fold in cut:
            train = list(fold.train)
            summary = (f"{what} ({origin}), fold {fold.index} of {split['folds']}: test slab "
                       f"{fold.test.image.shape} voxels, training slabs "
                       f"{', '.join(str(t.image.shape) for t in train)} at "
                       f"{tuple(round(s, 2) for s in case.spacing)} mm.")
            own = train if hosts_cfg["training part"] else []
            data = AblationData(train=train, val=[], test=[fold.test], heuristic_hosts=_unique(phantoms + own),
                                summary=summary,
                                notes=notes + list(fold.notes), fallback=fallback, fold=fold.index)
            _check_fold(data)
            result.append(data)
        return result
    if source == "lits117-axial":
        case, fallback, notes = _lits117_case(cfg, settings, progress=progress, say=say)
        train_part, test_part = split_axial(case, **split)
        train, val, test = [train_part], [], [test_part]
        notes += list(dict.fromkeys(test_part.notes))
        what = "phantom stand-in" if fallback else "LiTS-117"
        origin = Path(case.source).name if case.source else case.case_id  # no local folder names
        summary = (f"{what} ({origin}) cut along the axial axis: training part "
                   f"{train_part.image.shape} voxels, held-out test part {test_part.image.shape} "
                   f"voxels at {tuple(round(s, 2) for s in case.spacing)} mm.")
    else:
        path = cfg["data"]["path"]
        cases = load_cases(path, settings, progress=progress)
        if len(cases) < 2:
            raise ValueError(f"data.path {path}: {len(cases)} case(s) found; a case split needs at least 2")
        by_id = {c.case_id: c for c in cases}
        parts = split_cases(list(by_id), **split)
        train = [by_id[i] for i in parts.train]
        val = [by_id[i] for i in parts.val]
        test = [by_id[i] for i in parts.test]
        if not test:
            raise ValueError(f"the split {split} leaves no test case out of {len(cases)}")
        summary = (f"{len(cases)} cases from {Path(path).name}: {len(train)} train, {len(val)} validation, "
                   f"{len(test)} test (split by case, seed {split.get('seed', 0)}).")
    if not any(c.has_tumor for c in test):
        raise ValueError("the test cases hold no tumour: lesion-wise results would be empty")

    spacing = settings.target_spacing or train[0].spacing
    phantoms = phantom_hosts(hosts_cfg["phantoms"], spacing=spacing,
                             shape_mm=hosts_cfg["phantom shape mm"], seed=PHANTOM_HOST_SEED)
    healthy = healthy_hosts(train) if hosts_cfg["healthy cases"] else []
    own = list(train) if hosts_cfg["training part"] else []
    return [AblationData(train=list(train), val=list(val), test=list(test),
                         heuristic_hosts=_unique(phantoms + healthy + own),
                         summary=summary, notes=notes, fallback=fallback)]


def _unique(hosts: list) -> list:
    """The hosts in order, each case id once."""
    seen: set[str] = set()
    unique = []
    for host in hosts:
        if host.case_id not in seen:
            seen.add(host.case_id)
            unique.append(host)
    return unique
