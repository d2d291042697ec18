"""Types of the public API, named once (as TorchIO's ``typing.py``): what each argument accepts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

if TYPE_CHECKING:
    from .copy_paste.bank import LesionBank
    from .diffusion.weights import DiffusionModel

__all__ = ["TypeBank", "TypeCount", "TypeMethod", "TypeModel", "TypeOut", "TypePhase", "TypePhenotype", "TypeRange",
           "TypeSampler", "TypeSize", "TypeSpacing", "TypeVolume"]

#: A CT volume or label map: an ``(X, Y, Z)`` array, or a nibabel image (its zooms give the spacing).
TypeVolume = Union[np.ndarray, Any]
#: Voxel size in mm: one number (isotropic) or three (X, Y, Z).
TypeSpacing = Union[float, Sequence[float]]
#: A size class (equivalent diameters: tiny 3-5, small 5-10, medium 10-20, large 20-50 mm), "mix"
#: (real lesion statistics) or a ``(min_mm, max_mm)`` range.
TypeSize = Union[Literal["tiny", "small", "medium", "large", "mix"], str, tuple[float, float]]
#: A number of lesions, or an inclusive ``(min, max)`` range to draw it from.
TypeCount = Union[int, tuple[int, int]]
#: A phenotype name ("hypodense", "isodense", "hyperdense", "rim-enhancing", "necrotic"), "mix",
#: or ``{name: weight}``.
TypePhenotype = Union[str, Mapping[str, float]]
#: The host scan's contrast phase ("auto": estimated from the liver's median HU).
TypePhase = Literal["auto", "portal-venous", "arterial", "unenhanced"]
#: A ``(low, high)`` range, e.g. of edge widths in mm.
TypeRange = tuple[float, float]
#: Who draws the lesion's appearance.
TypeMethod = Literal["heuristic", "diffusion", "copy-paste"]
#: A diffusion model: its folder or a loaded model.
TypeModel = Union[str, "os.PathLike[str]", "DiffusionModel", None]
#: A lesion bank for copy-paste: its folder (``tumorsynth bank build``) or a loaded bank.
TypeBank = Union[str, "os.PathLike[str]", "LesionBank", None]
#: The diffusion sampler.
TypeSampler = Literal["ddim", "dpm-solver"]
#: Where an insertion writes: ``(volume, label)`` arrays of the scan's shape, the volume's dtype
#: and uint8 labels (the host's own arrays to insert in place).
TypeOut = tuple[np.ndarray, np.ndarray]
