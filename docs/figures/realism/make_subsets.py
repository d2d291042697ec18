"""How much a realism AUC moves with the lesions it is measured on (docs/realism.md, "One case").

    python docs/figures/realism/make_subsets.py [--seeds 0 1 ... 9] [--label grain]

The protocol's two parts are two fixed pairs of the liver's four axial slabs (tune: 0 and 2,
report: 1 and 3). This script measures the synthesiser's current defaults on every pair of slabs
and on all four, over many seeds, on LiTS-117's native grid and a 2.8 mm thick-slice version:
real lesions of the slabs, two synthetic lesions per real one with its diameter (+-10 %), the
same features, classifiers and slab folds as ``tumorsynth realism``. The spread between pairs of
the same size says how far one part's AUC can be from another's with nothing changed; the seeds'
spread says how many seeds a mean needs. Writes ``subsets_<label>.json`` beside this script and
prints the Markdown table of docs/realism.md (about a minute a seed on two cores).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from synth.cases import read_cases  # noqa: E402
from synth.io import write_json_atomic  # noqa: E402
from synth.realism.classifier import cross_validated_auc, roc_auc  # noqa: E402
from synth.realism.compare import (  # noqa: E402
    extract_real_lesions,
    feature_table,
    liver_slab,
    liver_z_extent_mm,
    matched_sizes,
    synthesize_lesions,
)
from synth.realism.hosts import thick_slice_case  # noqa: E402
from synth.realism.report import CLASSIFIER_FEATURES  # noqa: E402
from synth.seeding import rng_for  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PER_REAL = 2
THICK_MM = 2.8
SUBSETS = {**{f"{a}+{b}": (a, b) for a, b in itertools.combinations(range(4), 2)}, "all": (0, 1, 2, 3)}
PART_OF = {"0+2": "tune", "1+3": "report"}
CLASSIFIERS = ("logistic", "boosting")


def slab_table(case, *, seed: int, host: str) -> dict[str, np.ndarray]:
    """Every real lesion of ``case`` and ``PER_REAL`` diameter-matched synthetic ones, each row's
    ``part`` set to the slab of its real lesion ("0".."3")."""
    extent = liver_z_extent_mm(case.label, case.spacing)
    real = extract_real_lesions(case.image, case.label, case.spacing, case=case.case_id)
    slabs = liver_slab([s.center_mm for s in real], extent)
    real = [replace(s, part=str(slab)) for s, slab in zip(real, slabs)]
    synthetic, _ = synthesize_lesions(
        case.image, case.label, case.spacing, matched_sizes(real, per_real=PER_REAL, match="diameter"),
        case=case.case_id, seed=rng_for(seed, "subsets", host, case.case_id),
        parts=[s.part for s in real for _ in range(PER_REAL)])
    return feature_table(real + synthetic)


def subset_aucs(table: dict[str, np.ndarray], *, seed: int) -> dict[str, dict]:
    """Out-of-fold AUC of both classifiers on each subset of slabs, overall and under 10 mm."""
    features = np.stack([table[f] for f in CLASSIFIER_FEATURES], axis=1)
    is_real = (table["source"] == "real").astype(int)
    out = {}
    for name, slabs in SUBSETS.items():
        rows = np.isin(table["part"], [str(s) for s in slabs])
        out[name] = {"n_real": int(is_real[rows].sum()), "n_synthetic": int((1 - is_real[rows]).sum())}
        for kind in CLASSIFIERS:
            result = cross_validated_auc(features[rows], is_real[rows], groups=table["case"][rows],
                                         centers_mm=table["center_mm"][rows], n_boot=20, seed=seed,
                                         classifier=kind)
            small = np.isfinite(result["scores"]) & (table["size_bin"][rows] == "< 10 mm")
            labels = is_real[rows][small]
            both = labels.min() < labels.max()  # a subset may hold no real lesion under 10 mm
            out[name][kind] = {"auc": result["auc"],
                               "auc_small": float(roc_auc(result["scores"][small], labels)) if both else None}
    return out


def markdown(results: dict) -> str:
    lines = ["| host | slabs | part | real lesions | logistic AUC, mean (seed SD) | under 10 mm | "
             "boosting AUC, mean (seed SD) | under 10 mm |", "|---|---|---|---|---|---|---|---|"]
    for host, per_seed in results["hosts"].items():
        for name in SUBSETS:
            runs = [per_seed[seed][name] for seed in per_seed]
            cells = []
            for kind in CLASSIFIERS:
                aucs = np.array([r[kind]["auc"] for r in runs])
                small = np.array([np.nan if r[kind]["auc_small"] is None else r[kind]["auc_small"] for r in runs])
                cells += [f"{aucs.mean():.2f} ({aucs.std():.2f})", f"{np.nanmean(small):.2f}"]
            lines.append(f"| {host} | {name} | {PART_OF.get(name, '')} | {runs[0]['n_real']} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--label", default="grain", help="name of this measurement (subsets_<label>.json)")
    args = parser.parse_args()
    native = read_cases(DATA / "lits117")
    hosts = {"native": native, f"thick {THICK_MM} mm": [thick_slice_case(c, thick_mm=THICK_MM) for c in native]}
    results: dict = {"label": args.label, "per_real": PER_REAL, "subsets": {k: list(v) for k, v in SUBSETS.items()},
                     "hosts": {host: {} for host in hosts}}
    for seed in tqdm(args.seeds, desc="seeds"):
        for host, cases in hosts.items():
            tables = [slab_table(case, seed=seed, host=host) for case in cases]
            table = {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}
            results["hosts"][host][str(seed)] = subset_aucs(table, seed=seed)
    write_json_atomic(results, HERE / f"subsets_{args.label}.json")
    print(markdown(results))


if __name__ == "__main__":
    main()
