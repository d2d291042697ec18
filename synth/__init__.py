"""tumorsynth's synthesiser: realistic liver tumours of every size, inserted into CT.

>>> from synth import insert_tumor
>>> ct2, label2 = insert_tumor(ct, liver_mask, spacing=(0.8, 0.8, 2.5), size="small", seed=0)  # doctest: +SKIP
"""

from .errors import LesionPlacementError
from .host import HostScan, LiverStats, prepare_host
from .insert import insert_tumor, synthesize
from .records import InsertionResult, Lesion

__all__ = [
    "HostScan",
    "InsertionResult",
    "Lesion",
    "LesionPlacementError",
    "LiverStats",
    "insert_tumor",
    "prepare_host",
    "synthesize",
]
__version__ = "0.1.0"
