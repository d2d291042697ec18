"""Renamed names that still work for one release, with a ``DeprecationWarning``.

tumorsynth spells it ``tumor`` in every identifier (as in ``insert_tumor``); the earlier
``tumour`` spellings are accepted until the next release.
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

__all__ = ["UNSET", "renamed_keyword", "warn_renamed"]

T = TypeVar("T")
#: What a deprecated keyword defaults to: "not given".
UNSET: Any = object()


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is the deprecated name of ``new``."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=stacklevel)


def renamed_keyword(new_value: T, old_value: Any, *, new: str, old: str, default: T) -> T:
    """The value of a keyword argument renamed from ``old`` to ``new``.

    ``old_value`` is what the caller passed under the old name (:data:`UNSET` when nothing);
    giving both names is an error, the old one alone warns. The new name counts as given unless
    its value is the ``default`` object itself (identity, so that ``tumor_label=2`` next to
    ``tumour_label=2`` is refused too).
    """
    if old_value is UNSET:
        return new_value
    if new_value is not default:
        raise TypeError(f"give {new} only ({old} is its deprecated spelling), not both")
    warn_renamed(old, new, stacklevel=4)
    return old_value

