"""Gallery for docs/synthesis.md: synthetic lesions beside real LiTS-117 tumours, same window.

Rows: real LiTS-117 tumours per size class; synthetic lesions of each size class inserted into
LiTS-117's tumour-free liver; each phenotype; lesions inserted into the TotalSegmentator example
(3 mm voxels). Every panel is an axial slice through the lesion centre, 3x the lesion diameter wide
(at least 40 mm), shown at the same window. The lower half repeats the panels with the lesion's
outline.

Usage: python docs/figures/make_gallery.py  (needs ../shared/data beside the repository)
"""

from __future__ import annotations

from pathlib import Path

import cc3d
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from synth import prepare_host  # noqa: E402
from synth.heuristic.size import SIZE_CLASSES, size_class  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
WINDOW = (-60, 190)
PHENOTYPE_SIZES = {"hypodense": "medium", "isodense": "medium", "hyperdense": "medium",
                   "rim-enhancing": (15, 22), "necrotic": (18, 26)}


def load(path):
    img = nib.load(path)
    return np.asanyarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


def crop(volume, mask, center, diameter_mm, spacing):
    half = [int(np.ceil(max(40.0, 3 * diameter_mm) / 2 / s)) for s in spacing[:2]]
    x0, y0 = max(center[0] - half[0], 0), max(center[1] - half[1], 0)
    sl = (slice(x0, center[0] + half[0] + 1), slice(y0, center[1] + half[1] + 1), center[2])
    return volume[sl].T, mask[sl].T, spacing[:2]


def real_lesions(volume, label, spacing):
    """One real tumour per size class, the component closest to the class's middle."""
    components = cc3d.connected_components(label == 2, connectivity=26)
    stats = cc3d.statistics(components)
    voxel = float(np.prod(spacing))
    picks = {}
    for index in range(1, len(stats["voxel_counts"])):
        diameter = (6 * stats["voxel_counts"][index] * voxel / np.pi) ** (1 / 3)
        name = size_class(diameter)
        low, high = SIZE_CLASSES[name]
        score = abs(np.log(diameter) - np.log((low * high) ** 0.5))
        if name not in picks or score < picks[name][0]:
            center = np.round(stats["centroids"][index]).astype(int)
            picks[name] = (score, diameter, tuple(center), components == index)
    return {name: picks[name][1:] for name in SIZE_CLASSES if name in picks}


def synthetic(host, size, phenotype, seed):
    result = host.insert(size=size, count=1, phenotype=phenotype, seed=seed, mass_effect=True)
    lesion = result.lesions[0]
    box = tuple(slice(*b) for b in lesion.bbox)
    own = np.zeros(result.label.shape, bool)
    own[box] = (result.label[box] == 2) & (host.label[box] != 2)
    return result.volume, lesion.diameter_mm, lesion.center_voxel, own, lesion


def main():
    volume, spacing = load(DATA / "lits117" / "volume-117.nii.gz")
    label, _ = load(DATA / "lits117" / "segmentation-117.nii.gz")
    ts_volume, ts_spacing = load(DATA / "totalseg_example" / "ct.nii.gz")
    ts_liver, _ = load(DATA / "totalseg_example" / "liver.nii.gz")
    host = prepare_host(volume, label, spacing=spacing)
    ts_host = prepare_host(ts_volume, ts_liver, spacing=ts_spacing)

    rows = [("real LiTS-117", [(f"real {n}, {d:.1f} mm", volume, m, c, d, spacing)
                                for n, (d, c, m) in real_lesions(volume, label, spacing).items()])]
    synth_row = []
    for k, name in enumerate(SIZE_CLASSES):
        v, d, c, m, _ = synthetic(host, name, "hypodense", seed=10 + k)
        synth_row.append((f"synthetic {name}, {d:.1f} mm", v, m, c, d, spacing))
    rows.append(("synthetic in LiTS-117", synth_row))
    pheno_row = []
    for k, (name, size) in enumerate(PHENOTYPE_SIZES.items()):
        v, d, c, m, _ = synthetic(host, size, name, seed=30 + k)
        pheno_row.append((f"{name}, {d:.1f} mm", v, m, c, d, spacing))
    rows.append(("phenotypes in LiTS-117", pheno_row))
    ts_row = []
    for k, name in enumerate(SIZE_CLASSES):
        v, d, c, m, _ = synthetic(ts_host, name, "mix", seed=50 + k)
        ts_row.append((f"TotalSeg {name}, {d:.1f} mm", v, m, c, d, ts_spacing))
    rows.append(("synthetic in TotalSegmentator (3 mm)", ts_row))

    columns = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(2 * len(rows), columns, figsize=(2.6 * columns, 2.75 * 2 * len(rows)))
    for r, (_title, panels) in enumerate(rows):
        for col in range(columns):
            for half in (0, 1):
                ax = axes[r + half * len(rows), col]
                ax.axis("off")
                if col >= len(panels):
                    continue
                title, v, m, c, d, sp = panels[col]
                image, mask, (sx, sy) = crop(v, m, c, d, sp)
                extent = (0, image.shape[1] * sx, 0, image.shape[0] * sy)
                ax.imshow(image, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], origin="lower",
                          extent=extent, interpolation="nearest")
                if half:
                    ax.contour(mask.astype(float), [0.5], colors="#ff3b30", linewidths=0.8,
                               origin="lower", extent=extent)
                ax.set_title(title, fontsize=8)
    fig.suptitle(f"Real and synthetic liver lesions, axial slices, window [{WINDOW[0]}, {WINDOW[1]}] HU "
                 f"(W {WINDOW[1] - WINDOW[0]} / L {(WINDOW[0] + WINDOW[1]) / 2:g})\nrows: "
                 + "; ".join(r[0] for r in rows) + "\n(lower half: the same panels with outlines)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    out = REPO / "docs" / "figures" / "gallery.png"
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
