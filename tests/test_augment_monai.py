"""augment's MONAI dictionary transform: seeding, spacing, space checks, types and metadata."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandAffined

from augment import RandTumorInsertiond
from synth.phantom import make_phantom

SHAPE = (96, 80, 40)
SPACING = (3.0, 3.0, 4.0)


@functools.lru_cache(maxsize=1)
def _phantom():
    return make_phantom(shape=SHAPE, spacing=SPACING)


def make_data() -> dict:
    """A MONAI-style dict: channel-first MetaTensors with the phantom's affine."""
    case = _phantom()
    affine = torch.as_tensor(case.affine, dtype=torch.float64)
    return {
        "image": MetaTensor(torch.from_numpy(case.volume.astype(np.float32))[None], affine=affine),
        "label": MetaTensor(torch.from_numpy(case.label.copy())[None], affine=affine),
        "case": "phantom",
    }


def run(transform, seed, data=None):
    transform.set_random_state(seed=seed)
    return transform(make_data() if data is None else data)


def test_set_random_state_reproduces_and_seeds_differ():
    transform = RandTumorInsertiond(keys="image", label_key="label", count=2)
    first, second, other = run(transform, 0), run(transform, 0), run(transform, 1)
    assert torch.equal(first["label"], second["label"])
    assert torch.equal(first["image"], second["image"])
    assert not torch.equal(first["label"], other["label"])
    assert (first["label"] == 2).any()


def test_output_keeps_type_dtype_metadata_and_other_keys():
    data = make_data()
    out = run(RandTumorInsertiond(keys="image", count=2), 3, data)
    assert isinstance(out["image"], MetaTensor) and isinstance(out["label"], MetaTensor)
    assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.uint8
    assert out["image"].shape == (1, *SHAPE)
    assert torch.equal(out["image"].affine, data["image"].affine)
    assert out["case"] == "phantom"
    assert not (data["label"] == 2).any()  # input not modified
    changed = out["label"] != data["label"]
    assert torch.all(data["label"][changed] == 1) and torch.all(out["label"][changed] == 2)


def test_spacing_comes_from_the_affine():
    """Plain arrays with the phantom's spacing give what MetaTensors with its affine give."""
    case = _phantom()
    transform = RandTumorInsertiond(keys="image", count=2, spacing=SPACING)
    arrays = {"image": case.volume.astype(np.float32), "label": case.label.copy()}  # no channel
    from_arrays = run(transform, 5, arrays)
    from_meta = run(RandTumorInsertiond(keys="image", count=2), 5)
    assert isinstance(from_arrays["label"], np.ndarray) and from_arrays["label"].shape == SHAPE
    np.testing.assert_array_equal(from_arrays["label"], from_meta["label"][0].numpy())
    np.testing.assert_allclose(from_arrays["image"], from_meta["image"][0].numpy(), atol=1e-4)


def test_plain_arrays_need_a_spacing():
    case = _phantom()
    with pytest.raises(ValueError, match="needs the voxel spacing"):
        run(RandTumorInsertiond(keys="image"), 0, {"image": case.volume, "label": case.label})


def test_spacing_that_disagrees_with_the_affine_is_an_error():
    with pytest.raises(ValueError, match="disagrees with the image affine"):
        run(RandTumorInsertiond(keys="image", spacing=1.0), 0)


def test_affine_mismatch_is_a_clear_error():
    data = make_data()
    shifted = data["label"].affine.clone()
    shifted[2, 3] += 4.0
    data["label"] = MetaTensor(data["label"].as_tensor(), affine=shifted)
    with pytest.raises(ValueError, match=r"not in one space.*4 mm apart"):
        run(RandTumorInsertiond(keys="image"), 0, data)


def test_prob_zero_leaves_the_data_unchanged():
    data = make_data()
    out = run(RandTumorInsertiond(keys="image", prob=0.0), 0, data)
    assert out["image"] is data["image"] and out["label"] is data["label"]


def test_one_image_key_only_and_missing_keys():
    with pytest.raises(ValueError, match="exactly one CT image"):
        RandTumorInsertiond(keys=["image", "pet"])
    data = make_data()
    del data["label"]
    with pytest.raises(KeyError, match="label"):
        run(RandTumorInsertiond(keys="image"), 0, data)
    assert run(RandTumorInsertiond(keys="image", allow_missing_keys=True), 0, data) == data


def test_compose_seeding_and_alignment_through_rand_affined():
    pipeline = Compose([
        RandTumorInsertiond(keys="image", size="medium", count=2, phenotype="hypodense"),
        RandAffined(keys=["image", "label"], prob=1.0, rotate_range=0.25, scale_range=0.1,
                    mode=("bilinear", "nearest"), padding_mode="border"),
    ])
    first, second = run(pipeline, 11), run(pipeline, 11)
    assert torch.equal(first["label"], second["label"])
    image, labels = first["image"].as_tensor(), first["label"].as_tensor()
    tumour_hu, liver_hu = image[labels == 2].mean(), image[labels == 1].mean()
    assert tumour_hu < liver_hu - 20, (float(tumour_hu), float(liver_hu))
