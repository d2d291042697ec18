"""How the command line reports problems: bad input ends with exit status 2, warnings go on.

:class:`UsageError` carries a one-line message that ``main`` prints as ``tumorsynth: error: ...``;
:func:`input_errors` turns the ``FileNotFoundError``/``ValueError``/``TypeError`` that
``synth.io`` and the synthesiser raise for bad input into it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

PROG = "tumorsynth"


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
