"""The ablation's configuration: a JSON document, validated with errors that name the problem.

Schema (every key is checked; an unknown key is an error, because a typo would otherwise
silently run the default)::

    {
      "name": "cpu-quick",                      # str, names the report
      "description": "...",                     # optional str, repeated in the report
      "data": {
        "source": "lits117-kfold" | "lits117-axial" | "folder",
        "path": "...",                          # folder: required (LiTS, MSD Task03 or manifest);
                                                # lits117-*: optional folder that already holds
                                                # volume-117.nii.gz and segmentation-117.nii.gz
        "preprocessing": {...},                 # train.data.Preprocessing fields (mm)
        "split": {...}                          # lits117-kfold: folds, gap_mm (every slab tested once)
                                                # lits117-axial: train_fraction, gap_mm
                                                # folder: val_fraction, test_fraction, seed
      },
      "hosts": {                                # livers that receive synthetic tumours
        "phantoms": 3,                          # procedural phantom livers (tumour-free)
        "phantom shape mm": [300, 240, 200],    # optional field of view of each phantom, mm
        "healthy cases": true,                  # tumour-free cases of the training split
        "training part": true                   # the training cases themselves (their healthy liver)
      },
      "arms": ["real", "real+heuristic", "synthetic-only"],   # "real" is required: the baseline
                                                # (also "real+diffusion", "real+copy-paste";
                                                # "+gate", "+torchio" suffixes)
      "seeds": [0, 1],
      "train": {...},                           # train.loop.TrainConfig fields, except seed and
                                                # synthetic_* (they come from "seeds" and "synthetic")
      "synthetic": {"probability": 0.5, "size": ..., "count": ...,    # TrainConfig synthetic_*
                    "centre": "lesion"},
      "diffusion": {"model": "path"},           # only with a "+diffusion" arm
      "gate": {"per_real": 2,                   # the per-fold quality gate of "+gate" arms
               "classifier": "logistic",        # (DEFAULT_GATE_SETTINGS)
               "real_pass": 0.9, "max_real_per_case": null},
      "bootstrap": 2000,                        # bootstrap resamples for the 95 % CIs
      "postprocess": {"largest_liver": true,    # train.postprocess.postprocess's options: the
                      "liver_opening_mm": 3,    # headline's predictions; the raw ones and those
                      "liver_margin_mm": 2,     # restricted to the true liver are reported
                      "min_tumor_mm3": 65,      # beside them
                      "min_contrast_hu": 10}
    }

Arms:

* ``real``: trained on the real training cases only (no synthetic tumours).
* ``real+heuristic``: the real training cases, plus heuristic synthetic tumours inserted on the
  fly into the hosts with ``synthetic.probability`` per patch.
* ``synthetic-only``: no real tumour is learnt from: every patch comes from a host (phantoms,
  healthy cases, the training part's real livers) with synthetic tumours, and the hosts' own
  real tumours are left out of the loss (``TrainConfig.host_tumors = "ignore"``).
* ``real+diffusion``: as ``real+heuristic``, with the lesions painted by the diffusion synthesiser
  whose model folder is ``"diffusion": {"model": PATH}`` (``tumorsynth diffusion train``).
* ``real+copy-paste``: as ``real+heuristic``, with real lesions pasted from a lesion bank
  (:mod:`synth.copy_paste`). Each fold's bank is built from that fold's training part only
  (:mod:`train.ablation.bank`), so no test lesion is ever pasted into a training patch.
* ``+gate`` suffix (``real+heuristic+gate``, ``synthetic-only+gate``): the same arm with every
  synthetic lesion scored by a quality gate (:mod:`synth.realism.gate`) and drawn again while it
  scores below the gate's threshold (``TrainConfig.synthetic_quality_gate``). Each fold's gate is
  trained on that fold's training part only: its real lesions against heuristic lesions inserted
  into its livers (:mod:`train.ablation.gate`, settings in ``"gate"``), never on a test lesion.
  Only the heuristic arms take it: the gate learns what heuristic lesions get wrong.
* ``+torchio`` suffix (any arm, after ``+gate``): every training patch also goes through the TorchIO spatial and
  intensity augmentation of :mod:`augment.pipelines` (``TrainConfig.augmentation = "torchio"``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from importlib import resources
from pathlib import Path

from train.postprocess import SETTINGS as POSTPROCESS_SETTINGS

BASE_ARMS = ("real", "real+heuristic", "synthetic-only", "real+diffusion", "real+copy-paste")
BASELINE_ARM = "real"
SOURCES = ("lits117-kfold", "lits117-axial", "folder")
PROFILES = ("cpu-quick", "gpu-sample", "gpu")

TOP_KEYS = {"name", "description", "data", "hosts", "arms", "seeds", "train", "synthetic",
            "diffusion", "gate", "bootstrap", "postprocess"}
# The arms that take the "+gate" suffix: the per-fold gate is trained on heuristic lesions.
GATED_ARMS = ("real+heuristic", "synthetic-only")
DATA_KEYS = {"source", "path", "preprocessing", "split"}
SPLIT_KEYS = {
    "lits117-kfold": {"folds", "gap_mm"},
    "lits117-axial": {"train_fraction", "gap_mm"},
    "folder": {"val_fraction", "test_fraction", "seed"},
}
HOST_KEYS = {"phantoms", "phantom shape mm", "healthy cases", "training part"}
SYNTHETIC_KEYS = {"probability", "size", "count", "centre"}
DIFFUSION_KEYS = {"model"}
# train.postprocess.postprocess's settings, with its defaults.
DEFAULT_POSTPROCESS = dict(POSTPROCESS_SETTINGS)
POSTPROCESS_KEYS = set(DEFAULT_POSTPROCESS)
# Fields of TrainConfig the ablation sets itself, so a config may not set them under "train".
RESERVED_TRAIN_KEYS = {"seed", "synthetic_probability", "synthetic_size", "synthetic_count", "synthetic_centre",
                       "synthetic_method", "synthetic_model", "synthetic_bank", "synthetic_quality_gate",
                       "augmentation", "host_tumors"}

DEFAULT_PHANTOM_SHAPE_MM = (300.0, 240.0, 200.0)
# The "gate" section: synthetic lesions per real one, the classifier, the share of real (training)
# lesions that pass out of fold, and an optional cap on the real lesions per training case (spread
# over their sizes), for quick runs.
DEFAULT_GATE_SETTINGS = {"per_real": 2, "classifier": "logistic", "real_pass": 0.9, "max_real_per_case": None}
GATE_KEYS = set(DEFAULT_GATE_SETTINGS)
DEFAULT_BOOTSTRAP = 2000

DIFFUSION_MESSAGE = (
    "arm {arm!r} needs a diffusion model: give its folder as \"diffusion\": {{\"model\": PATH}} "
    "(train one with 'tumorsynth diffusion train')"
)


class ConfigError(ValueError):
    """An ablation configuration that cannot run; the message names the key and the problem."""


def _unknown(section: str, given, allowed) -> None:
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise ConfigError(
            f"unknown key(s) {extra} in {section}; allowed: {sorted(allowed)}"
        )


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_arm(arm: str) -> tuple[str, bool]:
    """Split an arm name into (base arm, torchio flag); raises ConfigError for an unknown arm.
    A ``+gate`` suffix is checked here and read by :func:`arm_gated`."""
    return _split_arm(arm)[:2]


def arm_gated(arm: str) -> bool:
    """Whether the arm filters its synthetic lesions with its fold's quality gate (``+gate``)."""
    return _split_arm(arm)[2]


def _split_arm(arm: str) -> tuple[str, bool, bool]:
    """(base arm, torchio flag, gate flag) of ``<base>[+gate][+torchio]``."""
    if not isinstance(arm, str):
        raise ConfigError(f"arms must be strings; got {arm!r}")
    base, torchio, gated = arm, False, False
    if base.endswith("+torchio"):
        base, torchio = base[: -len("+torchio")], True
    if base.endswith("+gate"):
        base, gated = base[: -len("+gate")], True
    if base not in BASE_ARMS:
        raise ConfigError(
            f"unknown arm {arm!r}; known arms: {list(BASE_ARMS)}, each optionally with '+gate' (heuristic arms) "
            f"and then '+torchio'"
        )
    if gated and base not in GATED_ARMS:
        raise ConfigError(f"arm {arm!r}: '+gate' applies to the heuristic arms {list(GATED_ARMS)} only (each fold's "
                          f"gate is trained on heuristic lesions against that fold's real ones)")
    return base, torchio, gated


def _train_config_fields() -> set[str] | None:
    """TrainConfig's field names, or None when train.loop cannot be imported (checked later)."""
    try:
        from train.loop import TrainConfig
    except ImportError:
        return None
    return {f.name for f in dataclasses.fields(TrainConfig)}


def _preprocessing_fields() -> set[str] | None:
    try:
        from train.data import Preprocessing
    except ImportError:
        return None
    return {f.name for f in dataclasses.fields(Preprocessing)}


def validate_config(config: dict) -> dict:
    """Check an ablation configuration and return a normalised deep copy with defaults filled in.

    Raises:
        ConfigError (a ValueError) naming the first problem found: an unknown key, an unknown arm,
        a diffusion arm without a model, a missing baseline arm, a bad seed list, etc.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a JSON object; got {type(config).__name__}")
    cfg = copy.deepcopy(config)
    _unknown("the configuration", cfg, TOP_KEYS)

    name = cfg.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("\"name\" must be a non-empty string")
    if not isinstance(cfg.get("description", ""), str):
        raise ConfigError("\"description\" must be a string")
    cfg.setdefault("description", "")

    # --- data ---
    data = cfg.get("data")
    if not isinstance(data, dict):
        raise ConfigError("\"data\" must be an object with at least \"source\"")
    _unknown("\"data\"", data, DATA_KEYS)
    source = data.get("source")
    if source not in SOURCES:
        raise ConfigError(f"data.source must be one of {list(SOURCES)}; got {source!r}")
    if source == "folder" and not data.get("path"):
        raise ConfigError("data.source \"folder\" needs data.path (a LiTS, MSD Task03 or manifest folder)")
    if "path" in data and data["path"] is not None and not isinstance(data["path"], str):
        raise ConfigError("data.path must be a string")
    prep = data.setdefault("preprocessing", {})
    if not isinstance(prep, dict):
        raise ConfigError("data.preprocessing must be an object")
    prep_fields = _preprocessing_fields()
    if prep_fields is not None:
        _unknown("data.preprocessing", prep, prep_fields)
    split = data.setdefault("split", {})
    if not isinstance(split, dict):
        raise ConfigError("data.split must be an object")
    _unknown(f"data.split (source {source!r})", split, SPLIT_KEYS[source])
    for key, value in split.items():
        if not _is_number(value):
            raise ConfigError(f"data.split.{key} must be a number; got {value!r}")
    if source == "lits117-kfold":
        folds = split.setdefault("folds", 3)
        if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
            raise ConfigError(f"data.split.folds must be a whole number >= 2 (every slab is tested once); "
                              f"got {folds!r}")

    # --- arms ---
    arms = cfg.get("arms")
    if not isinstance(arms, list) or not arms:
        raise ConfigError("\"arms\" must be a non-empty list of arm names")
    if len(set(arms)) != len(arms):
        raise ConfigError(f"\"arms\" lists an arm twice: {arms}")
    # Checked before the arms, which read diffusion.model.
    diffusion = cfg.get("diffusion")
    if diffusion is not None:
        if not isinstance(diffusion, dict):
            raise ConfigError("\"diffusion\" must be an object {\"model\": PATH}")
        _unknown("\"diffusion\"", diffusion, DIFFUSION_KEYS)
    bases = []
    for arm in arms:
        base, _ = parse_arm(arm)
        if base == "real+diffusion":
            model = (cfg.get("diffusion") or {}).get("model")
            if not model:
                raise ConfigError(DIFFUSION_MESSAGE.format(arm=arm))
            if not isinstance(model, str):
                raise ConfigError(f"diffusion.model must be a folder path (a string); got {model!r}")
            if not Path(model).is_dir():  # fail now, not after the other arms have trained
                raise ConfigError(f"diffusion.model {model!r} is not a folder (a model folder from "
                                  "'tumorsynth diffusion train' holds config.json and weights)")
        bases.append(base)
    if BASELINE_ARM not in arms:
        raise ConfigError(
            f"\"arms\" must include {BASELINE_ARM!r}: every other arm is compared with it; got {arms}"
        )

    # --- seeds ---
    seeds = cfg.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ConfigError(f"\"seeds\" must be a non-empty list of non-negative integers; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"\"seeds\" lists a seed twice: {seeds}")
    cfg["seeds"] = seeds

    # --- hosts ---
    hosts = cfg.setdefault("hosts", {})
    if not isinstance(hosts, dict):
        raise ConfigError("\"hosts\" must be an object")
    _unknown("\"hosts\"", hosts, HOST_KEYS)
    phantoms = hosts.setdefault("phantoms", 0)
    if not isinstance(phantoms, int) or isinstance(phantoms, bool) or phantoms < 0:
        raise ConfigError(f"hosts.phantoms must be a non-negative integer; got {phantoms!r}")
    shape = hosts.setdefault("phantom shape mm", list(DEFAULT_PHANTOM_SHAPE_MM))
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_number(v) and v > 0 for v in shape)):
        raise ConfigError(f"hosts.\"phantom shape mm\" must be three positive numbers (mm); got {shape!r}")
    for key in ("healthy cases", "training part"):
        value = hosts.setdefault(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"hosts.{key!r} must be true or false; got {value!r}")
    needs_hosts = [a for a, b in zip(arms, bases) if b != "real"]
    if needs_hosts and not (phantoms or hosts["healthy cases"] or hosts["training part"]):
        raise ConfigError(
            f"arms {needs_hosts} insert synthetic tumours but \"hosts\" gives no liver to put them "
            f"in: set hosts.phantoms > 0, hosts.\"healthy cases\" or hosts.\"training part\""
        )
    if "synthetic-only" in bases and cfg.get("train", {}).get("loss", "dice_ce") != "dice_ce":
        raise ConfigError(
            "arm 'synthetic-only' leaves the hosts' real tumours out of the loss, which needs "
            "train.loss \"dice_ce\""
        )

    # --- train / synthetic ---
    train = cfg.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError("\"train\" must be an object of TrainConfig fields")
    reserved = sorted(set(train) & RESERVED_TRAIN_KEYS)
    if reserved:
        raise ConfigError(
            f"train.{reserved[0]} is set by the ablation itself (seed from \"seeds\", synthetic_* "
            f"from \"synthetic\"); remove {reserved} from \"train\""
        )
    train_fields = _train_config_fields()
    if train_fields is not None:
        _unknown("\"train\" (train.loop.TrainConfig fields)", train, train_fields - RESERVED_TRAIN_KEYS)
    synthetic = cfg.setdefault("synthetic", {})
    if not isinstance(synthetic, dict):
        raise ConfigError("\"synthetic\" must be an object")
    _unknown("\"synthetic\"", synthetic, SYNTHETIC_KEYS)
    prob = synthetic.get("probability", 0.5)
    if not (_is_number(prob) and 0.0 < prob <= 1.0):
        raise ConfigError(f"synthetic.probability must be a number in (0, 1]; got {prob!r}")
    synthetic["probability"] = float(prob)
    centre = synthetic.get("centre", "lesion")
    if centre not in ("lesion", "shares"):
        raise ConfigError(f"synthetic.centre must be \"lesion\" (a synthetic patch is centred on an inserted lesion) "
                          f"or \"shares\" (centred as real patches are); got {centre!r}")

    gate = cfg.setdefault("gate", {})
    if not isinstance(gate, dict):
        raise ConfigError("\"gate\" must be an object")
    _unknown("\"gate\"", gate, GATE_KEYS)
    for key, value in DEFAULT_GATE_SETTINGS.items():
        gate.setdefault(key, value)
    per_real = gate["per_real"]
    if not isinstance(per_real, int) or isinstance(per_real, bool) or per_real < 1:
        raise ConfigError(f"gate.per_real must be a whole number >= 1 (synthetic lesions per real one); "
                          f"got {per_real!r}")
    from synth.realism.classifier import CLASSIFIERS

    if gate["classifier"] not in CLASSIFIERS:
        raise ConfigError(f"gate.classifier must be {' or '.join(json.dumps(c) for c in CLASSIFIERS)}; "
                          f"got {gate['classifier']!r}")
    real_pass = gate["real_pass"]
    if not (_is_number(real_pass) and 0.0 < real_pass < 1.0):
        raise ConfigError(f"gate.real_pass must be a share in (0, 1) (real lesions that pass); got {real_pass!r}")
    cap = gate["max_real_per_case"]
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ConfigError(f"gate.max_real_per_case must be null or a whole number >= 1; got {cap!r}")

    post = cfg.setdefault("postprocess", {})
    if not isinstance(post, dict):
        raise ConfigError("\"postprocess\" must be an object")
    _unknown("\"postprocess\"", post, POSTPROCESS_KEYS)
    post = cfg["postprocess"] = {**DEFAULT_POSTPROCESS, **post}
    if not isinstance(post["largest_liver"], bool):
        raise ConfigError(f"postprocess.largest_liver must be true or false; got {post['largest_liver']!r}")
    for key in POSTPROCESS_KEYS - {"largest_liver"}:
        if not (_is_number(post[key]) and post[key] >= 0):
            unit = {"mm3": "mm^3", "mm": "mm", "hu": "HU"}[key.rsplit("_", 1)[1]]
            raise ConfigError(f"postprocess.{key} must be a number >= 0 ({unit}); got {post[key]!r}")

    boot = cfg.setdefault("bootstrap", DEFAULT_BOOTSTRAP)
    if not isinstance(boot, int) or isinstance(boot, bool) or boot < 10:
        raise ConfigError(f"\"bootstrap\" must be an integer >= 10 (resamples); got {boot!r}")
    return cfg


def load_profile(name: str) -> dict:
    """The bundled profile ``name`` (``"cpu-quick"`` or ``"gpu"``) as a raw configuration dict."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; bundled profiles: {list(PROFILES)}")
    text = resources.files("train.ablation").joinpath("profiles").joinpath(f"{name}.json").read_text("utf-8")
    return json.loads(text)


def load_config(config) -> dict:
    """A validated configuration from a dict, a JSON file path, or a bundled profile name."""
    if isinstance(config, dict):
        return validate_config(config)
    if isinstance(config, str) and config in PROFILES and not Path(config).exists():
        return validate_config(load_profile(config))
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        raw = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return validate_config(raw)
