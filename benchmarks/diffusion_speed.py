"""Speed of the diffusion synthesiser: seconds per lesion at 4, 10 and 50 sampling steps.

The network is the default model size (``DiffusionConfig()``: 32^3 crop at 1 mm, channels
32/64/64, one residual block per level, no attention) with *untrained* weights: sampling costs
the same whatever the weights hold, so timing needs no trained model. The host is LiTS-117 when
the shared data is present, else the phantom.

Per lesion, two figures:
- ``sampling_s``: the sampler alone (``synth.diffusion.inpaint`` on one crop), the network's
  forward passes;
- ``insertion_s``: one whole ``host.insert(count=1, method="diffusion")`` call (placement, crop
  resampling, sampling, blending) on a prepared scan.
CPU figures always (torch threads as set by ``--threads``, default all cores); GPU figures when
CUDA is available (after a warm-up, synchronised). The machine and its load average are recorded.

Usage: python benchmarks/diffusion_speed.py [--repeats N] [--threads N] [--out benchmarks/results/diffusion_speed.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LITS117, REPO, machine, write_results  # noqa: E402

STEPS = (4, 10, 50)


def host_scan():
    from synth import prepare_host

    if (LITS117 / "volume-117.nii.gz").is_file():
        from synth.io import load_nifti

        ct, seg = load_nifti(LITS117 / "volume-117.nii.gz"), load_nifti(LITS117 / "segmentation-117.nii.gz")
        return "lits117", prepare_host(ct.array, seg.array, spacing=ct.spacing)
    from synth.phantom import make_phantom

    phantom = make_phantom()
    return "phantom", prepare_host(phantom.volume, phantom.label, spacing=phantom.spacing)


def timed(fn, sync):
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def measure(device: str, repeats: int, host) -> dict:
    import torch

    from synth.diffusion import DiffusionConfig, build_model, inpaint

    model = build_model(DiffusionConfig(), seed=0).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n = model.config.crop_size
    known = torch.zeros((1, 1, n, n, n))
    region = torch.zeros_like(known)
    region[..., n // 4: 3 * n // 4, n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 1
    inpaint(model, known, region, region, seed=0, steps=2)  # warm-up: kernels, allocator
    out = {"parameters_m": round(sum(p.numel() for p in model.unet.parameters()) / 1e6, 3), "steps": {}}
    for steps in STEPS:
        k = repeats if steps < 50 or device == "cuda" else max(1, repeats // 3)
        sampling = [timed(lambda s=s, steps=steps: inpaint(model, known, region, region, seed=s, steps=steps), sync)
                    for s in range(k)]
        insertion = [timed(lambda s=s, steps=steps: host.insert(size="small", count=1, seed=s, method="diffusion",
                                                               model=model,
                                               sampling_steps=steps), sync) for s in range(k)]
        out["steps"][str(steps)] = {
            "repeats": k,
            "sampling_s": round(statistics.median(sampling), 4),
            "insertion_s": round(statistics.median(insertion), 4),
            "per_step_ms": round(1000 * statistics.median(sampling) / steps, 2),
        }
        print(f"{device} {steps:>2} steps: sampling {out['steps'][str(steps)]['sampling_s']:.3f} s, "
              f"insertion {out['steps'][str(steps)]['insertion_s']:.3f} s a lesion")
    return out


def markdown(results: dict) -> str:
    lines = [f"Diffusion synthesiser, default model ({results['model']}), untrained weights; host "
             f"{results['host']}. Seconds per lesion (median).", "",
             "| device | steps | sampling s | whole insertion s | ms a step |", "|---|---|---|---|---|"]
    for device, data in results["devices"].items():
        for steps, row in data["steps"].items():
            lines.append(f"| {device} | {steps} | {row['sampling_s']} | {row['insertion_s']} | {row['per_step_ms']} |")
    m = results["machine"]
    lines += ["", f"CPU: {m['cpu']} ({m['cpu_count']} cores, torch {results['torch_threads']} threads, "
              f"load average {results['load_average']} at the start); GPU: {results.get('gpu') or 'none'}.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "diffusion_speed.json")
    args = parser.parse_args(argv)
    import torch

    from synth.diffusion import DiffusionConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    name, host = host_scan()
    config = DiffusionConfig()
    results = {
        "machine": {**machine(), "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "host": name,
        "model": f"crop {config.crop_size}^3 at {config.spacing_mm:g} mm, channels {list(config.channels)}, "
                 f"{config.num_res_blocks} res block, sampler {config.sampler}",
        "weights": "untrained (timing does not depend on them)",
        "devices": {"cpu": measure("cpu", args.repeats, host)},
    }
    if torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)
        results["devices"]["cuda"] = measure("cuda", max(args.repeats, 10), host)
    write_results(results, args.out, markdown(results))


if __name__ == "__main__":
    np.seterr(all="warn")
    main()
