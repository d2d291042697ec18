"""``python -m realism --data DIR --out DIR``: the realism report on labelled cases."""

from .cli import main

raise SystemExit(main())
