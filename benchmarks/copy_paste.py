"""Copy-paste synthesis, measured: the bank, the insertion, and how real the pasted lesions look.

- **bank**: ``build_bank`` on LiTS-117 (time, lesions, size on disk) and ``LesionBank.load``;
- **insertion**: per host (LiTS-117 at 1.4 mm, the healthy TotalSegmentator liver at 3 mm) and size
  class, the median time of one ``HostScan.insert`` call of one lesion (prepared host), beside the
  heuristic's in the same loop; the contrast error (mean HU of the new lesion's voxels minus the
  host liver median, minus the donor's contrast); the noise inside the lesion (eroded by one voxel,
  neighbour differences, as the host's noise is measured) against the host's;
- **realism** on the fixed tune/report split: in LiTS-117 the liver's extent along z is cut into four
  equal slabs; real lesions whose centroid lies in slabs 0 and 2 are the tune part, 1 and 3 the
  report part. The bank holds the tune part's lesions only; two synthetic lesions per report lesion
  (its diameter +-10 %) are inserted into the same liver by each synthesiser, and the realism
  report's classifier (``synth.realism``, features of ``lesion_features``, folds by spatial slab)
  tells real report lesions from synthetic ones: ROC AUC 0.5 is indistinguishable.

Usage: python benchmarks/copy_paste.py [--seeds 12] [--out benchmarks/results/copy_paste.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import LITS117, REPO, TOTALSEG, machine, write_results  # noqa: E402

from synth import LesionPlacementError, prepare_host  # noqa: E402
from synth.cases import Case, read_cases  # noqa: E402
from synth.copy_paste import LesionBank, build_bank  # noqa: E402
from synth.copy_paste.bank import noise_hu_of  # noqa: E402
from synth.io import load_nifti  # noqa: E402
from synth.labels import Label  # noqa: E402
from synth.realism.classifier import cross_validated_auc  # noqa: E402
from synth.realism.compare import extract_real_lesions, feature_table, matched_sizes, synthesize_lesions  # noqa: E402
from synth.realism.features import FEATURE_NAMES  # noqa: E402

SIZES = ("small", "medium", "large")
TUNE_SLABS, REPORT_SLABS = (0, 2), (1, 3)


def _bank_figures(case: Case, folder: Path, repeats: int = 3) -> dict:
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        build_bank([case], folder / f"bank-{k}")
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    bank = LesionBank.load(folder / "bank-0")
    load_s = time.perf_counter() - start
    classes = [entry["size_class"] for entry in bank.index["lesions"]]
    return {"build_s_median": float(np.median(times)), "load_s": load_s, "lesions": len(bank),
            "classes": {name: classes.count(name) for name in ("tiny", "small", "medium", "large")},
            "diameter_mm_range": [float(bank.diameters_mm.min()), float(bank.diameters_mm.max())],
            "bytes": sum(p.stat().st_size for p in (folder / "bank-0").iterdir())}


def _insertion_figures(name: str, volume, label, spacing, bank: LesionBank, seeds: int) -> list[dict]:
    host = prepare_host(volume, label, spacing=spacing)
    rows = []
    for size in SIZES:
        times: dict[str, list[float]] = {"heuristic": [], "copy-paste": []}
        errors, noise, failures = [], [], 0
        for seed in range(seeds):
            for method, options in (("heuristic", {}), ("copy-paste", {"method": "copy-paste", "bank": bank})):
                start = time.perf_counter()
                try:
                    result = host.insert(size=size, count=1, seed=seed, **options)
                except LesionPlacementError:
                    failures += method == "copy-paste"
                    continue
                times[method].append(time.perf_counter() - start)
                if method != "copy-paste":
                    continue
                lesion = result.lesions[0]
                new = (result.label == Label.TUMOR) & (host.label != Label.TUMOR)
                donor = next(d for d in bank.lesions if d.lesion_id == lesion.donor)
                errors.append(float(result.volume[new].astype(np.float64).mean()) - host.stats.median_hu
                              - donor.contrast_hu)
                core = ndimage.binary_erosion(new)
                if core.sum() >= 20:
                    noise.append(noise_hu_of(result.volume, core))
        rows.append({
            "host": name, "size": size,
            "heuristic_ms": 1000 * float(np.median(times["heuristic"])),
            "copy_paste_ms": 1000 * float(np.median(times["copy-paste"])),
            "contrast_error_hu_median": float(np.median(errors)),
            "contrast_error_hu_max_abs": float(np.max(np.abs(errors))),
            "noise_inside_hu": float(np.median(noise)) if noise else None,
            "host_noise_hu": host.stats.noise_hu, "lesions": len(errors), "no_room": failures,
        })
    return rows


def _slab(case: Case, center_mm) -> int:
    """The slab (0-3) of the liver's extent along z that holds a centroid (mm)."""
    z = np.flatnonzero((case.label >= Label.LIVER).any(axis=(0, 1)))
    low, high = z.min(), z.max() + 1
    return min(3, int(4 * (center_mm[2] / case.spacing[2] - low) / (high - low)))


def _realism(case: Case, bank: LesionBank) -> dict:
    real = extract_real_lesions(case.image, case.label, case.spacing, case=case.case_id)
    report = [s for s in real if _slab(case, s.center_mm) in REPORT_SLABS]
    tune_bank = LesionBank([d for d, e in zip(bank.lesions, bank.index["lesions"])
                            if _slab(case, e["centroid_mm"]) in TUNE_SLABS], bank.index)
    sizes = matched_sizes(report, per_real=2, match="diameter")
    real_table = feature_table(report)
    out = {"report_lesions": len(report), "tune_bank_lesions": len(tune_bank), "methods": {}}
    for method, options in (("heuristic", {}), ("copy-paste", {"method": "copy-paste", "bank": tune_bank})):
        samples, failures = synthesize_lesions(case.image, case.label, case.spacing, sizes, case=case.case_id,
                                               seed=0, synth_options=options)
        table = feature_table(samples)
        features = np.concatenate([np.column_stack([t[f] for f in FEATURE_NAMES]) for t in (real_table, table)])
        labels = np.concatenate([np.ones(len(report)), np.zeros(len(samples))])
        centers = np.concatenate([real_table["center_mm"], table["center_mm"]])
        auc = cross_validated_auc(features, labels, centers_mm=centers, n_boot=1000, seed=0)
        out["methods"][method] = {
            "synthetic_lesions": len(samples), "failures": failures, "auc": auc["auc"],
            "ci95": [float(c) for c in auc["ci"]], "folds": auc["scheme"],
            "medians": {f: [float(np.nanmedian(real_table[f])), float(np.nanmedian(table[f]))]
                        for f in FEATURE_NAMES},
        }
    return out


def _markdown(results: dict) -> str:
    bank = results["bank"]
    lines = ["# Copy-paste synthesis", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['cpu_count']} CPUs, load average "
             f"{results['machine']['load_average']}.", "",
             f"Bank from LiTS-117: {bank['lesions']} lesions ({bank['classes']}), {bank['bytes'] / 1e6:.2f} MB, "
             f"built in {bank['build_s_median']:.2f} s (median of 3), loaded in {bank['load_s']:.2f} s.", "",
             "| host | size | heuristic ms | copy-paste ms | contrast error median / max abs (HU) "
             "| noise inside / host (HU) | lesions | no room |", "|---|---|---|---|---|---|---|---|"]
    for row in results["insertion"]:
        noise = "-" if row["noise_inside_hu"] is None else f"{row['noise_inside_hu']:.1f}"
        lines.append(f"| {row['host']} | {row['size']} | {row['heuristic_ms']:.0f} | {row['copy_paste_ms']:.0f} | "
                     f"{row['contrast_error_hu_median']:+.1f} / {row['contrast_error_hu_max_abs']:.1f} | "
                     f"{noise} / {row['host_noise_hu']:.1f} | {row['lesions']} | {row['no_room']} |")
    realism = results["realism"]
    lines += ["", f"Realism on the report part ({realism['report_lesions']} real lesions; bank of the tune part, "
              f"{realism['tune_bank_lesions']} lesions): real-vs-synthetic classifier ROC AUC", "",
              "| synthesiser | AUC [95 % CI] | synthetic lesions |", "|---|---|---|"]
    for method, figures in realism["methods"].items():
        lines.append(f"| {method} | {figures['auc']:.2f} [{figures['ci95'][0]:.2f}, {figures['ci95'][1]:.2f}] | "
                     f"{figures['synthetic_lesions']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12, help="insertions per host and size (default 12)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "copy_paste.json")
    args = parser.parse_args()
    case = read_cases(LITS117)[0]
    with tempfile.TemporaryDirectory() as tmp:
        bank_figures = _bank_figures(case, Path(tmp))
        bank = LesionBank.load(Path(tmp) / "bank-0")
    ts_ct, ts_liver = load_nifti(TOTALSEG / "ct.nii.gz"), load_nifti(TOTALSEG / "liver.nii.gz")
    insertion = (_insertion_figures("LiTS-117, 1.4 mm", case.image, case.label, case.spacing, bank, args.seeds)
                 + _insertion_figures("TotalSegmentator, 3 mm", ts_ct.array, ts_liver.array, ts_ct.spacing, bank,
                                      args.seeds))
    results = {"machine": machine(), "bank": bank_figures, "insertion": insertion, "realism": _realism(case, bank)}
    write_results(results, args.out, _markdown(results))


if __name__ == "__main__":
    main()
