"""The lesion bank of the ``real+copy-paste`` arm, one per fold, built from that fold's training
part only.

A bank built from every real lesion of the case would put the fold's test lesions into its
training patches (pasted elsewhere, but the same lesions), so each fold's bank is cut from its
own training cases (the training slabs of a k-fold split, the training cases of a case split).
The slabs are cut with a gap around the test slab, and lesions touching a slab's border are not
banked (:func:`synth.copy_paste.build_bank`'s ``exclude_border``), so no piece of a lesion that
crosses into the gap or the test slab becomes a donor either.
"""

from __future__ import annotations

from pathlib import Path

from .data import AblationData, fold_folder_name, refuse_other_split

__all__ = ["BANKS_FOLDER", "fold_bank", "fold_bank_dir"]

BANKS_FOLDER = "banks"


def fold_bank_dir(out_dir, data: AblationData) -> Path:
    """``<out_dir>/banks/fold-<k>`` (``banks/split`` for a single split)."""
    return Path(out_dir) / BANKS_FOLDER / fold_folder_name(data)


def fold_bank(out_dir, data: AblationData) -> Path:
    """The bank folder of ``data``'s fold, built from ``data.train`` alone the first time (atomically;
    a later call, or a resumed ablation, loads and checks the one already there)."""
    from synth.copy_paste import LesionBank, build_bank

    folder = fold_bank_dir(out_dir, data)
    if not folder.exists():
        build_bank(data.train, folder)
    bank = LesionBank.load(folder)
    refuse_other_split(f"lesion bank {folder} was built on", bank.index["cases"], data, "remove it to rebuild")
    return folder
