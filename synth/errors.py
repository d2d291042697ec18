"""Exceptions raised by tumorsynth.

Bad input raises the built-in ``ValueError`` or ``TypeError`` with a message that names the
problem. A lesion that cannot be placed raises :class:`LesionPlacementError`, a ``ValueError``
subclass, so callers that retry with other settings can catch it alone.
"""


class LesionPlacementError(ValueError):
    """No place in the liver can hold the requested lesion."""
