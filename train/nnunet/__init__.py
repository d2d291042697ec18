"""nnU-Net v2 with synthetic liver tumours inserted on the fly (extra ``nnunet``).

* :mod:`train.nnunet.transform`: a batchgeneratorsv2 transform that inserts lesions into the liver
  of an nnU-Net training patch, in nnU-Net's normalised intensities.
* :mod:`train.nnunet.trainer`: ``nnUNetTrainerTumorSynth``, an ``nnUNetTrainer`` whose training
  augmentation holds that transform.
* :mod:`train.nnunet.install`: writes the small module through which ``nnUNetv2_train -tr
  nnUNetTrainerTumorSynth`` finds the trainer (``tumorsynth nnunet install-trainer``).

Exporting a data set in nnU-Net's layout needs no nnunetv2 and lives with the data:
:mod:`synth.nnunet_export` (``tumorsynth export nnunet``). Importing this package imports neither
nnunetv2 nor torch; its modules do. See ``docs/nnunet.md``.
"""

__all__ = ["DEFAULT_PROBABILITY", "TRAINER_NAME"]

#: The class name ``nnUNetv2_train -tr`` takes for the trainer.
TRAINER_NAME = "nnUNetTrainerTumorSynth"
#: The trainer's default chance that a training patch gets synthetic lesions.
DEFAULT_PROBABILITY = 0.5
