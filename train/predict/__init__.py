"""Use a trained model on new scans: NIfTI in, a 0/1/2 label map on the same grid out.

>>> from train.predict import predict_image
>>> predict_image("runs/real/seed-0/fold-0", "ct.nii.gz", "pred.nii.gz")  # doctest: +SKIP

For each scan: read it (reoriented to closest canonical RAS, as the model was trained), resample
it to the voxel size recorded in the model file (linear), predict (sliding window, or slice by
slice for the 2.5D model), resample the labels back to the scan's grid (nearest neighbour),
post-process (:func:`train.postprocess.postprocess`: tumour only within the liver, the model's own
largest liver component or the given ``liver`` mask), and write the label map in the input's own
orientation and affine, atomically. ``tumorsynth evaluate`` then scores it.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from synth.io import save_nifti
from synth.labels import Label

__all__ = ["MODEL_FILES", "find_model_file", "predict_image"]

MODEL_FILES = ("model.pt", "best.pt", "checkpoint.pt")  # tried in this order in a run folder
PathLike = str | os.PathLike[str]


def find_model_file(model: PathLike) -> Path:
    """``model`` itself when it is a file, else the first of :data:`MODEL_FILES` in that folder."""
    model = Path(model)
    if model.is_file():
        return model
    if model.is_dir():
        for name in MODEL_FILES:
            if (model / name).is_file():
                return model / name
        raise ValueError(f"{model}: no model file ({', '.join(MODEL_FILES)}) in this folder; give a run "
                         f"folder of 'tumorsynth train' or 'tumorsynth ablate' (runs/<arm>/seed-<s>/[fold-<k>/])")
    raise ValueError(f"{model}: no such model file or run folder")


def _back_to_grid(labels: np.ndarray, model_affine: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """Labels on the model's grid, nearest-neighbour sampled at the voxels of ``affine``'s grid."""
    from scipy import ndimage

    to_model = np.linalg.inv(model_affine) @ affine  # a voxel of the scan -> a voxel of the model grid
    return ndimage.affine_transform(labels, to_model[:3, :3], offset=to_model[:3, 3], output_shape=tuple(shape),
                                    output=np.uint8, order=0, mode="nearest")


def predict_image(model: PathLike, image: PathLike, out: PathLike, *, liver: PathLike | None = None,
                  liver_opening_mm: float = 0.0, min_tumor_mm3: float = 0.0, min_contrast_hu: float = 0.0,
                  device: str = "cpu") -> Path:
    """Segment one CT (NIfTI) with a trained model and write the label map; returns ``out``.

    Args:
        model: a model file or a run folder (see :func:`find_model_file`).
        image: the CT in HU, any orientation and spacing.
        out: the label map to write (0 background, 1 liver, 2 tumour), on ``image``'s grid.
        liver: a liver mask of ``image`` (same grid) when the liver is known: tumour is kept
            within it and the liver label is the mask. Without it, the model's own liver.
        liver_opening_mm: without ``liver``, the model's largest liver component is taken after an
            opening of this radius, which cuts off look-alike tissue joined to it by a thin bridge.
        min_tumor_mm3: predicted tumour components below this volume become liver.
        min_contrast_hu: predicted tumour components whose median HU differs from the liver's
            around them by less than this become liver.
        device: ``"cpu"``, ``"cuda"``, ...

    Raises:
        ValueError: an unreadable file, a mask on another grid, a model file of another tool.
    """
    import torch

    from synth.cases import Case
    from synth.io import check_same_space, load_nifti
    from synth.validation import check_spacing, check_volume
    from train.data import resample
    from train.loop.inference import load_model_file, predict_case
    from train.postprocess import postprocess

    net, config, state = load_model_file(find_model_file(model), device=device)
    scan = load_nifti(image)  # reoriented to closest canonical RAS, as the model was trained
    ct = check_volume(np.asarray(scan.array, dtype=np.float32))
    recorded = state.get("spacing_mm")
    model_spacing = check_spacing(recorded) if recorded else scan.spacing
    work, _, work_affine = resample(ct, None, scan.affine, model_spacing)
    case = Case("predict", work, np.zeros(work.shape, np.uint8), model_spacing, work_affine)
    with torch.no_grad():
        labels = predict_case(net, case, config, device=device)
    if labels.shape != ct.shape:
        labels = _back_to_grid(labels, work_affine, scan.affine, ct.shape)
    liver_mask = None
    if liver is not None:
        mask = load_nifti(liver)
        check_same_space(scan, mask)
        liver_mask = mask.array >= Label.LIVER
    labels = postprocess(labels, scan.spacing, largest_liver=liver_mask is None, liver=liver_mask,
                         liver_opening_mm=liver_opening_mm, min_tumor_mm3=min_tumor_mm3, image=ct,
                         min_contrast_hu=min_contrast_hu)
    # Back to the file's own orientation: nibabel reads the header only, here.
    stored = nib.load(image)
    assert isinstance(stored, (nib.Nifti1Image, nib.Nifti2Image)), "load_nifti read it as NIfTI"
    ornt = nib.orientations.io_orientation(stored.affine)
    back = nib.orientations.apply_orientation(labels, nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), ornt))
    return save_nifti(np.ascontiguousarray(back, dtype=np.uint8), stored.affine, out)
