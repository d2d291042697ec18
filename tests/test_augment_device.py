"""augment.device: batched affine + elastic + intensity augmentation on the tensors' device."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("torchio")

from augment.device import (  # noqa: E402
    AugmentParams,
    DeviceAugmenter,
    augment_batch,
    draw_params,
    sampling_grid,
)
from augment.pipelines import (  # noqa: E402
    AFFINE_DEGREES,
    ELASTIC_CONTROL_POINTS,
    ELASTIC_MAX_DISPLACEMENT_MM,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WINDOW = (-160.0, 240.0)


def _blocks(batch=3, shape=(20, 20, 20), seed=0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, *shape, generator=generator)
    label = torch.randint(0, 3, (batch, 1, *shape), generator=generator, dtype=torch.uint8)
    return image, label


def _all_off(batch):
    return AugmentParams.identity(batch)


def _identity_grid(batch, block, patch, spacing):
    params = _all_off(batch)
    return sampling_grid(params, torch.arange(batch), torch.tensor([spacing] * batch, dtype=torch.float64),
                         block, patch, "cpu", torch.float64)


# --- spatial ------------------------------------------------------------------------------------
def test_identity_parameters_give_the_centre_of_the_block_back():
    image, label = _blocks()
    before = image.clone(), label.clone()
    patch = (16, 14, 12)
    crop = (slice(None), slice(None), slice(2, 18), slice(3, 17), slice(4, 16))
    out, out_label = augment_batch(image, label, (0.8, 0.8, 2.5), _all_off(3), patch, pad_hu=0.0)
    assert torch.equal(out, image[crop]) and torch.equal(out_label, label[crop])
    # The same through the resampling: affine on with neutral values.
    resampled = _all_off(3).replace(affine=torch.ones(3, dtype=torch.bool))
    out, out_label = augment_batch(image, label, (0.8, 0.8, 2.5), resampled, patch)
    assert torch.allclose(out, image[crop], atol=1e-4)
    assert torch.equal(out_label, label[crop])
    assert torch.equal(image, before[0]) and torch.equal(label, before[1])  # inputs untouched


def test_a_90_degree_turn_about_z_is_rot90_on_a_cube():
    image, label = _blocks(batch=2, shape=(12, 12, 12))
    params = _all_off(2).replace(affine=torch.ones(2, dtype=torch.bool),
                                 degrees=torch.tensor([[0.0, 0.0, 90.0]] * 2, dtype=torch.float64))
    # Block = patch: the edge voxels border the padding; a pad value near the image's values keeps
    # float32 rounding of the coordinates (about 1e-6 voxel) from showing as air bleeding in.
    out, out_label = augment_batch(image, label, (1.0, 1.0, 1.0), params, (12, 12, 12), pad_hu=0.0)
    # A positive z angle turns +x towards +y: torch.rot90 from the first axis to the second.
    assert torch.allclose(out, torch.rot90(image, 1, dims=(2, 3)), atol=1e-3)
    assert torch.equal(out_label, torch.rot90(label, 1, dims=(2, 3)))
    assert not torch.allclose(out, torch.rot90(image, -1, dims=(2, 3)), atol=1e-1)


def test_translation_in_mm_moves_the_content_by_whole_voxels():
    image, label = _blocks(batch=1, shape=(16, 16, 16))
    params = _all_off(1).replace(affine=torch.ones(1, dtype=torch.bool),
                                 translation_mm=torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64))
    out, out_label = augment_batch(image, label, (1.0, 1.0, 2.5), params, (16, 16, 16), pad_hu=-7.0)
    assert torch.allclose(out[..., 2:], image[..., :-2], atol=1e-4)  # 5 mm = 2 slices of 2.5 mm
    assert torch.allclose(out[..., :2], torch.tensor(-7.0), atol=1e-4)  # the padding fills in
    assert torch.all(out_label[..., :2] == 0)


def test_a_zoom_above_one_enlarges_the_content():
    image = torch.zeros(1, 1, 17, 17, 17)
    image[..., 6:11, 6:11, 6:11] = 1.0  # a 5-voxel cube at the centre
    label = (image > 0.5).to(torch.uint8)
    params = _all_off(1).replace(affine=torch.ones(1, dtype=torch.bool),
                                 scales=torch.tensor([[2.0, 1.0, 1.0]], dtype=torch.float64))
    _, out_label = augment_batch(image, label, 1.0, params, (17, 17, 17), pad_hu=0.0)
    extent = [int(out_label[0, 0].any(dim=tuple(a for a in range(3) if a != axis)).sum()) for axis in range(3)]
    assert extent[1:] == [5, 5] and extent[0] in (9, 10, 11)  # twice as long along x only


def test_labels_keep_their_values_under_random_deformation():
    image, label = _blocks(batch=4, shape=(24, 24, 24))
    label = label * 2 + 1  # values 1, 3, 5: an interpolating resampler would make 2 and 4
    params = draw_params(4, torch.Generator().manual_seed(3), elastic_probability=1.0)
    params = params.replace(affine=torch.ones(4, dtype=torch.bool))
    out, out_label = augment_batch(image * 300, label, (1.0, 1.0, 1.0), params, (16, 16, 16), WINDOW)
    assert out_label.dtype == torch.uint8
    assert set(out_label.unique().tolist()) <= {0, 1, 3, 5}
    assert not torch.equal(out_label, label[..., 4:20, 4:20, 4:20])


def test_elastic_displacement_never_exceeds_the_maximum_in_mm():
    batch, block, patch, spacing = 6, (30, 30, 14), (24, 24, 10), (0.8, 0.9, 2.5)
    params = draw_params(batch, torch.Generator().manual_seed(5), elastic_probability=1.0)
    params = params.replace(affine=torch.zeros(batch, dtype=torch.bool))
    grid = sampling_grid(params, torch.arange(batch), torch.tensor([spacing] * batch, dtype=torch.float64),
                         block, patch, "cpu", torch.float64)
    identity = _identity_grid(batch, block, patch, spacing)
    half_extent_mm = torch.tensor([(n - 1) / 2 * s for n, s in zip(block, spacing)], dtype=torch.float64)
    displacement_mm = (grid - identity).flip(-1) * half_extent_mm  # back to (x, y, z) order, mm
    largest = displacement_mm.abs().amax(dim=(0, 1, 2, 3))
    limit = torch.tensor(ELASTIC_MAX_DISPLACEMENT_MM, dtype=torch.float64)
    assert torch.all(largest <= limit + 1e-6)
    assert torch.all(largest > 0.4 * limit)  # it does deform
    # The patch's border is locked: no displacement on its outer faces.
    assert displacement_mm[:, 0].abs().max() < 1e-9 and displacement_mm[:, :, :, -1].abs().max() < 1e-9
    assert params.control_mm.shape[-1] == ELASTIC_CONTROL_POINTS


# --- randomness ---------------------------------------------------------------------------------
def test_a_seed_reproduces_the_batch_and_another_seed_does_not():
    image, label = _blocks(batch=3, shape=(24, 24, 24))
    image = image * 400 - 160
    augmenter = DeviceAugmenter((16, 16, 16), WINDOW)
    a = augmenter(image, label, (1.0, 1.0, 1.0), torch.Generator().manual_seed(11))
    b = augmenter(image, label, (1.0, 1.0, 1.0), torch.Generator().manual_seed(11))
    c = augmenter(image, label, (1.0, 1.0, 1.0), torch.Generator().manual_seed(12))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_samples_of_a_batch_get_their_own_values_within_the_ranges():
    params = draw_params(64, torch.Generator().manual_seed(0))
    assert len(set(params.degrees[:, 2].tolist())) == 64
    low, high = torch.tensor(AFFINE_DEGREES[0::2]), torch.tensor(AFFINE_DEGREES[1::2])
    assert torch.all(params.degrees >= low) and torch.all(params.degrees <= high)
    assert 0.6 < params.affine.double().mean() < 0.95  # probability 0.8
    assert 0.05 < params.elastic.double().mean() < 0.5  # probability 0.25
    # Same blocks, different samples: different outputs.
    image = torch.linspace(-100, 200, 20**3).view(1, 1, 20, 20, 20).expand(2, 1, 20, 20, 20)
    label = torch.zeros(2, 1, 20, 20, 20, dtype=torch.uint8)
    two = draw_params(2, torch.Generator().manual_seed(1)).replace(affine=torch.ones(2, dtype=torch.bool))
    out, _ = augment_batch(image, label, (1.0, 1.0, 1.0), two, (16, 16, 16), WINDOW)
    assert not torch.allclose(out[0], out[1])


def test_draws_come_only_from_the_given_generator():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = draw_params(2, torch.Generator().manual_seed(4))
    torch.manual_seed(99)
    second = draw_params(2, torch.Generator().manual_seed(4))
    assert torch.equal(first.degrees, second.degrees) and first.noise_seed == second.noise_seed
    torch.set_rng_state(state)


# --- intensity ----------------------------------------------------------------------------------
def _intensity_only(batch, **changes):
    return _all_off(batch).replace(**changes)


def test_ct_noise_has_the_asked_standard_deviation_in_hu_and_is_correlated():
    image = torch.full((2, 1, 40, 40, 40), 60.0)
    label = torch.zeros(2, 1, 40, 40, 40, dtype=torch.uint8)
    params = _intensity_only(2, noise=torch.ones(2, dtype=torch.bool),
                             noise_std_hu=torch.tensor([5.0, 15.0], dtype=torch.float64),
                             noise_correlation_mm=torch.tensor([1.0, 1.0], dtype=torch.float64), noise_seed=3)
    out, _ = augment_batch(image, label, (1.0, 1.0, 1.0), params, (40, 40, 40), WINDOW)
    noise = (out - 60.0).flatten(1)
    assert noise.std(dim=1).tolist() == pytest.approx([5.0, 15.0], rel=0.02)
    assert noise.mean(dim=1).abs().max() < 1.0
    field = (out[1, 0] - 60.0) / 15.0
    neighbour = float((field[1:] * field[:-1]).mean())
    assert 0.6 < neighbour < 0.95  # Gaussian sigma 1 voxel: exp(-1/4) = 0.78 expected


def test_gamma_keeps_the_window_edges_and_brightens_soft_tissue_for_gamma_below_one():
    hu = torch.tensor([-160.0, 40.0, 240.0]).view(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2).contiguous()
    label = torch.zeros(1, 1, 3, 2, 2, dtype=torch.uint8)
    params = _intensity_only(1, gamma=torch.ones(1, dtype=torch.bool),
                             log_gamma=torch.tensor([math.log(0.5)], dtype=torch.float64))
    out, _ = augment_batch(hu, label, 1.0, params, (3, 2, 2), WINDOW)
    expected = -160.0 + 400.0 * math.sqrt(0.5)
    assert out[0, 0, :, 0, 0].tolist() == pytest.approx([-160.0, expected, 240.0], abs=1e-3)


def test_blur_smooths_and_bias_field_stays_near_one():
    generator = torch.Generator().manual_seed(0)
    image = 100.0 + 20.0 * torch.randn(1, 1, 24, 24, 24, generator=generator)
    label = torch.zeros(1, 1, 24, 24, 24, dtype=torch.uint8)
    blur = _intensity_only(1, blur=torch.ones(1, dtype=torch.bool),
                           blur_std_mm=torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64))
    blurred, _ = augment_batch(image, label, 1.0, blur, (24, 24, 24), WINDOW)
    assert blurred.std() < 0.5 * image.std() and abs(float(blurred.mean() - image.mean())) < 1.0
    coefficients = torch.full((1, 10), 0.05, dtype=torch.float64)
    bias = _intensity_only(1, bias=torch.ones(1, dtype=torch.bool), bias_coefficients=coefficients)
    flat = torch.full((1, 1, 24, 24, 24), 100.0)
    biased, _ = augment_batch(flat, label, 1.0, bias, (24, 24, 24), WINDOW)
    assert float(biased.max()) == pytest.approx(100.0 * math.exp(0.5), rel=1e-4)  # every term 1 at a corner
    assert biased.min() > 100.0 * math.exp(-0.5) and biased.std() > 1.0


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "words"), [
    ({"label": torch.zeros(2, 1, 8, 8, 8)}, "integer label values"),
    ({"image": torch.zeros(2, 8, 8, 8)}, "B, C, X, Y, Z"),
    ({"spacing": (1.0, 0.0, 1.0)}, "positive"),
    ({"patch": (9, 8, 8)}, "larger than the input block"),
    ({"params": AugmentParams.identity(3)}, "draw_params\\(2"),
])
def test_bad_inputs_are_named(change, words):
    args = {"image": torch.zeros(2, 1, 8, 8, 8), "label": torch.zeros(2, 1, 8, 8, 8, dtype=torch.uint8),
            "spacing": (1.0, 1.0, 1.0), "params": AugmentParams.identity(2), "patch": (8, 8, 8)} | change
    with pytest.raises(ValueError, match=words):
        augment_batch(args["image"], args["label"], args["spacing"], args["params"], args["patch"])


def test_generator_must_be_a_cpu_generator():
    with pytest.raises(TypeError, match="CPU torch.Generator"):
        draw_params(2, 7)  # type: ignore[arg-type]


# --- real CT ------------------------------------------------------------------------------------
def test_real_ct_keeps_its_liver_where_it_was(lits117):
    volume = torch.from_numpy(np.array(lits117.volume, dtype=np.float32))
    labels = torch.from_numpy(np.array(lits117.label, dtype=np.uint8))
    centre = [int(i.float().mean()) for i in torch.nonzero(labels == 1, as_tuple=True)]
    box = tuple(slice(max(0, c - 24), max(0, c - 24) + 48) for c in centre)
    image = volume[box][None, None].expand(4, 1, 48, 48, 48).contiguous()
    label = labels[box][None, None].expand(4, 1, 48, 48, 48).contiguous()
    out, out_label = DeviceAugmenter((40, 40, 40), WINDOW)(image, label, lits117.spacing,
                                                           torch.Generator().manual_seed(2))
    plain = label[..., 4:44, 4:44, 4:44]
    assert set(out_label.unique().tolist()) <= {0, 1, 2}
    agreement = (out_label == plain).double().mean(dim=(1, 2, 3, 4))
    assert torch.all(agreement > 0.7)  # a mild deformation, not another place
    liver = out[out_label == 1]
    assert 0.0 < float(liver.median()) < 200.0  # liver HU survive the intensity steps


# --- trainer ------------------------------------------------------------------------------------
def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize("network", ["dynunet", "unet2d"])
def test_trainer_augments_on_the_device_and_resumes_identically(phantom_case, network, tmp_path):
    from train.loop import TrainConfig, train_model

    if network == "unet2d":
        settings = dict(network="unet2d", patch_size=(32, 32, 3), filters=(4, 4, 8, 8, 16))
    else:
        settings = dict(patch_size=(24, 24, 24), filters=(4, 8, 16))
    config = TrainConfig(**settings, batch_size=2, device="cpu", optimizer="adamw", learning_rate=1e-3,
                         amp=False, steps=3, checkpoint_every=1, seed=1, synthetic_probability=0.5,
                         synthetic_size="small", augmentation="device")
    case, host = phantom_case(0), phantom_case(1, lesions=0)
    whole = train_model(config, [case], hosts=[host], out_dir=tmp_path / "whole", progress=False)
    assert whole.steps == 3 and all(np.isfinite(row["loss"]) for row in whole.history)
    train_model(config, [case], hosts=[host], out_dir=tmp_path / "part", stop_after=2, progress=False)
    resumed = train_model(config, [case], hosts=[host], out_dir=tmp_path / "part", resume=True, progress=False)
    a, b = _weights(whole.model_path), _weights(resumed.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampler_hands_out_blocks_for_device_augmentation(phantom_case):
    from train.loop import PatchSampler, TrainConfig
    from train.loop.augmentation import augment_on_device, device_augmentation_generator

    config = TrainConfig(patch_size=(32, 32, 16), batch_size=2, filters=(4, 8, 16), device="cpu",
                         augmentation="device", seed=3)
    sampler = PatchSampler([phantom_case(0)], config)
    assert sampler.augmenter is None
    images, labels, spacing = sampler.batch_with_spacing(0)
    assert images.shape == labels.shape == (2, 1, 40, 40, 20)  # the augmentation block
    assert spacing.shape == (2, 3) and np.all(spacing > 0)
    augmenter = DeviceAugmenter(config.patch_size, config.hu_window)
    out, out_labels = augment_on_device(augmenter, torch.from_numpy(images), torch.from_numpy(labels).long(),
                                        torch.from_numpy(spacing), config.hu_window,
                                        device_augmentation_generator(config.seed, 0))
    assert out.shape == out_labels.shape == (2, 1, 32, 32, 16)
    assert out.min() >= 0.0 and out.max() <= 1.0 and set(out_labels.unique().tolist()) <= {0, 1, 2}
    again = augment_on_device(augmenter, torch.from_numpy(images), torch.from_numpy(labels).long(),
                              torch.from_numpy(spacing), config.hu_window,
                              device_augmentation_generator(config.seed, 0))
    assert torch.equal(out, again[0])


def test_elastic_field_is_trilinear_interpolation_of_the_control_points():
    params = draw_params(2, torch.Generator().manual_seed(0), elastic_probability=1.0)
    params = params.replace(affine=torch.zeros(2, dtype=torch.bool))
    shape, spacing = (22, 20, 18), [[1.0, 1.0, 1.0]] * 2
    grids = [sampling_grid(p, torch.arange(2), torch.tensor(spacing, dtype=torch.float64), shape, shape, "cpu",
                           torch.float64) for p in (params, _all_off(2))]
    displacement_mm = (grids[0] - grids[1]).flip(-1) * torch.tensor([(n - 1) / 2 for n in shape],
                                                                     dtype=torch.float64)
    expected = torch.nn.functional.interpolate(params.control_mm, size=shape, mode="trilinear",
                                               align_corners=True).permute(0, 2, 3, 4, 1)
    assert torch.allclose(displacement_mm, expected, atol=1e-9)


def test_steps_on_some_samples_never_write_into_the_callers_tensors():
    image, label = _blocks(batch=3, shape=(12, 12, 12))
    before = image.clone(), label.clone()
    on = torch.tensor([True, False, True])
    params = draw_params(3, torch.Generator().manual_seed(8)).replace(
        affine=torch.zeros(3, dtype=torch.bool), elastic=torch.zeros(3, dtype=torch.bool), noise=on,
        gamma=on, blur=on, bias=on)
    out, _ = augment_batch(image * 100, label, 1.0, params, (12, 12, 12), WINDOW)  # block = patch
    hu = image * 100
    out_again, _ = augment_batch(hu, label, 1.0, params, (12, 12, 12), WINDOW)
    assert torch.equal(hu, image * 100) and torch.equal(out, out_again)
    assert torch.equal(out[1], hu[1]) and not torch.allclose(out[0], hu[0])
    assert torch.equal(image, before[0]) and torch.equal(label, before[1])


def test_gaussian_smooth_matches_scipy_per_sample_and_axis():
    ndimage = pytest.importorskip("scipy.ndimage")
    from augment.device import gaussian_smooth

    volumes = torch.randn(2, 20, 18, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.5, 0.0]], dtype=torch.float64)
    smoothed = gaussian_smooth(volumes, sigma)
    for sample in range(2):
        expected = ndimage.gaussian_filter(volumes[sample].double().numpy(), sigma[sample].numpy(),
                                           mode="nearest", truncate=3.0)
        assert np.abs(smoothed[sample].numpy() - expected).max() < 1e-5
