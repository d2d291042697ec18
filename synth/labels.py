"""The label values of a tumorsynth label map, defined once (as LiTS and MSD Task03 number them).

>>> from synth.labels import Label
>>> int(Label.TUMOR)
2

``Label`` is an ``IntEnum``: its members compare equal to the plain integers, so
``label == Label.TUMOR`` works on numpy arrays and torch tensors alike. A binary liver mask (0/1)
is a label map without tumour.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["IGNORE", "LABEL_VALUES", "Label"]


class Label(IntEnum):
    """Voxel values of a label map: 0 background, 1 liver (tumour-free), 2 tumour (inside the liver)."""

    BACKGROUND = 0
    LIVER = 1
    TUMOR = 2


LABEL_VALUES: tuple[int, ...] = tuple(int(v) for v in Label)

#: In training patches only, never in a label map on disk: voxels left out of the loss (a host's
#: own real tumours when a model must learn from synthetic tumours alone).
IGNORE = 255
