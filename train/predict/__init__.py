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

from synth.io import read_nifti_image, save_nifti, spacing_from_affine
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


def _canonical(path: PathLike):
    """(nibabel image as stored, its 3-D data reoriented to closest canonical RAS, RAS affine,
    the orientation that maps the stored axes to RAS)."""
    image, data = read_nifti_image(path)
    data = np.asarray(data)
    if data.ndim > 3 and all(n == 1 for n in data.shape[3:]):
        data = data.reshape(data.shape[:3])
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    ornt = nib.orientations.io_orientation(image.affine)
    ras = nib.orientations.apply_orientation(data, ornt)
    affine = image.affine @ nib.orientations.inv_ornt_aff(ornt, image.shape[:3])
    return image, ras, affine, ornt


def _back_to_grid(labels: np.ndarray, model_affine: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """Labels on the model's grid, nearest-neighbour sampled at the voxels of ``affine``'s grid."""
    from scipy import ndimage

    to_model = np.linalg.inv(model_affine) @ affine  # a voxel of the scan -> a voxel of the model grid
    return ndimage.affine_transform(labels, to_model[:3, :3], offset=to_model[:3, 3], output_shape=tuple(shape),
                                    output=np.uint8, order=0, mode="nearest")


def predict_image(model: PathLike, image: PathLike, out: PathLike, *, liver: PathLike | None = None,
                  min_tumor_mm3: float = 0.0, device: str = "cpu") -> Path:
    """Segment one CT (NIfTI) with a trained model and write the label map; returns ``out``.

    Args:
        model: a model file or a run folder (see :func:`find_model_file`).
        image: the CT in HU, any orientation and spacing.
        out: the label map to write (0 background, 1 liver, 2 tumour), on ``image``'s grid.
        liver: a liver mask of ``image`` (same grid) when the liver is known: tumour is kept
            within it and the liver label is the mask. Without it, the model's own liver.
        min_tumor_mm3: predicted tumour components below this volume become liver.
        device: ``"cpu"``, ``"cuda"``, ...

    Raises:
        ValueError: an unreadable file, a mask on another grid, a model file of another tool.
    """
    import torch

    from synth.cases import Case
    from synth.validation import check_spacing, check_volume
    from train.data import resample
    from train.loop import load_model, predict_case
    from train.loop.files import load_torch
    from train.postprocess import postprocess

    model_path = find_model_file(model)
    net, config = load_model(model_path, device=device)
    recorded = load_torch(model_path, device, advice="use another model file").get("spacing_mm")
    stored, ct, affine, ornt = _canonical(image)
    ct = check_volume(np.asarray(ct, dtype=np.float32))
    spacing = spacing_from_affine(affine)
    model_spacing = check_spacing(recorded) if recorded else spacing
    work, _, work_affine = resample(ct, None, affine, model_spacing)
    case = Case("predict", work, np.zeros(work.shape, np.uint8), model_spacing, work_affine)
    with torch.no_grad():
        labels = predict_case(net, case, config, device=device)
    if labels.shape != ct.shape:
        labels = _back_to_grid(labels, work_affine, affine, ct.shape)
    liver_mask = None
    if liver is not None:
        given, mask, mask_affine, _ = _canonical(liver)
        if mask.shape != ct.shape or not np.allclose(mask_affine, affine, atol=1e-3):
            raise ValueError(f"--liver {liver}: its grid (shape {given.shape}) is not the image's "
                             f"(shape {stored.shape}); give the mask of this scan")
        liver_mask = np.asarray(mask) >= Label.LIVER
    labels = postprocess(labels, spacing, largest_liver=liver_mask is None, liver=liver_mask,
                         min_tumor_mm3=min_tumor_mm3)
    back = nib.orientations.apply_orientation(labels, nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), ornt))
    return save_nifti(np.ascontiguousarray(back, dtype=np.uint8), stored.affine, out)
