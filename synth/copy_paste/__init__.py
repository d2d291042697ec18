"""Copy-paste synthesis: real lesions from a bank, turned, scaled and pasted into new livers.

>>> from synth.copy_paste import build_bank, LesionBank
>>> build_bank("data/lits", "bank/")  # doctest: +SKIP
>>> ct, label = insert_tumor(ct, liver, method="copy-paste", bank="bank/", seed=0)  # doctest: +SKIP

Command line: ``tumorsynth bank build --data DIR --out BANK`` then
``tumorsynth insert ... --method copy-paste --bank BANK``. See ``docs/copy_paste.md``.
"""

from .bank import BANK_FORMATS, INDEX_NAME, BankLesion, LesionBank, build_bank, cached_bank
from .insertion import MAX_SCALE, CopyPastePainter, DonorStencil, donor_stencil

__all__ = [
    "BANK_FORMATS",
    "INDEX_NAME",
    "MAX_SCALE",
    "BankLesion",
    "CopyPastePainter",
    "DonorStencil",
    "LesionBank",
    "build_bank",
    "cached_bank",
    "donor_stencil",
]
