"""The functional U-Net: shapes, serialization, residual start, halo."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unet_sr import SuperResolutionUNet


def tiny(**kwargs) -> SuperResolutionUNet:
    return SuperResolutionUNet(**{"depth": 1, "filters": 4, **kwargs})


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("frames", [1, 3, 15])
def test_output_is_scale_times_input(scale, frames, rng):
    model = tiny(frames=frames, scale=scale)
    x = rng.random((2, 16, 24, frames), dtype=np.float32)
    y = model(x)
    assert tuple(y.shape) == (2, 16 * scale, 24 * scale, 1)
    assert y.dtype == tf.float32
    assert model.input.name == "image"


@pytest.mark.parametrize(("height", "width"), [(20, 36), (12, 44), (4, 4)])
def test_non_square_and_odd_multiples_of_the_pooling_factor(height, width, rng):
    model = tiny(depth=2, frames=3, scale=2)
    assert model.size_multiple == 4
    y = model(rng.random((1, height, width, 3), dtype=np.float32))
    assert tuple(y.shape) == (1, 2 * height, 2 * width, 1)


def test_size_not_a_multiple_is_rejected(rng):
    model = tiny(depth=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?i)dimension"):
        model(rng.random((1, 18, 16, 1), dtype=np.float32))


@pytest.mark.parametrize("normalization", ["none", "batch", "layer"])
def test_keras_file_round_trip_in_safe_mode_gives_identical_outputs(
    tmp_path, normalization, rng
):
    model = tiny(frames=3, scale=2, depth=2, normalization=normalization, dropout=0.1)
    # Non-trivial weights, so the check compares more than the residual path.
    for variable in model.trainable_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.2))
    x = rng.random((2, 16, 16, 3), dtype=np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is SuperResolutionUNet
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))


def test_get_config_from_config_round_trip(rng):
    model = tiny(frames=9, scale=4, kernel_size=5, convs_per_level=1)
    clone = SuperResolutionUNet.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = rng.random((1, 8, 8, 9), dtype=np.float32)
    np.testing.assert_array_equal(clone(x), model(x))
    assert clone.halo == model.halo
    assert clone.percentiles == (1.0, 99.8)


def test_untrained_residual_model_returns_the_interpolated_frame_mean(rng):
    model = tiny(frames=3, scale=2, residual=True)
    x = rng.random((1, 8, 8, 3), dtype=np.float32)
    expected = tf.image.resize(x.mean(-1, keepdims=True), (16, 16), "bicubic")
    np.testing.assert_allclose(model(x), expected, atol=1e-6)


def test_no_lambda_layers():
    model = SuperResolutionUNet(frames=3, scale=2)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


@pytest.mark.parametrize(
    ("depth", "scale", "fine_convs", "upsampling", "fine_frames"),
    [
        (1, 1, 1, "subpixel", True),
        (2, 2, 1, "subpixel", True),
        (2, 2, 1, "subpixel", False),
        (1, 4, 1, "subpixel", True),
        (1, 2, 4, "subpixel", True),
        (0, 2, 4, "subpixel", True),
        (2, 2, 1, "input", True),
        (1, 4, 1, "input", True),
    ],
)
def test_halo_bounds_the_measured_receptive_field(
    depth, scale, fine_convs, upsampling, fine_frames
):
    model = SuperResolutionUNet(
        frames=2,
        scale=scale,
        depth=depth,
        filters=4,
        fine_convs=fine_convs,
        upsampling=upsampling,
        fine_frames=fine_frames,
        residual=False,
    )
    # Positive weights: no cancellation can hide a dependency.
    for variable in model.weights:
        variable.assign(tf.abs(variable) + 0.01)
    size = 96
    x = tf.Variable(tf.ones((1, size, size, 2)))
    centre = size * scale // 2
    reach = 0.0
    for offset in range(scale):
        out = centre + offset
        with tf.GradientTape() as tape:
            y = model(x)[0, out, out, 0]
        grad = tf.reduce_sum(tf.abs(tape.gradient(y, x)[0]), axis=-1).numpy()
        ys, xs = np.nonzero(grad)
        position = (out + 0.5) / scale - 0.5
        reach = max(reach, np.abs(ys - position).max(), np.abs(xs - position).max())
    assert reach > model.halo / 2  # the bound is not vacuous
    assert reach <= model.halo


def test_mixed_precision_policy_keeps_float32_output(tmp_path, rng):
    model = tiny(frames=3, scale=2, dtype="mixed_float16")
    assert model.get_layer("down0_conv0").compute_dtype == "float16"
    y = model(rng.random((1, 8, 8, 3), dtype=np.float32))
    assert y.dtype == tf.float32
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("down0_conv0").compute_dtype == "float16"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 3}, "scale"),
        ({"frames": 0}, "frames"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"normalization": "group"}, "normalization"),
        ({"percentiles": (99, 1)}, "percentiles"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SuperResolutionUNet(**kwargs)


def test_a_mixed_precision_model_predicts_in_float32_by_default(tmp_path, rng):
    from keras_unet_sr.inference.predictor import load_model

    model = tiny(frames=3, scale=2, dtype="mixed_bfloat16")
    for variable in model.trainable_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.2))
    model.save(tmp_path / "m.keras")
    exact = load_model(str(tmp_path / "m.keras"))
    assert exact.get_layer("down0_conv0").compute_dtype == "float32"
    fast = load_model(str(tmp_path / "m.keras"), "mixed_bfloat16")
    assert fast.get_layer("down0_conv0").compute_dtype == "bfloat16"
    x = rng.random((1, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(exact(x), fast(x), atol=0.05)


def test_fine_frames_reach_the_output_grid_convolutions(rng):
    with_frames = SuperResolutionUNet(frames=3, scale=2, depth=1, filters=4)
    without = SuperResolutionUNet(
        frames=3, scale=2, depth=1, filters=4, fine_frames=False
    )
    fine_conv = with_frames.get_layer("fine_conv")
    # 4 sub-pixel features + the 3 interpolated frames.
    assert fine_conv.kernel.shape[2] == 4 + 3
    assert without.get_layer("fine_conv").kernel.shape[2] == 4
    assert "fine_frames" not in [layer.name for layer in without.layers]
    # At scale 1 there is no output-grid stage, so the option changes nothing.
    one = SuperResolutionUNet(frames=3, scale=1, depth=1, filters=4)
    assert "fine_frames" not in [layer.name for layer in one.layers]
    x = rng.random((1, 8, 8, 3), dtype=np.float32)
    assert with_frames(x).shape == (1, 16, 16, 1)


def test_a_config_saved_before_fine_frames_builds_the_model_without_them():
    config = SuperResolutionUNet(frames=3, scale=2, depth=1, filters=4).get_config()
    assert config["fine_frames"] is True
    del config["fine_frames"]  # as configs saved before the option read
    old = SuperResolutionUNet.from_config(config)
    assert old.fine_frames is False
    assert old.get_layer("fine_conv").kernel.shape[2] == 4
