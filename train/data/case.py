"""The one record every part of the trainer passes around: a preprocessed CT case."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Case:
    """A CT case ready for training or evaluation.

    Attributes:
        case_id: a stable name (``"lits-117"``, ``"phantom-3"``, a file stem).
        image: float32 Hounsfield units, ``(X, Y, Z)`` in RAS (closest canonical), axis 2 axial.
        label: uint8, same shape: 0 background, 1 liver, 2 tumour.
        spacing: voxel size in mm along the three axes, all positive.
        affine: the 4x4 voxel-to-world matrix of ``image`` after preprocessing.
        source: where it came from (a file path, ``"phantom"``), for reports only.
        notes: free-form facts a report should repeat (``"spacing approximate"``).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.image.shape != self.label.shape:
            raise ValueError(
                f"case {self.case_id!r}: image shape {self.image.shape} != label shape {self.label.shape}"
            )
        if self.image.ndim != 3:
            raise ValueError(f"case {self.case_id!r}: expected a 3D image, got shape {self.image.shape}")
        if len(self.spacing) != 3 or not all(s > 0 for s in self.spacing):
            raise ValueError(f"case {self.case_id!r}: spacing must be three positive mm values, got {self.spacing}")

    @property
    def has_tumour(self) -> bool:
        return bool((self.label == 2).any())
