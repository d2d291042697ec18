"""Make docs/realism.md's figures: the realism report on LiTS-117 with the synthesiser's current
defaults, the same report with the defaults it had before tuning (``before/``), and candidate
default changes measured against those "before" settings (tuning.json).

    python docs/figures/realism/make_realism.py [--quick]

Options that ``synth.synthesize`` exposes (``edge_mm``, ``phenotype``) are passed as options;
constants that it does not expose (the shape's elongation, surface waves and lobulation, the
texture's amplitude) are changed for the run only by wrapping the synthesiser's functions here,
so that nothing in ``synth/`` is edited. The pre-tuning defaults are reproduced the same way:
``edge_mm=(1.0, 2.0)``, ``elongation_sd=0.15``, wave amplitudes scaled by 1/3 (the current
uniform(0.06, 0.15) and uniform(0.12, 0.27) draws become the old uniform(0.02, 0.05) and
uniform(0.04, 0.09) draws, from the same random numbers) and lobes from 10 mm.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import synth.heuristic.cluster  # noqa: E402
import synth.heuristic.shape  # noqa: E402
import synth.insert  # noqa: E402
from synth.cases import read_cases  # noqa: E402
from synth.realism.report import realism_report  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "lits117"
PER_REAL = 4  # synthetic lesions per real one: insertion is cheap, more lesions narrow the intervals


@contextlib.contextmanager
def patched(*, elongation_sd=None, wave_scale=None, texture_scale=None, lobulation_from_mm=None,
            hypodense_range=None):
    """Run the synthesiser with a changed shape or texture constant, restored afterwards."""
    original_shape, original_appearance = synth.heuristic.cluster.sample_shape, synth.insert.sample_appearance
    original_lobulation = synth.heuristic.shape.LOBULATION_FROM_MM
    if lobulation_from_mm is not None:
        synth.heuristic.shape.LOBULATION_FROM_MM = lobulation_from_mm

    def sample_shape(diameter, rng):
        shape = original_shape(diameter, rng, **({} if elongation_sd is None else {"elongation_sd": elongation_sd}))
        if wave_scale is not None:
            shape = dataclasses.replace(shape, wave_amplitudes=shape.wave_amplitudes * wave_scale)
        return shape

    def sample_appearance(*args, **kwargs):
        appearance = original_appearance(*args, **kwargs)
        if texture_scale is not None:
            appearance = dataclasses.replace(appearance, texture_hu=appearance.texture_hu * texture_scale)
        if hypodense_range is not None and appearance.phenotype == "hypodense":
            # Map the default draw, a fraction 0.25-0.75 of the enhancement, onto hypodense_range
            # (the floor that keeps small lesions visible still applies).
            phenotype, diameter, liver_hu, noise_hu = args[:4]
            enhancement = max(liver_hu - 10.0, 40.0)
            fraction = (-appearance.contrast_hu / enhancement - 0.25) / 0.5
            low, high = hypodense_range
            visible = max(25.0, 2.5 * noise_hu) if diameter < 10.0 else 10.0
            contrast = -max((low + np.clip(fraction, 0, 1) * (high - low)) * enhancement, visible)
            appearance = dataclasses.replace(appearance, contrast_hu=contrast)
        return appearance

    synth.heuristic.cluster.sample_shape, synth.insert.sample_appearance = sample_shape, sample_appearance
    try:
        yield
    finally:
        synth.heuristic.cluster.sample_shape, synth.insert.sample_appearance = original_shape, original_appearance
        synth.heuristic.shape.LOBULATION_FROM_MM = original_lobulation


LITS_LIKE_PHENOTYPES = {"hypodense": 0.85, "isodense": 0.05, "hyperdense": 0.03, "rim-enhancing": 0.05,
                        "necrotic": 0.02}
# The synthesiser's defaults before the tuning that docs/realism.md suggested (commit dd531db).
BEFORE_OPTIONS = {"edge_mm": (1.0, 2.0)}
BEFORE_CONSTANTS = {"elongation_sd": 0.15, "wave_scale": 1.0 / 3.0, "lobulation_from_mm": 10.0}


def from_before(options=None, constants=None):
    """A candidate: the pre-tuning settings with some options and wrapped constants changed."""
    return {**BEFORE_OPTIONS, **(options or {})}, {**BEFORE_CONSTANTS, **(constants or {})}


CURRENT = "current defaults"
BEFORE = "defaults before tuning"
# Candidate rows are changes relative to the pre-tuning defaults (wave_scale: on the old amplitudes,
# so "waves x2" is 2/3 of the current ones). "edge + elongation + waves x3 + lobes from 0 mm" is
# exactly the current defaults, measured unwrapped as CURRENT.
CANDIDATES = {
    CURRENT: ({}, {}),
    BEFORE: from_before(),
    "edge_mm (1.5, 3.0)": from_before({"edge_mm": (1.5, 3.0)}),
    "hypodense only": from_before({"phenotype": "hypodense"}),
    "elongation_sd 0.25": from_before(constants={"elongation_sd": 0.25}),
    "surface waves x2": from_before(constants={"wave_scale": 2.0 / 3.0}),
    "lobes from 0 mm": from_before(constants={"lobulation_from_mm": 0.0}),
    "texture x0.6": from_before(constants={"texture_scale": 0.6}),
    "hypodense contrast 0.35-0.55 E": from_before(constants={"hypodense_range": (0.35, 0.55)}),
    "edge + elongation + waves x2": from_before({"edge_mm": (1.5, 3.0)},
                                                {"elongation_sd": 0.25, "wave_scale": 2.0 / 3.0}),
    "current defaults + LiTS-like phenotype mix": ({"phenotype": LITS_LIKE_PHENOTYPES}, {}),
}
FIGURES = {CURRENT: HERE, BEFORE: HERE / "before"}
SEEDS = (0, 1, 2)  # CURRENT and BEFORE are also measured on seeds 1 and 2
WATCHED = ("contrast_hu", "texture_sd_hu", "glcm_contrast_hu", "edge_width_mm", "sphericity", "elongation",
           "roughness", "solidity")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def measure(cases, name, options, constants, *, seed=0):
    out = FIGURES.get(name, ROOT / "build" / "realism" / name.replace(" ", "_")) if seed == 0 else \
        ROOT / "build" / "realism" / f"{name.replace(' ', '_')}_seed{seed}"
    with patched(**constants):
        # The measurement these tables were made with: all lesions, sizes matched by class, the
        # logistic classifier (the protocol of docs/realism.md is make_protocol.py).
        summary = realism_report(cases, out_dir=out, seed=seed, per_real=PER_REAL, synth_options=options,
                                 part="all", match="class", classifiers=("logistic",), real_vs_real_repeats=0,
                                 figures_on=seed == 0 and name in FIGURES, progress=False)
    row = {"options": _jsonable(options), "constants": _jsonable(constants), "seed": seed,
           "runtime_s": summary["runtime_s"],
           "auc": {k: [round(v["auc"], 3)] + [round(c, 3) for c in v["ci95"]]
                   for k, v in summary["classifier"].items()},
           "ks": {f: round(summary["distances"]["all"][f]["ks"], 3) for f in WATCHED},
           "synthetic_median": {f: round(summary["distances"]["all"][f]["synthetic_median"], 3)
                                for f in WATCHED}}
    print(f"{name:45s} seed {seed} AUC {row['auc']['all features']}  intensity {row['auc']['intensity only'][0]}  "
          f"shape {row['auc']['shape only'][0]}  KS {row['ks']}", flush=True)
    return row, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="current defaults only, no candidates")
    args = parser.parse_args()
    cases = read_cases(DATA)
    tuning = {}
    for name, (options, constants) in CANDIDATES.items():
        tuning[name], summary = measure(cases, name, options, constants)
        if args.quick:
            return
    tuning["real_median"] = {f: round(summary["distances"]["all"][f]["real_median"], 3) for f in WATCHED}
    tuning["seeds"] = {name: {str(seed): tuning[name]["auc"]["all features"] if seed == 0 else
                              measure(cases, name, *CANDIDATES[name], seed=seed)[0]["auc"]["all features"]
                              for seed in SEEDS}
                       for name in (BEFORE, CURRENT)}
    (HERE / "tuning.json").write_text(json.dumps(tuning, indent=1))


if __name__ == "__main__":
    main()
