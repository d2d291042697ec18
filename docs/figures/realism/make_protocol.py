"""Measure the synthesiser's current defaults with the realism protocol (docs/realism.md, "Protocol").

    python docs/figures/realism/make_protocol.py [--seeds 0 1 2] [--label before] [--out DIR]

For each seed it runs ``realism_report`` on LiTS-117 (report part, sizes matched by diameter,
logistic and boosted classifiers, real-vs-real noise floor) on the native grid, a 2.8 mm
thick-slice version and the healthy totalseg_example host. Then it trains a quality gate on the
tune part (first seed), times insertion with and without it, and measures the report part again
with the gate on, for every seed. It writes ``protocol_<label>.json`` and prints the Markdown tables of
docs/realism.md. Re-run it after changing the synthesiser's defaults with another ``--label``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from synth import LesionPlacementError, prepare_host  # noqa: E402
from synth.cases import read_cases  # noqa: E402
from synth.io import write_json_atomic  # noqa: E402
from synth.realism.compare import SIZE_BINS  # noqa: E402
from synth.realism.gate import QualityGate  # noqa: E402
from synth.realism.hosts import read_host  # noqa: E402
from synth.realism.report import realism_report  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PER_REAL = 2  # the command's default; each seed takes about half a minute on two cores
THICK_MM = 2.8
TIMED_LESIONS = 12  # insertions timed with and without the gate


def run(cases, hosts, *, seed, out, synth_options=None, figures_on=False) -> dict:
    summary = realism_report(cases, out_dir=out, seed=seed, per_real=PER_REAL, part="report",
                             thick_slice_mm=THICK_MM, hosts=hosts, synth_options=synth_options,
                             n_boot=1000, figures_on=figures_on, progress=False)
    rows = {}
    for host, analysis in summary["hosts"].items():
        rows[host] = {
            "n_real": analysis["counts"]["real"], "n_synthetic": analysis["counts"]["synthetic"],
            **{kind: {"auc": r["all features"]["auc"], "ci95": r["all features"]["ci95"],
                      "per_bin": r["all features"]["auc_per_size_bin"],
                      "counts_per_bin": r["all features"]["counts_per_size_bin"]}
               for kind, r in analysis["classifiers"].items()},
            "real_vs_real": {kind: r["auc_mean"] for kind, r in analysis["real_vs_real"].items()},
        }
    return {"runtime_s": summary["runtime_s"], "hosts": rows}


def time_insertions(case, gate) -> dict:
    """Mean wall time per lesion (one lesion a call, mixed sizes), without and with the gate."""
    host = prepare_host(case.image, case.label, spacing=case.spacing)
    out = {}
    for name, options in (("no gate", {}), ("gate", {"quality_filter": gate})):
        rng = np.random.default_rng(0)
        started, tries, failed = time.perf_counter(), [], 0
        for _ in range(TIMED_LESIONS):
            try:
                result = host.insert(size="mix", count=1, rng=rng, out=(host.volume, host.label), **options)
            except LesionPlacementError:  # a large lesion without room in the crowded liver: timed too
                failed += 1
                continue
            tries += [lesion.quality_tries for lesion in result.lesions]
            host.restore(result)
        out[name] = {"s_per_lesion": (time.perf_counter() - started) / TIMED_LESIONS,
                     "mean_tries": float(np.mean(tries)) if options else 1.0, "calls_without_room": failed}
    return out


def _without_nan(value):
    """A JSON-ready copy: NaN (an AUC of a size bin without both kinds of lesion) becomes null."""
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def markdown(results: dict) -> str:
    bins = [b[0] for b in SIZE_BINS]
    lines = ["| host | seed | real / synthetic | classifier | AUC (95 % CI) | " + " | ".join(bins)
             + " | real vs real |", "|---|---|---|---|---|" + "---|" * len(bins) + "---|"]
    for seed, result in results["seeds"].items():
        for host, row in result["hosts"].items():
            for kind in ("logistic", "boosting"):
                r = row[kind]
                cells = " | ".join(f"{r['per_bin'][b]:.2f} ({r['counts_per_bin'][b]['real']}/"
                                   f"{r['counts_per_bin'][b]['synthetic']})" if b in r["per_bin"] else "-"
                                   for b in bins)
                lines.append(f"| {host} | {seed} | {row['n_real']} / {row['n_synthetic']} | {kind} | "
                             f"{r['auc']:.2f} ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}) | {cells} | "
                             f"{row['real_vs_real'].get(kind, float('nan')):.2f} |")
    if "gate" in results:
        g = results["gate"]
        info = g["info"]
        lines += ["", f"Gate: {info['classifier']}, threshold {g['threshold']:.3f}; out of fold on the tune part "
                      f"{info['real_pass_out_of_fold']:.0%} of real and {info['synthetic_pass_out_of_fold']:.0%} "
                      f"of synthetic lesions pass.", "",
                  "| | s per lesion | mean tries | native AUC logistic, seeds | native AUC boosting, seeds |",
                  "|---|---|---|---|---|"]
        for name, timing in g["timing"].items():
            runs = g["with_gate"] if name == "gate" else results["seeds"]
            cells = [" / ".join(f"{runs[s]['hosts']['native'][kind]['auc']:.2f}" for s in runs)
                     for kind in ("logistic", "boosting")]
            lines.append(f"| {name} | {timing['s_per_lesion']:.2f} | {timing['mean_tries']:.1f} | {cells[0]} | "
                         f"{cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label", default="before", help="name of this measurement (protocol_<label>.json)")
    parser.add_argument("--out", type=Path, default=HERE / "protocol")
    parser.add_argument("--no-gate", action="store_true", help="skip the quality-gate measurement")
    args = parser.parse_args()
    cases = read_cases(DATA / "lits117")
    hosts = read_host(DATA / "totalseg_example")
    results: dict = {"label": args.label, "per_real": PER_REAL, "thick_slice_mm": THICK_MM, "seeds": {}}
    for seed in args.seeds:
        results["seeds"][str(seed)] = run(cases, hosts, seed=seed, out=args.out / f"seed{seed}",
                                          figures_on=seed == args.seeds[0])
        print(f"seed {seed}: {results['seeds'][str(seed)]['runtime_s']:.0f} s", flush=True)
    if not args.no_gate:
        seed = args.seeds[0]
        gate_path = args.out / "gate.json"
        realism_report(cases, out_dir=args.out / "tune", seed=seed, per_real=PER_REAL, part="tune",
                       save_gate=gate_path, n_boot=200, real_vs_real_repeats=0, figures_on=False, progress=False)
        gate = QualityGate.load(gate_path)
        results["gate"] = {"seed": seed, "threshold": gate.threshold, "info": gate.info,
                           "timing": time_insertions(cases[0], gate),
                           "with_gate": {str(s): run(cases, [], seed=s, out=args.out / f"with_gate_seed{s}",
                                                     synth_options={"quality_filter": gate})
                                         for s in args.seeds}}
    write_json_atomic(_without_nan(results), HERE / f"protocol_{args.label}.json")
    print(markdown(results))


if __name__ == "__main__":
    main()
