"""Speed of the device augmentation (augment.device) against the TorchIO path, at 128^3 patches.

On the CPU with ONE torch thread (patches per second per core), it measures, interleaved in one run
so that both paths see the same machine load:
- **torchio**: ``train.loop.augmentation.PatchAugmenter`` (the ``augmentation="torchio"`` path:
  affine, elastic, CT noise, gamma, blur, bias field with ``training_pipeline``'s probabilities)
  on a 160^3 block, one patch after another;
- **device**: ``augment.device.DeviceAugmenter`` with the same probabilities and ranges, on batches
  of 160^3 blocks, in HU.
Each repeat times ``--batches`` batches of ``--batch-size`` patches per path; the figures are
medians over repeats. It also times each device step with every sample running it (ms a patch),
to show where the time goes.

When CUDA is present it also measures, on the GPU, patches per second of the device path and the
GPU's busy share during a short training run (``train_model`` with ``augmentation="device"``,
DynUNet, 128^3 patches, AMP), sampled with ``torch.cuda.utilization()`` (NVML) every 50 ms.

Data: LiTS-117 (128^3 at a nominal 1.4 mm, from ../shared/data), padded with air to the block; the
phantom when it is absent. The figures do not depend on the content.

Usage: python benchmarks/device_augment_speed.py [--repeats N] [--batches N] [--batch-size N]
       [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LITS117, REPO, load_average, machine, write_results  # noqa: E402

from augment.device import DeviceAugmenter, augment_batch  # noqa: E402
from augment.device.intensity import add_ct_noise, apply_bias_field, apply_gamma, gaussian_smooth  # noqa: E402
from augment.device.spatial import resample, sampling_grid  # noqa: E402
from augment.pipelines import AIR_HU, BIAS_ORDER, DEFAULT_WINDOW_HU  # noqa: E402
from train.loop.augmentation import PatchAugmenter, augmentation_block  # noqa: E402

PATCH = (128, 128, 128)
BASELINE_PER_CORE = 0.8  # patches/s a core of the TorchIO pipeline (docs/benchmarks.md)
TARGET_PER_CORE = 8.0  # 10x


def load_scan():
    """(HU volume, label, spacing mm) of LiTS-117, or of the phantom when it is absent."""
    if (LITS117 / "volume-117.nii.gz").exists():
        import nibabel as nib

        volume = nib.load(LITS117 / "volume-117.nii.gz")
        label = nib.load(LITS117 / "segmentation-117.nii.gz")
        spacing = tuple(float(z) for z in volume.header.get_zooms()[:3])
        return (np.asarray(volume.dataobj, dtype=np.float32), np.asarray(label.dataobj, dtype=np.uint8),
                spacing, "lits117")
    from synth.phantom import make_phantom

    phantom = make_phantom(seed=0)
    return phantom.volume.astype(np.float32), phantom.label.astype(np.uint8), tuple(phantom.spacing), "phantom"


def block_of(volume, label, block):
    """The centre ``block`` of the scan, padded with air (label 0) where the scan is smaller."""
    pads = [(max(0, b - n) // 2, max(0, b - n) - max(0, b - n) // 2) for n, b in zip(volume.shape, block)]
    volume = np.pad(volume, pads, constant_values=AIR_HU)
    label = np.pad(label, pads, constant_values=0)
    start = [(n - b) // 2 for n, b in zip(volume.shape, block)]
    box = tuple(slice(s, s + b) for s, b in zip(start, block))
    return np.ascontiguousarray(volume[box]), np.ascontiguousarray(label[box])


def time_torchio(augmenter, volume, label, spacing, patches, seed):
    """(patches per wall second, patches per CPU second of the process)."""
    rng = np.random.default_rng(seed)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(patches):
        augmenter(volume, label, spacing, rng)
    return patches / (time.perf_counter() - start), patches / (time.process_time() - cpu)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_device(augmenter, images, labels, spacing, batches, seed):
    """(patches per wall second, patches per CPU second of the process)."""
    device = images.device
    synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    for index in range(batches):
        augmenter(images, labels, spacing, torch.Generator().manual_seed(seed + index))
    synchronize(device)
    patches = batches * images.shape[0]
    return patches / (time.perf_counter() - start), patches / (time.process_time() - cpu)


def device_steps(images, labels, spacing, repeats):
    """Median ms a patch of each device step with every sample running it."""
    batch = images.shape[0]
    augmenter = DeviceAugmenter(PATCH, DEFAULT_WINDOW_HU)
    params = augmenter.draw(batch, torch.Generator().manual_seed(0))
    on = torch.ones(batch, dtype=torch.bool)
    params = params.replace(affine=on, elastic=on, noise=on, gamma=on, blur=on, bias=on)
    rows = torch.arange(batch)
    spacing_rows = torch.tensor([spacing] * batch, dtype=torch.float64)
    padded = tuple(n + 2 for n in images.shape[2:])
    generator = torch.Generator(device=images.device).manual_seed(0)
    patch_hu = images[..., 16:144, 16:144, 16:144].reshape(batch, *PATCH).contiguous()
    steps = {
        "grid (affine + elastic)": lambda: sampling_grid(params, rows, spacing_rows, padded, PATCH, images.device),
        "affine only grid": lambda: sampling_grid(params.replace(elastic=~on), rows, spacing_rows, padded, PATCH,
                                                  images.device),
        "resample image + label": None,
        "ct noise": lambda: add_ct_noise(patch_hu, params.noise_std_hu, params.noise_correlation_mm,
                                         spacing_rows, generator),
        "gamma": lambda: apply_gamma(patch_hu, params.log_gamma, DEFAULT_WINDOW_HU),
        "blur": lambda: gaussian_smooth(patch_hu, params.blur_std_mm / spacing_rows),
        "bias field": lambda: apply_bias_field(patch_hu, params.bias_coefficients, BIAS_ORDER),
        "whole (every step on)": lambda: augment_batch(images, labels, spacing, params, PATCH),
    }
    grid = sampling_grid(params, rows, spacing_rows, padded, PATCH, images.device)
    steps["resample image + label"] = lambda: resample(images, labels, grid, AIR_HU)
    out = {}
    for name, step in steps.items():
        times = []
        for _ in range(repeats):
            synchronize(images.device)
            start = time.perf_counter()
            step()
            synchronize(images.device)
            times.append(time.perf_counter() - start)
        out[name] = round(1000 * statistics.median(times) / batch, 1)
    return out


def gpu_busy_share(volume, label, spacing, *, steps=48, warmup=8, device="cuda", patch=PATCH,
                   utilisation=None):
    """Share of time the GPU is busy while ``train_model`` trains a DynUNet on ``patch`` patches
    with device augmentation (batch 2, AMP, DataLoader workers cutting the blocks).

    ``utilisation()`` (default ``torch.cuda.utilization``, NVML: the share of the last sample
    period in which a kernel ran) is polled every 50 ms with a timestamp; the share is the mean
    over the last ``steps - warmup`` steps, whose window is read from the run's per-step times
    (the first steps build kernels and fill the loader).
    """
    import tempfile

    from synth.cases import Case
    from train.loop import TrainConfig, train_model

    poll = utilisation or torch.cuda.utilization
    case = Case("benchmark", volume, label, spacing, np.diag([*spacing, 1.0]), source="benchmark")
    workers = max(1, min(8, (os.cpu_count() or 2) - 2))
    config = TrainConfig(patch_size=patch, batch_size=2, steps=steps, augmentation="device", amp=True,
                         device=device, num_workers=workers, checkpoint_every=10**6)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), float(poll())))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as folder:
        result = train_model(config, [case], out_dir=Path(folder) / "run", progress=False)
        end = time.perf_counter()
    stop.set()
    thread.join()
    measured = sum(row["seconds"] for row in result.history[warmup:])
    window = [value for t, value in samples if end - measured <= t <= end]
    return {"steps": result.steps, "measured_steps": steps - warmup, "measured_seconds": round(measured, 2),
            "num_workers": workers, "utilisation_samples": len(window),
            "busy_share": round(statistics.mean(window) / 100.0, 3) if window else None,
            "patches_per_s": round((steps - warmup) * config.batch_size / measured, 2)}


def markdown(results) -> str:
    cpu = results["cpu_one_thread"]
    lines = ["| path | patches per CPU second (per core, median) | CPU ms a patch | patches per wall second |",
             "|---|---|---|---|"]
    for path in ("torchio", "device"):
        rate = cpu[f"{path}_patches_per_s"]
        lines.append(f"| {path} | {rate} | {round(1000 / rate)} | {cpu[f'{path}_wall_patches_per_s']} |")
    lines += ["", f"device / torchio: {cpu['ratio']}x; against the documented 0.8 patches/s a core: "
              f"{cpu['vs_baseline']}x (target {TARGET_PER_CORE} patches/s a core: "
              f"{'met' if cpu['meets_target'] else 'not met'}).", "",
              f"Load average (1, 5, 15 min) at start and end: {results['machine']['load_average_1_5_15_min']}.",
              "", "Device steps, wall ms a patch with every sample running the step (one thread):", "",
              "| step | ms a patch |", "|---|---|"]
    lines += [f"| {name} | {ms} |" for name, ms in cpu["device_step_ms"].items()]
    if "cuda" in results:
        gpu = results["cuda"]
        lines += ["", f"GPU ({gpu['name']}): {gpu['device_patches_per_s']} patches/s (batch {gpu['batch_size']}); "
                  f"training run busy share {gpu['training'].get('busy_share')}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=2, help="batches per path and repeat")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "device_augment_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_start = load_average()

    volume, label, spacing, scan = load_scan()
    block = augmentation_block(PATCH)
    block_hu, block_label = block_of(volume, label, block)
    torchio = PatchAugmenter(PATCH, DEFAULT_WINDOW_HU)
    device = DeviceAugmenter(PATCH, DEFAULT_WINDOW_HU)
    images = torch.from_numpy(block_hu)[None, None].repeat(args.batch_size, 1, 1, 1, 1)
    labels = torch.from_numpy(block_label)[None, None].repeat(args.batch_size, 1, 1, 1, 1)
    # First touch of every code path of both.
    torchio(block_hu, block_label, spacing, np.random.default_rng(0))
    device(images, labels, spacing, torch.Generator().manual_seed(0))

    # Per core: patches per CPU second of the process (all its threads: SimpleITK, which TorchIO
    # resamples with, runs threads of its own), robust to other jobs on a shared machine; wall
    # figures beside them.
    cpu_rates: dict[str, list[float]] = {"torchio": [], "device": []}
    wall_rates: dict[str, list[float]] = {"torchio": [], "device": []}
    patches = args.batches * args.batch_size
    for repeat in range(args.repeats):
        seed = 1000 * (repeat + 1)
        measured = {"torchio": time_torchio(torchio, block_hu, block_label, spacing, patches, seed),
                    "device": time_device(device, images, labels, spacing, args.batches, seed)}
        for path, (wall, cpu_rate) in measured.items():
            wall_rates[path].append(wall)
            cpu_rates[path].append(cpu_rate)
        print(f"repeat {repeat}: patches per CPU second torchio {cpu_rates['torchio'][-1]:.3f}, device "
              f"{cpu_rates['device'][-1]:.3f}; per wall second {wall_rates['torchio'][-1]:.3f}, "
              f"{wall_rates['device'][-1]:.3f}", flush=True)
    torchio_rate = statistics.median(cpu_rates["torchio"])
    device_rate = statistics.median(cpu_rates["device"])
    cpu = {"torchio_patches_per_s": round(torchio_rate, 3), "device_patches_per_s": round(device_rate, 3),
           "measure": "patches per CPU second of the process (one torch thread), median over repeats",
           "torchio_repeats": [round(r, 3) for r in cpu_rates["torchio"]],
           "device_repeats": [round(r, 3) for r in cpu_rates["device"]],
           "torchio_wall_patches_per_s": round(statistics.median(wall_rates["torchio"]), 3),
           "device_wall_patches_per_s": round(statistics.median(wall_rates["device"]), 3),
           "ratio": round(device_rate / torchio_rate, 2), "vs_baseline": round(device_rate / BASELINE_PER_CORE, 2),
           "meets_target": device_rate >= TARGET_PER_CORE,
           "device_step_ms": device_steps(images, labels, spacing, args.repeats)}
    print(cpu, flush=True)
    results = {"machine": {**machine(), "torch": torch.__version__, "torch_threads": 1},
               "settings": {"scan": scan, "patch_size": list(PATCH), "block_size": list(block),
                            "spacing_mm": list(spacing), "batch_size": args.batch_size, "batches": args.batches,
                            "repeats": args.repeats},
               "cpu_one_thread": cpu}
    results["machine"]["load_average_1_5_15_min"] = {"start": load_start, "end": load_average()}
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        batch = 4
        gpu_images = torch.from_numpy(block_hu)[None, None].repeat(batch, 1, 1, 1, 1).to(gpu)
        gpu_labels = torch.from_numpy(block_label)[None, None].repeat(batch, 1, 1, 1, 1).to(gpu)
        time_device(device, gpu_images, gpu_labels, spacing, 2, 0)  # warm-up
        gpu_rate = statistics.median(time_device(device, gpu_images, gpu_labels, spacing, 10, 100 * r)
                                     for r in range(args.repeats))
        results["cuda"] = {"name": torch.cuda.get_device_name(gpu), "batch_size": batch,
                           "device_patches_per_s": round(gpu_rate, 1),
                           "device_step_ms": device_steps(gpu_images, gpu_labels, spacing, args.repeats),
                           "training": gpu_busy_share(volume, label, spacing)}
        print(results["cuda"], flush=True)
    write_results(results, args.out, markdown(results))


if __name__ == "__main__":
    main()
