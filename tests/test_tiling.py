"""In-graph tiling: agreement with whole-image prediction, exact sizes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.data.normalization import percentile_normalize
from keras_unet_sr.inference.predictor import Predictor
from keras_unet_sr.inference.tiling import (
    DEFAULT_TILE,
    plan_for_model,
    plan_tiling,
    tiled_predict,
)


def trained_looking(model):
    """Non-trivial weights at realistic scale (the head is zero at init)."""
    head = model.get_layer("head").kernel
    head.assign(tf.random.normal(head.shape, stddev=0.1, seed=1))
    return model


@pytest.mark.parametrize(
    ("scale", "upsampling"), [(1, "subpixel"), (2, "subpixel"), (2, "input")]
)
def test_tiled_matches_whole_image_on_interior_pixels(scale, upsampling, rng):
    model = trained_looking(
        SuperResolutionUNet(
            frames=3,
            scale=scale,
            depth=2,
            filters=4,
            upsampling=upsampling,
            residual=True,  # a realistic signal level, and its path tiled too
        )
    )
    plan = plan_for_model(model)  # the defaults
    assert plan.tile == DEFAULT_TILE
    # Larger than one default tile both ways: the seams are exercised.
    image = (rng.random((1, 1100, 820, 3)) * 1000).astype(np.float32)
    tiled = tiled_predict(model, image, plan, model.percentiles).numpy()
    normalized, low, high = percentile_normalize(image, model.percentiles)
    whole = model(normalized).numpy()
    # Compare in the model's normalized units, away from the image border.
    tiled = (tiled - low.numpy()) / (high - low).numpy()
    border = model.halo * scale
    interior = np.s_[:, border:-border, border:-border]
    assert np.abs(tiled[interior] - whole[interior]).max() < 1e-3
    assert np.abs(whole).max() > 0.5  # not a trivially small signal


@pytest.mark.parametrize("shape", [(1, 1), (31, 47), (300, 200), (5, 400)])
@pytest.mark.parametrize("batch", [1, 2])
def test_output_is_exactly_scale_times_input(shape, batch, rng):
    model = SuperResolutionUNet(frames=2, scale=2, depth=2, filters=4)
    predictor = Predictor(model, tile=128)
    image = rng.random((batch, *shape, 2), dtype=np.float32)
    assert predictor(image).shape == (batch, 2 * shape[0], 2 * shape[1], 1)


def test_small_and_constant_images_give_finite_results(rng):
    model = trained_looking(SuperResolutionUNet(frames=1, scale=2, depth=1, filters=4))
    predictor = Predictor(model)
    for image in (
        np.full((7, 9, 1), 300.0),
        np.full((1, 1, 1), 5.0),
        np.zeros((3, 3, 1)),
    ):
        out = predictor(image.astype(np.float32))
        assert np.all(np.isfinite(out))
    # An untrained residual model returns the interpolated input, in input units.
    untrained = Predictor(
        SuperResolutionUNet(frames=1, scale=1, depth=1, filters=4, residual=True)
    )
    image = rng.random((40, 40, 1)).astype(np.float32) * 500 + 100
    np.testing.assert_allclose(untrained(image), image, rtol=1e-4, atol=1e-2)


def test_frame_subset_models_take_the_full_raw_stack(rng):
    model = SuperResolutionUNet(
        frames=3, scale=1, depth=1, filters=4, frame_subset=(0, 5, 10)
    )
    predictor = Predictor(model)
    stack = rng.random((24, 24, 15), dtype=np.float32)
    np.testing.assert_allclose(
        predictor(stack), predictor(stack[..., [0, 5, 10]]), atol=1e-6
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="frame"):
        predictor(stack[..., :7])


def test_balanced_tiles_cover_finite_images_with_little_waste():
    """As few tiles as the maximum side allows, shrunk to fit the image."""
    from keras_unet_sr.inference.tiling import _Axis

    plan = plan_tiling(halo=28, multiple=4, scale=2, tile=512)
    axis = _Axis(tf.constant(1024), plan)
    assert int(axis.count) == 3  # 1024 + 2 * 28 guard needs 3 tiles of <= 512
    assert int(axis.tile) == 400 and int(axis.tile) % 4 == 0
    covered = int(axis.count) * int(axis.stride) + int(axis.overlap)
    assert 1024 + 2 * 28 <= covered < 1024 + 2 * 28 + 3 * 4


def test_raw_uint16_images_predict_like_their_float32_copies(rng):
    model = trained_looking(SuperResolutionUNet(frames=2, scale=2, depth=1, filters=4))
    predictor = Predictor(model, tile=64)
    image = rng.integers(90, 4000, (70, 90, 2)).astype(np.uint16)
    np.testing.assert_allclose(
        predictor(image), predictor(image.astype(np.float32)), rtol=1e-6, atol=1e-3
    )


def test_batch_of_tiles_changes_nothing(rng):
    model = trained_looking(SuperResolutionUNet(frames=1, scale=2, depth=1, filters=4))
    image = rng.random((1, 150, 170, 1), dtype=np.float32)
    results = [
        tiled_predict(
            model, image, plan_for_model(model, tile=64, batch_size=b)
        ).numpy()
        for b in (1, 3, 16)
    ]
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
    np.testing.assert_allclose(results[0], results[2], atol=1e-5)


def test_plan_validates_geometry():
    with pytest.raises(ValueError, match="halo"):
        plan_tiling(halo=20, multiple=4, scale=1, overlap=8)
    with pytest.raises(ValueError, match="twice the overlap"):
        plan_tiling(halo=20, multiple=4, scale=1, tile=64, overlap=40)
    plan = plan_tiling(halo=26, multiple=4, scale=2)
    assert plan.guard == 28 and plan.overlap == 60 and plan.tile % 4 == 0
