"""The heuristic synthesiser, one step a module, in the order a lesion is made:

``size`` (how big) -> ``shape`` (which voxels) -> ``location`` (where) -> ``texture`` (what it
looks like) -> ``mass_effect`` (how it pushes its surroundings) -> ``blend`` (how it enters the
host image). ``synth.insert`` composes them.
"""
