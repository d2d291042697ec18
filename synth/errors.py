"""Exceptions raised by tumorsynth, and how commands report them.

Bad input raises the built-in ``ValueError`` or ``TypeError`` with a message that names the
problem. A lesion that cannot be placed raises :class:`LesionPlacementError`, a ``ValueError``
subclass, so callers that retry with other settings can catch it alone.

Commands (each package's ``commands.py``) raise :class:`UsageError` for bad input; the
``tumorsynth`` front door prints it as one line ``tumorsynth: error: ...`` and exits with status 2.
:func:`input_errors` turns the errors of the library functions into it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

PROG = "tumorsynth"


class LesionPlacementError(ValueError):
    """No place in the liver can hold the requested lesion."""


class UsageError(Exception):
    """Bad input from the user: reported as ``tumorsynth: error: ...`` with exit status 2."""


@contextlib.contextmanager
def input_errors() -> Iterator[None]:
    """Turn the errors that bad input raises (in io and the synthesiser) into UsageError."""
    try:
        yield
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc


def warn(message: str) -> None:
    """``tumorsynth: warning: ...`` on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)
