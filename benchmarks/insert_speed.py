"""Speed and memory of the heuristic insertion, alone or side by side with the reference heuristic.

Scans: the built-in phantom at 0.8 x 0.8 x 2.5 mm (int16), 512 x 512 x 100 and 512 x 512 x 300
(the same 1.3 L liver; the taller scan adds chest and pelvis), and the real TotalSegmentator
example case. Per size class (tiny 3-10 lesions a call, small 3-10, medium 2-5, large 1-3, and
"mix", 11-28 lesions of every size, as the reference's classes; see below):
- **cold call**: ``insert_tumor`` from scratch (validation, preparation and insertion), returning
  new arrays (``pure``), and writing into the caller's arrays (``in place``, ``out=``);
- **warm, a lesion**: on a prepared scan that has taken about 150 lesions already, a call of 5
  lesions (tiny, small) or of the class's count, divided by its lesions: in place, the scan put back
  after each call (``HostScan.restore``, included), and returning new arrays (one copy of the scan
  a call, included);
- "mix" is the reference's own mix, 3-10 tiny, 5-10 small, 2-5 medium and 1-3 large lesions in
  one call; ours takes one size class a call, so its "mix" is four calls on one prepared scan,
  the later ones avoiding the earlier ones' lesions (the first copies the scan, unless in place).
  "real sizes" is ours alone: 11-28 lesions drawn from the size mix of real lesions (``size="mix"``);
- the **floor**: one copy of the liver's bounding box (volume and label), the least any
  synthesiser that writes into the liver must pay once per call;
- peak memory allocated during a cold call (tracemalloc) beyond the returned arrays.

``--reference PATH`` also runs the public reference heuristic (SyntheticTumors,
``TumorGenerated/utils.py``, given by its path; its licence does not allow copying it here) in the
same process, its calls interleaved with ours on copies of the same scan: its ``SynthesisTumor``
works in place inside the liver's box, like ours with ``out=``. Its start-up (one of the ten
420 x 300 x 320 textures it draws at start-up) is timed once. Its lesion count per call is fixed
by class; for the warm per-lesion figures of tiny and small lesions it is held at 5, as ours. It
needs numpy < 2, scipy, scikit-image, elasticdeform and opencv-python-headless: run this script
in a virtual environment that has them and tumorsynth's own dependencies.

Usage: python benchmarks/insert_speed.py [--repeats N] [--reference PATH/TO/TumorGenerated/utils.py]
       [--out benchmarks/results/insert_speed.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import REPO, TOTALSEG, machine, write_results  # noqa: E402

from synth import LesionPlacementError, insert_tumor, prepare_host  # noqa: E402
from synth.phantom import make_phantom  # noqa: E402

COUNTS = {"tiny": (3, 10), "small": (3, 10), "medium": (2, 5), "large": (1, 3), "mix": (11, 28),
          "real sizes": (11, 28)}
# The reference's "mix", class by class (its counts); ours inserts them with one call per class.
MIX_CLASSES = (("tiny", (3, 10)), ("small", (5, 10)), ("medium", (2, 5)), ("large", (1, 3)))
WARM_COUNT = {"tiny": 5, "small": 5}  # lesions a warm call where the target is set at 5 a call
SPACING = (0.8, 0.8, 2.5)


def ms(values) -> float:
    return round(statistics.median(values) * 1000, 2)


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call of ``fn``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


# --- the reference, loaded from the user's path ---------------------------------------------------


class _FixedCount:
    """The ``random`` module as the reference sees it, but a class's lesion count is fixed.

    The reference draws its count with ``random.randint(3, 10)`` for tiny and small lesions (and
    never with those bounds for anything else); every other call goes to the real module.
    """

    def __init__(self, count: int):
        self.count = count

    def randint(self, low, high):
        return self.count if (low, high) == (3, 10) else random.randint(low, high)

    def __getattr__(self, name):
        return getattr(random, name)


class Reference:
    """SyntheticTumors' ``SynthesisTumor`` with one of its textures, counting the lesions it draws."""

    def __init__(self, path: Path):
        spec = importlib.util.spec_from_file_location("reference_tumor_generated", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"--reference {path}: not a Python file")
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        np.random.seed(0)
        random.seed(0)
        # One of the ten textures its transform draws at start-up (sigma_a 3..15, sigma_b 4 or 7).
        self.startup_s, self.texture = timed(self.module.get_predefined_texture, (420, 300, 320), 9, 4)
        self.lesions = 0
        select = self.module.random_select

        def counting_select(mask):
            self.lesions += 1
            return select(mask)

        self.module.random_select = counting_select

    def call(self, volume, label, size, seed, *, count=None):
        """Time one call on copies of the scan (it writes in place); returns (seconds, lesions)."""
        volume, label = volume.copy(), label.copy()
        random.seed(seed)
        np.random.seed(seed)
        self.module.random = _FixedCount(count) if count is not None else random
        self.lesions = 0
        dt, _ = timed(self.module.SynthesisTumor, volume, label, size, self.texture)
        return dt, self.lesions


# --- ours -------------------------------------------------------------------------------------------


def insert_mix(host, seed):
    """The reference's mix, in place on the host's arrays: one call per class, one generator."""
    rng = np.random.default_rng(seed)
    results = []
    try:
        for size, count in MIX_CLASSES:
            results.append(host.insert(size=size, count=count, rng=rng, out=(host.volume, host.label)))
    except LesionPlacementError:
        for result in reversed(results):  # no lesion of a failed mix stays in the scan
            host.restore(result)
        raise
    return results


def cold_call(volume, label, spacing, size, count, seed, *, in_place):
    """``insert_tumor`` from scratch: new arrays (pure) or the caller's (in place)."""
    if size == "mix":
        if not in_place:
            volume, label = volume.copy(), label.copy()  # what a pure call returns
        return insert_mix(prepare_host(volume, label, spacing=spacing), seed)
    our_size = "mix" if size == "real sizes" else size
    return insert_tumor(volume, label, spacing=spacing, size=our_size, count=count, seed=seed,
                        out=(volume, label) if in_place else None)


def warm_in_place(host, size, count, seed):
    """A warm call in place, the scan put back; returns (seconds, lesions)."""
    start = time.perf_counter()
    if size == "mix":
        results = insert_mix(host, seed)
    else:
        results = [host.insert(size="mix" if size == "real sizes" else size, count=count, seed=seed,
                               out=(host.volume, host.label))]
    for result in reversed(results):
        host.restore(result)
    return time.perf_counter() - start, sum(len(r.lesions) for r in results)


def warm_up(host, volume, label, calls=40):
    """Touch the liver widely so lazily built vessel blocks exist, as after a few epochs."""
    for seed in range(calls):
        try:
            host.restore(host.insert(size="mix", count=(3, 6), seed=50_000 + seed, out=(volume, label)))
        except LesionPlacementError:
            pass


def bench_scan(name, volume, label, spacing, repeats, reference=None, classes=COUNTS):
    print(f"{name}: shape {volume.shape}, spacing {spacing}", flush=True)
    volume, label = volume.copy(), label.copy()
    scan = {"shape": list(volume.shape), "spacing_mm": list(spacing), "dtype": str(volume.dtype),
            "scan_mb": round((volume.nbytes + label.nbytes) / 2**20, 1), "classes": {}}
    scan["prepare_ms"] = ms([timed(lambda: prepare_host(volume, label, spacing=spacing))[0] for _ in range(repeats)])
    host = prepare_host(volume, label, spacing=spacing)
    box = host.box
    scan["liver_box"] = [[b.start, b.stop] for b in box]
    scan["floor_ms"] = ms([timed(lambda: (volume[box].copy(), label[box].copy()))[0] for _ in range(repeats)])
    scan["copy_scan_ms"] = ms([timed(lambda: (volume.copy(), label.copy()))[0] for _ in range(repeats)])
    warm_up(host, volume, label)
    for size, count in classes.items():
        entry = _bench_class(host, volume, label, spacing, size, count, repeats, reference)
        scan["classes"][size] = entry
        print(f"  {size:6s} {entry}", flush=True)
    return scan


def _bench_class(host, volume, label, spacing, size, count, repeats, reference):
    cold_pure, cold_in_place, ref_cold, ref_lesions = [], [], [], []
    warm_in_place_s, warm_pure, ref_warm = [], [], []
    warm_count = WARM_COUNT.get(size, count)
    work = (volume.copy(), label.copy())
    for seed in range(repeats):
        try:
            cold_pure.append(timed(cold_call, volume, label, spacing, size, count, seed, in_place=False)[0])
            work[0][...], work[1][...] = volume, label
            cold_in_place.append(timed(cold_call, work[0], work[1], spacing, size, count, seed, in_place=True)[0])
            dt, lesions = warm_in_place(host, size, warm_count, seed)
            warm_in_place_s.append(dt / lesions)
            if size != "mix":  # several calls cannot share new arrays: no pure warm mix
                dt, result = timed(host.insert, size="mix" if size == "real sizes" else size, count=warm_count,
                                   seed=seed)
                warm_pure.append(dt / len(result.lesions))
        except LesionPlacementError:
            continue
        if reference is not None and size != "real sizes":
            dt, n = reference.call(volume, label, size, seed)
            ref_cold.append(dt)
            ref_lesions.append(n)
            if size in WARM_COUNT:
                dt, n = reference.call(volume, label, size, seed, count=WARM_COUNT[size])
            ref_warm.append(dt / max(n, 1))
    entry = {"count": list(count), "warm_count": warm_count if isinstance(warm_count, int) else list(warm_count),
             "cold_call_ms": {"pure": ms(cold_pure), "in_place": ms(cold_in_place)},
             "warm_per_lesion_ms": {"in_place": ms(warm_in_place_s), "pure": ms(warm_pure) if warm_pure else None}}
    if ref_cold:
        entry["reference"] = {"cold_call_ms": ms(ref_cold), "per_lesion_ms": ms(ref_warm),
                              "lesions_a_call": round(statistics.mean(ref_lesions), 1)}
        entry["speedup"] = {
            "cold_in_place": round(ms(ref_cold) / ms(cold_in_place), 1),
            "cold_pure": round(ms(ref_cold) / ms(cold_pure), 1),
            "warm_per_lesion_in_place": round(ms(ref_warm) / ms(warm_in_place_s), 1),
            "warm_per_lesion_pure": round(ms(ref_warm) / ms(warm_pure), 1) if warm_pure else None,
        }
    if size not in ("mix", "real sizes"):
        entry["memory"] = peak_memory(volume, label, spacing, size, count)
    return entry


def peak_memory(volume, label, spacing, size, count):
    tracemalloc.start()
    insert_tumor(volume, label, spacing=spacing, size=size, count=count, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outputs = volume.nbytes + label.size  # the returned volume and uint8 label
    return {"peak_mb": round(peak / 2**20, 1), "working_mb": round((peak - outputs) / 2**20, 1)}


def scaling(repeats):
    """Warm in-place time a small lesion as the scan grows at a fixed spacing: it should stay flat."""
    rows = []
    for shape in [(256, 256, 50), (512, 512, 100), (512, 512, 300), (640, 640, 400)]:
        case = make_phantom(shape=shape, spacing=SPACING, seed=1)
        volume, label = case.volume, case.label
        host = prepare_host(volume, label, spacing=case.spacing)
        warm_up(host, volume, label, calls=20)
        per_lesion = []
        for seed in range(repeats):
            dt, result = timed(host.insert, size="small", count=5, seed=seed, out=(volume, label))
            dt_restore, _ = timed(host.restore, result)
            per_lesion.append((dt + dt_restore) / len(result.lesions))
        rows.append({"shape": list(shape), "voxels_millions": round(float(np.prod(shape)) / 1e6, 1),
                     "small_lesion_in_place_ms": ms(per_lesion)})
        print(f"  scaling {shape}: {rows[-1]}", flush=True)
    return rows


# --- report ---------------------------------------------------------------------------------------


def markdown(results) -> str:
    """The tables docs/benchmarks.md quotes."""
    lines = []
    if "reference" in results:
        ref = results["reference"]
        lines += [f"Reference: `{ref['name']}`, start-up {ref['startup_s']} s for one of its ten textures.", ""]
    for name, scan in results["scans"].items():
        lines += [f"**{name}**: {' x '.join(map(str, scan['shape']))} voxels at "
                  f"{' x '.join(f'{s:g}' for s in scan['spacing_mm'])} mm, {scan['dtype']}, {scan['scan_mb']} MB "
                  f"with its label; preparation {scan['prepare_ms']} ms; floor (one copy of the liver's box) "
                  f"{scan['floor_ms']} ms; one copy of the whole scan {scan['copy_scan_ms']} ms", ""]
        with_ref = any("reference" in e for e in scan["classes"].values())
        head = ("| class | lesions a call | cold ms, in place / pure | warm ms a lesion, in place / pure "
                "| working MB |")
        rule = "|---|---|---|---|---|"
        if with_ref:
            head += " reference cold ms | reference ms a lesion | speed-up cold, in place / pure " \
                    "| speed-up a lesion, in place / pure |"
            rule += "---|---|---|---|"
        lines += [head, rule]
        for size, e in scan["classes"].items():
            row = (f"| {size} | {e['count'][0]}-{e['count'][1]} (warm {e['warm_count']}) | "
                   f"{e['cold_call_ms']['in_place']} / {e['cold_call_ms']['pure']} | "
                   f"{e['warm_per_lesion_ms']['in_place']} / {e['warm_per_lesion_ms']['pure'] or '-'} | "
                   f"{e['memory']['working_mb'] if 'memory' in e else '-'} |")
            if "reference" in e:
                r, s = e["reference"], e["speedup"]
                pure = f"{s['warm_per_lesion_pure']}x" if s["warm_per_lesion_pure"] else "-"
                row += (f" {r['cold_call_ms']} | {r['per_lesion_ms']} | {s['cold_in_place']}x / {s['cold_pure']}x | "
                        f"{s['warm_per_lesion_in_place']}x / {pure} |")
            elif with_ref:
                row += " - | - | - | - |"
            lines.append(row)
        lines.append("")
    if results.get("scaling_small_lesions"):
        lines += ["| scan (0.8 x 0.8 x 2.5 mm) | voxels (M) | warm in-place ms a small lesion |", "|---|---|---|"]
        for row in results["scaling_small_lesions"]:
            lines.append(f"| {' x '.join(map(str, row['shape']))} | {row['voxels_millions']} "
                         f"| {row['small_lesion_in_place_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--reference", type=Path, default=None,
                        help="path of the reference's TumorGenerated/utils.py, to run side by side")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scan-size sweep")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "insert_speed.json")
    args = parser.parse_args(argv)
    if args.reference is not None and not args.reference.is_file():
        parser.error(f"--reference {args.reference}: no such file (give the path of TumorGenerated/utils.py)")

    reference = Reference(args.reference) if args.reference is not None else None
    results: dict = {"machine": machine(), "repeats": args.repeats, "scans": {}}
    if reference is not None:
        results["reference"] = {"name": "SyntheticTumors TumorGenerated/utils.py SynthesisTumor",
                                "startup_s": round(reference.startup_s, 1)}
        print(f"reference loaded; one texture took {reference.startup_s:.1f} s", flush=True)
    for depth in (100, 300):
        phantom = make_phantom(shape=(512, 512, depth), spacing=SPACING, seed=0)
        results["scans"][f"phantom_512x512x{depth}"] = bench_scan(
            f"phantom 512x512x{depth}", phantom.volume, phantom.label, phantom.spacing, args.repeats, reference)
    if TOTALSEG.exists():
        import nibabel as nib

        ct = nib.load(TOTALSEG / "ct.nii.gz")
        liver = nib.load(TOTALSEG / "liver.nii.gz")
        results["scans"]["totalseg_example"] = bench_scan(
            "totalseg_example", np.asanyarray(ct.dataobj), np.asanyarray(liver.dataobj).astype(np.uint8),
            tuple(float(z) for z in ct.header.get_zooms()), args.repeats,
            classes={k: v for k, v in COUNTS.items() if k not in ("mix", "real sizes")})
    else:
        print(f"skipping the real case: {TOTALSEG} not found")
    if not args.no_scaling:
        results["scaling_small_lesions"] = scaling(max(5, args.repeats // 2))
    results["machine_after"] = machine()  # the load average at the end, beside the one at the start
    write_results(results, args.out, markdown(results))


if __name__ == "__main__":
    main()
