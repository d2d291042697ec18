"""``python -m tumorsynth``: the same as the ``tumorsynth`` command."""

import sys

from .cli import main

sys.exit(main())
