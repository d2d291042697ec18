"""Training and evaluation for tumorsynth.

Data (:mod:`train.data`), model and losses (:mod:`train.model`, :mod:`train.losses`), the training
loop (:mod:`train.loop`, see ``docs/training.md``), lesion-wise evaluation (:mod:`train.metrics`)
and ablations (:mod:`train.ablation`). torch and MONAI are imported by the model, loss and loop
modules only.
"""
