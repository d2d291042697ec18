"""Make docs/realism.md's figures: the realism report on LiTS-117 with the synthesiser's defaults,
then the same measurement with candidate default changes (tuning.json).

    python docs/figures/realism/make_realism.py [--quick]

Options that ``synth.synthesize`` exposes (``edge_mm``, ``phenotype``) are passed as options;
constants that it does not expose (the shape's elongation and surface waves, the texture's
amplitude) are changed for the run only by wrapping the synthesiser's functions here, so that
nothing in ``synth/`` is edited. A candidate that wins is a suggestion for the lead engineer.
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

import synth.heuristic.shape  # noqa: E402
import synth.insert  # noqa: E402
from realism.report import load_cases, realism_report  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "lits117"
PER_REAL = 4  # synthetic lesions per real one: insertion is cheap, more lesions narrow the intervals


@contextlib.contextmanager
def patched(*, elongation_sd=None, wave_scale=None, texture_scale=None, lobulation_from_mm=None,
            hypodense_range=None):
    """Run the synthesiser with a changed shape or texture constant, restored afterwards."""
    original_shape, original_appearance = synth.insert.sample_shape, synth.insert.sample_appearance
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

    synth.insert.sample_shape, synth.insert.sample_appearance = sample_shape, sample_appearance
    try:
        yield
    finally:
        synth.insert.sample_shape, synth.insert.sample_appearance = original_shape, original_appearance
        synth.heuristic.shape.LOBULATION_FROM_MM = original_lobulation


TUNED = "tuned: edge + elongation + waves x3 + lobes from 0 mm + phenotype mix"
LITS_LIKE_PHENOTYPES = {"hypodense": 0.85, "isodense": 0.05, "hyperdense": 0.03, "rim-enhancing": 0.05,
                        "necrotic": 0.02}
CANDIDATES = {
    "defaults": ({}, {}),
    "edge_mm (1.5, 3.0)": ({"edge_mm": (1.5, 3.0)}, {}),
    "hypodense only": ({"phenotype": "hypodense"}, {}),
    "elongation_sd 0.25": ({}, {"elongation_sd": 0.25}),
    "surface waves x2": ({}, {"wave_scale": 2.0}),
    "texture x0.6": ({}, {"texture_scale": 0.6}),
    "edge + elongation + waves": ({"edge_mm": (1.5, 3.0)}, {"elongation_sd": 0.25, "wave_scale": 2.0}),
    "lobes from 0 mm": ({}, {"lobulation_from_mm": 0.0}),
    "hypodense contrast 0.35-0.55 E": ({}, {"hypodense_range": (0.35, 0.55)}),
    "edge + elongation + waves x3 + lobes from 0 mm": (
        {"edge_mm": (1.5, 3.0)}, {"elongation_sd": 0.25, "wave_scale": 3.0, "lobulation_from_mm": 0.0}),
    TUNED: ({"edge_mm": (1.5, 3.0), "phenotype": LITS_LIKE_PHENOTYPES},
            {"elongation_sd": 0.25, "wave_scale": 3.0, "lobulation_from_mm": 0.0}),
}
WATCHED = ("contrast_hu", "texture_sd_hu", "glcm_contrast_hu", "edge_width_mm", "sphericity", "elongation",
           "roughness", "solidity")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="defaults only, no candidates")
    args = parser.parse_args()
    cases = load_cases(DATA)
    tuning = {}
    for name, (options, constants) in CANDIDATES.items():
        out = {"defaults": HERE, TUNED: HERE / "tuned"}.get(name, ROOT / "build" / "realism" / name.replace(" ", "_"))
        with patched(**constants):
            summary = realism_report(cases, out_dir=out, seed=0, per_real=PER_REAL, synth_options=options,
                                     figures_on=name in ("defaults", TUNED), progress=False)
        row = {"options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
               "constants": constants, "runtime_s": summary["runtime_s"],
               "auc": {k: [round(v["auc"], 3)] + [round(c, 3) for c in v["ci95"]]
                       for k, v in summary["classifier"].items()},
               "ks": {f: round(summary["distances"]["all"][f]["ks"], 3) for f in WATCHED},
               "synthetic_median": {f: round(summary["distances"]["all"][f]["synthetic_median"], 3)
                                    for f in WATCHED}}
        tuning[name] = row
        print(f"{name:50s} AUC {row['auc']['all features']}  intensity {row['auc']['intensity only'][0]}  "
              f"shape {row['auc']['shape only'][0]}  KS {row['ks']}", flush=True)
        if args.quick:
            break
    if not args.quick:
        tuning["real_median"] = {f: round(summary["distances"]["all"][f]["real_median"], 3) for f in WATCHED}
        (HERE / "tuning.json").write_text(json.dumps(tuning, indent=1))


if __name__ == "__main__":
    main()
