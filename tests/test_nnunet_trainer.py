"""nnUNetTrainerTumorSynth on CPU with tiny plans: its module installs where nnU-Net finds trainers,
it builds nnU-Net's augmentation with the insertion in it, and a batch of real LiTS-117 patches
comes out with new tumour voxels only where the patch had liver.

Needs nnunetv2 (extra ``nnunet``); skipped, with that reason, without it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("nnunetv2", reason="nnunetv2 (extra 'nnunet') is not installed")

import torch  # noqa: E402
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class  # noqa: E402

from train.nnunet import install  # noqa: E402
from train.nnunet.trainer import nnUNetTrainerTumorSynth  # noqa: E402
from train.nnunet.transform import CTIntensity, TumorInsertionTransform  # noqa: E402

PATCH = [48, 48, 48]
SPACING = [1.4, 1.4, 1.4]  # LiTS-117's nominal spacing (see ../shared/data/README.md)
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
                "numTraining": 1, "file_ending": ".nii.gz"}


def tiny_plans(intensity: CTIntensity) -> dict:
    """nnU-Net plans with one small 3-D configuration (a 3-stage U-Net on 48^3 patches)."""
    return {
        "dataset_name": "Dataset001_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": SPACING, "original_median_shape_after_transp": [128, 128, 128],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "mean": intensity.mean_hu, "std": intensity.std_hu, "percentile_00_5": intensity.lower_hu,
            "percentile_99_5": intensity.upper_hu, "min": -200.0, "max": 400.0, "median": intensity.mean_hu}},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": PATCH, "median_image_size_in_voxels": [128, 128, 128],
            "spacing": SPACING, "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 16],
                                "conv_op": "torch.nn.modules.conv.Conv3d",
                                "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                                "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                                "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                                "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": False}},
        "continue_training": False,  # what nnUNetv2_train adds before it builds a trainer
    }


@pytest.fixture(scope="module")
def lits_normalised(lits117):
    """LiTS-117 as nnU-Net hands it to its augmentation: CT-normalised float image (1, X, Y, Z) with
    the data set's foreground statistics, int16 labels (1, X, Y, Z); and that normalisation."""
    ct = np.asarray(lits117.volume, dtype=np.float32)
    labels = np.asarray(lits117.label, dtype=np.int16)
    foreground = ct[labels > 0]
    intensity = CTIntensity(float(foreground.mean()), float(foreground.std()),
                            float(np.percentile(foreground, 0.5)), float(np.percentile(foreground, 99.5)))
    return intensity, intensity.normalise(ct)[None], labels[None]


@pytest.fixture
def trainer_class(tmp_path, monkeypatch):
    """The trainer as ``tumorsynth nnunet install-trainer`` installs it (into a stand-in of nnU-Net's
    trainer folder), found by name the way nnUNetv2_train finds trainers."""
    monkeypatch.setattr(install, "trainer_folder", lambda: tmp_path / "trainers")
    (tmp_path / "trainers").mkdir()
    path, written = install.install_trainer("nnUNetTrainerTumorSynthTest", probability=1.0, size="small",
                                            count=(1, 2), phenotype="hypodense")
    assert written and path.parent == tmp_path / "trainers"
    found = recursive_find_python_class(str(tmp_path / "trainers"), "nnUNetTrainerTumorSynthTest", None,
                                        cleanup_imports_from_base_folder=True)
    assert found is not None and issubclass(found, nnUNetTrainerTumorSynth)
    return found


def _trainer(cls, plans: dict, tmp_path, monkeypatch, dataset_json=DATASET_JSON):
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))  # nnU-Net writes its log there
    return cls(copy.deepcopy(plans), "3d_fullres", 0, dict(dataset_json), device=torch.device("cpu"))


def _training_pipeline(trainer):
    configure = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size
    rotation, dummy_2d, initial_patch_size, mirror_axes = configure()
    pipeline = trainer.get_training_transforms(
        trainer.configuration_manager.patch_size, rotation, trainer._get_deep_supervision_scales(), mirror_axes,
        dummy_2d, use_mask_for_norm=trainer.configuration_manager.use_mask_for_norm,
        foreground_labels=trainer.label_manager.foreground_labels)
    return pipeline, initial_patch_size


def _liver_crop(image, labels, size, offset):
    """A crop of ``size`` voxels whose corner is ``offset`` voxels into the scan (LiTS-117 is a liver
    bounding box, so every crop holds liver)."""
    box = tuple(slice(o, o + s) for o, s in zip(offset, size))
    return torch.from_numpy(image[(slice(None), *box)].copy()), torch.from_numpy(labels[(slice(None), *box)].copy())


def test_installed_trainer_builds_its_augmentation_and_a_batch_gets_tumours_only_in_liver(
        trainer_class, lits_normalised, tmp_path, monkeypatch):
    intensity, image, labels = lits_normalised
    trainer = _trainer(trainer_class, tiny_plans(intensity), tmp_path, monkeypatch)
    assert trainer.tumor_phenotype == "hypodense" and trainer.tumor_probability == 1.0
    pipeline, initial_patch_size = _training_pipeline(trainer)
    names = [type(t).__name__ for t in pipeline.transforms]
    at = names.index("TumorInsertionTransform")
    assert names[at - 1] == "SpatialTransform"  # after the patch is cut, before intensity augmentation
    before, insertion, after = pipeline.transforms[:at], pipeline.transforms[at], pipeline.transforms[at + 1:]
    size = [min(int(n), 128) for n in initial_patch_size]
    np.random.seed(0)
    torch.manual_seed(0)
    batch_images, batch_targets, added = [], [], 0
    for offset in ([0, 0, 0], [128 - size[0], 128 - size[1], 128 - size[2]]):  # one batch of two samples
        sample_image, sample_labels = _liver_crop(image, labels, size, offset)
        sample = {"image": sample_image, "segmentation": sample_labels}
        for transform in before:
            sample = transform(**sample)
        liver_before = (sample["segmentation"][0] == 1).numpy()
        tumour_before = (sample["segmentation"][0] == 2).numpy()
        image_before = sample["image"].clone()
        sample = insertion(**sample)
        new_tumour = (sample["segmentation"][0] == 2).numpy() & ~tumour_before
        assert not (new_tumour & ~liver_before).any(), "a tumour voxel was added outside the liver"
        assert ((sample["segmentation"][0] == 2).numpy() >= tumour_before).all()  # real tumours kept
        changed = (sample["image"] != image_before)[0].numpy()
        assert changed.any() == new_tumour.any()
        assert not (changed & ~liver_before).any()  # only the liver's intensities change
        added += int(new_tumour.sum())
        for transform in after:
            sample = transform(**sample)
        batch_images.append(sample["image"])
        batch_targets.append(sample["segmentation"])
    assert added > 0, "probability 1 inserted nothing in two liver patches"
    data = torch.stack(batch_images)
    assert data.shape == (2, 1, *PATCH) and torch.isfinite(data).all()
    assert isinstance(batch_targets[0], list)  # deep supervision targets, as nnU-Net's loss expects
    assert batch_targets[0][0].shape == (1, *PATCH)


def test_insertion_is_reproducible_from_the_worker_seed(lits_normalised):
    intensity, image, labels = lits_normalised
    transform = TumorInsertionTransform(spacing=SPACING, intensity=intensity, probability=1.0, size="small",
                                        count=2)
    sample_image, sample_labels = _liver_crop(image, labels, PATCH, [40, 40, 40])

    def run(worker_seed: int):
        np.random.seed(worker_seed)  # what batchgenerators does in each augmentation worker
        out = transform(image=sample_image.clone(), segmentation=sample_labels.clone())
        return out["image"], out["segmentation"], transform.last_seed

    first, again, other = run(1), run(1), run(2)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1]) and first[2] == again[2]
    assert first[2] != other[2] and not torch.equal(first[1], other[1])
    assert not torch.equal(first[1], sample_labels)


def test_normalised_intensities_map_back_to_hu_and_are_clipped_as_nnunet_clips():
    intensity = CTIntensity(mean_hu=100.0, std_hu=40.0, lower_hu=-20.0, upper_hu=200.0)
    hu = np.array([-1000.0, -20.0, 0.0, 100.0, 150.0, 200.0, 900.0], dtype=np.float32)
    normalised = intensity.normalise(hu)
    np.testing.assert_allclose(normalised, (np.clip(hu, -20, 200) - 100) / 40, rtol=1e-6)
    np.testing.assert_allclose(intensity.to_hu(normalised), np.clip(hu, -20, 200), atol=1e-4)


def test_probability_zero_leaves_the_sample_alone(lits_normalised):
    intensity, image, labels = lits_normalised
    transform = TumorInsertionTransform(spacing=SPACING, intensity=intensity, probability=0.0)
    sample_image, sample_labels = _liver_crop(image, labels, PATCH, [40, 40, 40])
    out = transform(image=sample_image.clone(), segmentation=sample_labels.clone())
    assert torch.equal(out["image"], sample_image) and torch.equal(out["segmentation"], sample_labels)
    assert transform.last_seed is None


def test_non_ct_normalisation_and_2d_and_missing_labels_are_refused(lits_normalised, tmp_path, monkeypatch):
    intensity, _, _ = lits_normalised
    plans = tiny_plans(intensity)
    zscore = copy.deepcopy(plans)
    zscore["configurations"]["3d_fullres"]["normalization_schemes"] = ["ZScoreNormalization"]
    with pytest.raises(ValueError, match="needs nnU-Net's CTNormalization to map patches back to HU"):
        _training_pipeline(_trainer(nnUNetTrainerTumorSynth, zscore, tmp_path, monkeypatch))
    no_liver = dict(DATASET_JSON, labels={"background": 0, "lesion": 1})
    with pytest.raises(ValueError, match="no label 'liver'"):
        _training_pipeline(_trainer(nnUNetTrainerTumorSynth, plans, tmp_path, monkeypatch, no_liver))
    flat = copy.deepcopy(plans)
    flat["configurations"]["3d_fullres"].update(patch_size=[48, 48], spacing=[1.4, 1.4])
    flat["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(
        conv_op="torch.nn.modules.conv.Conv2d", kernel_sizes=[[3, 3]] * 3, strides=[[1, 1], [2, 2], [2, 2]],
        norm_op="torch.nn.modules.instancenorm.InstanceNorm2d")
    with pytest.raises(ValueError, match="inserts 3-D lesions"):
        _training_pipeline(_trainer(nnUNetTrainerTumorSynth, flat, tmp_path, monkeypatch))


def test_install_refuses_to_overwrite_and_uninstalls_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(install, "trainer_folder", lambda: tmp_path)
    path, written = install.install_trainer(probability=0.5)
    assert written and path == tmp_path / "nnUNetTrainerTumorSynth.py"
    assert install.install_trainer(probability=0.5) == (path, False)  # same options: nothing to do
    with pytest.raises(ValueError, match="give --force"):
        install.install_trainer(probability=0.9)
    assert "tumor_probability = 0.5" in path.read_text()
    install.install_trainer(probability=0.9, force=True)
    assert "tumor_probability = 0.9" in path.read_text()
    assert install.uninstall_trainer() == path and not path.exists()
    assert install.uninstall_trainer() is None
    foreign = tmp_path / "nnUNetTrainerTumorSynthOther.py"
    foreign.write_text("class nnUNetTrainerTumorSynthOther: pass\n")
    for action in (lambda: install.install_trainer("nnUNetTrainerTumorSynthOther", force=True),
                   lambda: install.uninstall_trainer("nnUNetTrainerTumorSynthOther")):
        with pytest.raises(ValueError, match="not written by tumorsynth"):
            action()
    assert foreign.read_text() == "class nnUNetTrainerTumorSynthOther: pass\n"
    with pytest.raises(ValueError, match="must start with nnUNetTrainerTumorSynth"):
        install.install_trainer("nnUNetTrainer")


def test_trainer_folder_is_where_nnunet_looks_for_trainers():
    import nnunetv2

    folder = install.trainer_folder()
    assert (folder / "nnUNetTrainer.py").is_file()
    assert folder.parent.parent.resolve() == __import__("pathlib").Path(nnunetv2.__path__[0]).resolve()
