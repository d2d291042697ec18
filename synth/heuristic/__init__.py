"""The heuristic synthesiser, one step a module, in the order a lesion is made:

``size`` (how big) -> ``shape`` and ``cluster`` (which voxels: one body, or a multinodular one
from 20 mm) -> ``location`` (where) -> ``phase`` and ``texture`` (what it looks like, for the
host's contrast phase) -> ``mass_effect`` (how it pushes its surroundings) -> ``paint`` and
``blend`` (how it enters the host image, at the contrast asked for). ``synth.insert`` composes
them.
"""
