"""docs/figures/augment_steps.png: LiTS-117 through the training pipeline, one panel per step.

Each step is forced on (probability 1) with a visible setting inside its documented range, and
applied to the previous column's output, so each panel shows what one step adds. All panels
show the same axial slice (the one with the most inserted tumour), in the abdominal window -160 to 240 HU (the last CT
panel is the network's [0, 1] input, shown on 0 to 1), plus a panel of the insertion's change in HU; tumour
outlines (label 2) in orange.

    python docs/figures/make_augment_figure.py [--out docs/figures/augment_steps.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchio as tio  # noqa: E402

from augment import HUWindow, RandomCTNoise, RandomTumorInsertion  # noqa: E402
from augment.pipelines import LiverCrop, WindowScale  # noqa: E402

HERE = Path(__file__).resolve().parent
LITS117 = HERE.parents[1].parent / "shared" / "data" / "lits117"
WINDOW_HU = (-160.0, 240.0)
CROP = (112, 112, 64)


def steps():
    """(title, transform) per column; ranges as in training_pipeline, values chosen to be seen."""
    return [
        ("crop\n112x112x64 vox", LiverCrop(CROP, label_name="seg")),
        ("affine\nz-rot 15°, scale 1.1", tio.Affine(scales=(1.1, 1.1, 1.0), degrees=(0, 0, 15),
                                                     translation=(0, 0, 0), default_pad_value=-1024)),
        ("elastic\n≤ 6 mm", tio.RandomElasticDeformation(num_control_points=7, max_displacement=(6, 6, 3))),
        ("tumour insertion\n3 lesions 8-14 mm", RandomTumorInsertion(size=(8, 14), count=3,
                                                                     phenotype="hypodense", on_failure="raise")),
        ("CT noise\n15 HU, 1 mm", RandomCTNoise(std_hu=(15, 15), correlation_mm=(1.0, 1.0))),
        ("gamma 0.74\n(window scale)", tio.Compose([WindowScale(WINDOW_HU), tio.Gamma(gamma=0.74),
                                                    WindowScale(WINDOW_HU, to_hu=True)])),
        ("blur\nσ 1 mm", tio.RandomBlur(std=(1.0, 1.0))),
        ("bias field\ncoeff. 0.05", tio.RandomBiasField(coefficients=(0.05, 0.05), order=2)),
        ("HU window\n→ [0, 1]", HUWindow(WINDOW_HU)),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "augment_steps.png")
    args = parser.parse_args(argv)
    if not (LITS117 / "volume-117.nii.gz").exists():
        raise SystemExit(f"LiTS-117 not found in {LITS117}")
    subject = tio.Subject(ct=tio.ScalarImage(LITS117 / "volume-117.nii.gz"),
                          seg=tio.LabelMap(LITS117 / "segmentation-117.nii.gz"))
    torch.manual_seed(3)
    columns = []
    for title, transform in steps():
        subject = transform(subject)
        columns.append((title, subject.ct.data[0].float().numpy().copy(), subject.seg.data[0].numpy().copy()))

    # The slice with the most newly inserted tumour voxels, so the insertion column shows lesions.
    before, after = columns[2][2], columns[3][2]
    new_tumor = (after == 2) & (before != 2)
    z = int(np.argmax(new_tumor.sum(axis=(0, 1))))
    fig, grid = plt.subplots(2, 5, figsize=(11.5, 6.4), dpi=140)
    axes = grid.ravel()
    for index, (ax, (title, ct, seg)) in enumerate(zip(axes, columns)):
        last = index == len(columns) - 1
        low, high = (0.0, 1.0) if last else WINDOW_HU
        # Axial slice with anterior up and the patient's right on the left (radiological view).
        ax.imshow(np.rot90(ct[:, :, z])[:, ::-1], cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        ax.contour(np.rot90(seg[:, :, z] == 2)[:, ::-1].astype(float), levels=[0.5], colors="orange",
                   linewidths=0.6)
        ax.set_title(title, fontsize=8.5)
        ax.set_xticks([])
        ax.set_yticks([])
    # Last panel: what the insertion changed, in HU, on the same slice.
    change = columns[3][1][:, :, z] - columns[2][1][:, :, z]
    image = axes[-1].imshow(np.rot90(change)[:, ::-1], cmap="RdBu_r", vmin=-120, vmax=120)
    axes[-1].set_title("insertion: change in HU\n(-120 to 120)", fontsize=8.5)
    axes[-1].set_xticks([])
    axes[-1].set_yticks([])
    fig.colorbar(image, ax=axes[-1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    fig.suptitle(f"LiTS-117 through the training pipeline, one step per panel, each applied to the previous "
                 f"panel's output\naxial slice {z} of the crop, window -160 to 240 HU (last CT panel: 0 to 1); "
                 f"orange: tumour label", fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 0.93), h_pad=2.5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
