"""Training and evaluation for tumorsynth.

So far: :mod:`train.metrics`, the lesion-wise evaluator (see ``docs/evaluation.md``).
"""
