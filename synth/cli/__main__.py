"""``python -m synth.cli``: the same as the ``tumorsynth`` command."""

import sys

from . import main

sys.exit(main())
