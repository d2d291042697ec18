"""A trainable 3-D mask-conditioned diffusion model that inpaints liver tumours into CT.

Importing this package imports torch, MONAI's network and (when sampling or training) diffusers;
``import synth`` does not: the heuristic synthesiser reaches this package only when
``method="diffusion"`` is asked for.

>>> from synth import insert_tumor
>>> ct2, label2 = insert_tumor(ct, liver, spacing=(0.8, 0.8, 2.5), method="diffusion",
...                            model="models/lits-diffusion", seed=0)  # doctest: +SKIP

Public API
----------
- :class:`DiffusionConfig`, ``TINY``: the model's settings (``config.json``).
- :func:`build_model`, :func:`load_model`, :func:`save_model`, :class:`DiffusionModel`.
- :func:`inpaint`: seeded sampling of a batch of crops.
- :func:`train_diffusion`: training from LiTS-style cases, with checkpoints and resume.
- :class:`DiffusionPainter`: what ``synth.synthesize(method="diffusion")`` uses.
See ``docs/diffusion.md``.
"""

from .config import FORMAT_VERSION, TINY, DiffusionConfig
from .insertion import DiffusionPainter
from .sampling import inpaint, sampling_scheduler, training_scheduler
from .training import TrainingResult, train_diffusion
from .weights import DiffusionModel, build_model, load_model, save_model

__all__ = [
    "FORMAT_VERSION",
    "TINY",
    "DiffusionConfig",
    "DiffusionModel",
    "DiffusionPainter",
    "TrainingResult",
    "build_model",
    "inpaint",
    "load_model",
    "sampling_scheduler",
    "save_model",
    "train_diffusion",
    "training_scheduler",
]
