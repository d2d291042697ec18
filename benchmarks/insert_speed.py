"""Speed and memory of the heuristic insertion.

Measures, on a 512 x 512 x 100 phantom at 0.8 x 0.8 x 2.5 mm (int16) and on the real
TotalSegmentator example case:
- a cold ``insert_tumor`` call (per-scan preparation included) per size class,
- the per-scan preparation alone,
- warm calls on one prepared scan: per call, per lesion, and the marginal cost of a lesion
  (call minus an empty call, which only copies the scan, divided by the lesion count),
- peak memory allocated during a cold call (tracemalloc), beside the scan's own size,
- per-lesion time as the scan grows (it should stay flat).

Counts per call follow the best-known public heuristic's per-class settings, whose published
timings (on such a scan) are quoted as the reference: 110 ms a call for 3-10 tiny lesions and
290 ms for 1-3 large ones, after a 90 s, 3 GB start-up.

Usage: python benchmarks/insert_speed.py [--repeats N] [--out benchmarks/results/insert_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_results  # noqa: E402

from synth import LesionPlacementError, insert_tumor, prepare_host  # noqa: E402
from synth.phantom import make_phantom  # noqa: E402

COUNTS = {"tiny": (3, 10), "small": (3, 10), "medium": (2, 5), "large": (1, 3)}
REFERENCE = {
    "source": "published timings of the best-known public heuristic on a 512x512x100 scan",
    "call_ms": {"tiny": 110.0, "large": 290.0},
    "startup_s": 90.0,
    "startup_gb": 3.0,
}
REPO = Path(__file__).resolve().parents[1]
TOTALSEG = REPO.parent / "shared" / "data" / "totalseg_example"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cold_calls(volume, label, spacing, size, repeats):
    times = []
    for seed in range(repeats):
        try:
            dt, _ = timed(lambda seed=seed: insert_tumor(volume, label, spacing=spacing, size=size,
                                               count=COUNTS[size], seed=seed))
        except LesionPlacementError:
            continue  # a crowded liver; counted in the warm runs
        times.append(dt)
    return times


def warm_calls(host, size, repeats):
    host.insert(size=size, count=COUNTS[size], seed=10_000)  # first touch of the code paths
    empty = statistics.median(timed(lambda s=s: host.insert(count=0, seed=s))[0] for s in range(5))
    calls, per_lesion, marginal, failures = [], [], [], 0
    for seed in range(repeats):
        try:
            dt, result = timed(lambda seed=seed: host.insert(size=size, count=COUNTS[size], seed=seed))
        except LesionPlacementError:
            failures += 1
            continue
        n = len(result.lesions)
        calls.append(dt)
        per_lesion.append(dt / n)
        marginal.append(max(dt - empty, 0.0) / n)
    return {"call_ms": ms(calls), "per_lesion_ms": ms(per_lesion), "marginal_per_lesion_ms": ms(marginal),
            "empty_call_ms": round(empty * 1000, 2), "placement_failures": failures, "calls": repeats}


def ms(values):
    return round(statistics.median(values) * 1000, 2)


def peak_memory(volume, label, spacing, size):
    tracemalloc.start()
    insert_tumor(volume, label, spacing=spacing, size=size, count=COUNTS[size], seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outputs = volume.nbytes + label.size  # the returned volume and uint8 label
    return {"peak_mb": round(peak / 2**20, 1), "returned_arrays_mb": round(outputs / 2**20, 1),
            "working_mb": round((peak - outputs) / 2**20, 1)}


def warm_up_host(host, calls=40):
    """Touch the liver widely so lazily built vessel blocks exist, as after a few epochs."""
    for seed in range(calls):
        try:
            host.insert(size="mix", count=(3, 6), seed=50_000 + seed)
        except LesionPlacementError:
            pass


def bench_scan(name, volume, label, spacing, repeats, *, compare=False):
    print(f"{name}: shape {volume.shape}, spacing {spacing}", flush=True)
    scan = {"shape": list(volume.shape), "spacing_mm": list(spacing), "dtype": str(volume.dtype),
            "scan_mb": round((volume.nbytes + label.nbytes) / 2**20, 1), "classes": {}}
    prep = [timed(lambda: prepare_host(volume, label, spacing=spacing))[0] for _ in range(repeats)]
    scan["prepare_ms"] = ms(prep)
    host = prepare_host(volume, label, spacing=spacing)
    warm_up_host(host)
    for size in COUNTS:
        entry = {"count": list(COUNTS[size]), "cold_call_ms": ms(cold_calls(volume, label, spacing, size, repeats))}
        entry["warm"] = warm_calls(host, size, repeats)
        entry["memory"] = peak_memory(volume, label, spacing, size)
        reference = REFERENCE["call_ms"].get(size) if compare else None
        if reference is not None:
            mean_count = sum(COUNTS[size]) / 2
            entry["speedup_cold_call"] = round(reference / entry["cold_call_ms"], 1)
            entry["speedup_warm_per_lesion"] = round(reference / mean_count / entry["warm"]["per_lesion_ms"], 1)
            entry["speedup_warm_marginal_per_lesion"] = round(
                reference / mean_count / max(entry["warm"]["marginal_per_lesion_ms"], 1e-3), 1)
        scan["classes"][size] = entry
        print(f"  {size:6s} {json.dumps(entry)}", flush=True)
    return scan


def scaling(repeats):
    """Warm marginal per-lesion time for small lesions as the scan grows at a fixed spacing."""
    rows = []
    for shape in [(256, 256, 50), (384, 384, 75), (512, 512, 100), (640, 640, 150)]:
        case = make_phantom(shape=shape, spacing=(0.8, 0.8, 2.5), seed=1)
        host = prepare_host(case.volume, case.label, spacing=case.spacing)
        warm_up_host(host, calls=20)
        stats = warm_calls(host, "small", repeats)
        rows.append({"shape": list(shape), "voxels_millions": round(float(np.prod(shape)) / 1e6, 2), **stats})
        print(f"  scaling {shape}: {stats}", flush=True)
    return rows


def markdown(results) -> str:
    """The tables docs/benchmarks.md quotes."""
    lines = []
    for name, scan in results["scans"].items():
        lines += [f"**{name}**: {' x '.join(map(str, scan['shape']))} voxels at "
                  f"{' x '.join(f'{s:g}' for s in scan['spacing_mm'])} mm, {scan['dtype']}, "
                  f"{scan['scan_mb']} MB with its label; preparation {scan['prepare_ms']} ms", "",
                  "| class | lesions a call | cold call ms | warm call ms | warm ms a lesion | marginal ms a lesion "
                  "| working MB | speed-up cold / a lesion / marginal |",
                  "|---|---|---|---|---|---|---|---|"]
        for size, e in scan["classes"].items():
            speed = (f"{e['speedup_cold_call']}x / {e['speedup_warm_per_lesion']}x / "
                     f"{e['speedup_warm_marginal_per_lesion']}x" if "speedup_cold_call" in e else "-")
            lines.append(f"| {size} | {e['count'][0]}-{e['count'][1]} | {e['cold_call_ms']} | {e['warm']['call_ms']} "
                         f"| {e['warm']['per_lesion_ms']} | {e['warm']['marginal_per_lesion_ms']} "
                         f"| {e['memory']['working_mb']} | {speed} |")
        lines.append("")
    lines += ["| scan (0.8 x 0.8 x 2.5 mm) | voxels (M) | empty call ms | marginal ms a small lesion |",
              "|---|---|---|---|"]
    for row in results["scaling_small_lesions"]:
        lines.append(f"| {' x '.join(map(str, row['shape']))} | {row['voxels_millions']} | {row['empty_call_ms']} "
                     f"| {row['marginal_per_lesion_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "insert_speed.json")
    args = parser.parse_args(argv)

    results = {"machine": machine(), "reference": REFERENCE, "scans": {}}
    phantom = make_phantom(shape=(512, 512, 100), spacing=(0.8, 0.8, 2.5), seed=0)
    results["scans"]["phantom_512x512x100"] = bench_scan(
        "phantom", phantom.volume, phantom.label, phantom.spacing, args.repeats, compare=True)
    if TOTALSEG.exists():
        import nibabel as nib

        ct = nib.load(TOTALSEG / "ct.nii.gz")
        liver = nib.load(TOTALSEG / "liver.nii.gz")
        results["scans"]["totalseg_example"] = bench_scan(
            "totalseg_example", np.asanyarray(ct.dataobj), np.asanyarray(liver.dataobj),
            tuple(float(z) for z in ct.header.get_zooms()), args.repeats)
    else:
        print(f"skipping the real case: {TOTALSEG} not found")
    results["scaling_small_lesions"] = scaling(max(5, args.repeats // 2))

    write_results(results, args.out, markdown(results))


if __name__ == "__main__":
    main()
