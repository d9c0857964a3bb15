"""Test-time averaging over flips and turns: the group, the inverse, the
average against an independent numpy reference, and how the choice travels
from `fit`'s config through the model to prediction and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_unet_sr import SuperResolutionUNet, config
from keras_unet_sr.config import FitConfig
from keras_unet_sr.errors import UserError
from keras_unet_sr.inference.predictor import Predictor
from keras_unet_sr.inference.transforms import (
    TRANSFORMS,
    averaged_prediction,
    invert,
    transform,
)
from keras_unet_sr.training.fit import build_model

# The same sets, written with numpy's own rotations and flips.
NUMPY = {
    "none": [lambda a: a],
    "half-turn": [lambda a: a, lambda a: np.rot90(a, 2)],
    "turns": [lambda a, k=k: np.rot90(a, k) for k in range(4)],
    "dihedral": [lambda a, k=k: np.rot90(a, k) for k in range(4)]
    + [lambda a, k=k: np.rot90(a.swapaxes(0, 1), k) for k in range(4)],
}
NUMPY_INVERSE = {
    "none": [lambda a: a],
    "half-turn": [lambda a: a, lambda a: np.rot90(a, 2)],
    "turns": [lambda a, k=k: np.rot90(a, -k) for k in range(4)],
    "dihedral": [lambda a, k=k: np.rot90(a, -k) for k in range(4)]
    + [lambda a, k=k: np.rot90(a, -k).swapaxes(0, 1) for k in range(4)],
}


def test_the_choices_are_the_configs():
    assert tuple(TRANSFORMS) == config.TEST_TIME_TRANSFORMS


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_set_is_the_group_it_names(name, rng):
    """Same images as numpy's rotations/flips (on (H, W) axes), no repeats."""
    x = rng.random((1, 4, 4, 1)).astype(np.float32)
    ours = sorted(
        transform(tf.constant(x), op).numpy().tobytes() for op in TRANSFORMS[name]
    )
    theirs = sorted(
        np.ascontiguousarray(f(x[0]))[np.newaxis].tobytes() for f in NUMPY[name]
    )
    assert ours == theirs
    assert len(set(ours)) == len(ours)


@pytest.mark.parametrize("op", TRANSFORMS["dihedral"])
def test_invert_undoes_transform_on_rectangular_tiles(op, rng):
    x = tf.constant(rng.random((2, 6, 10, 3)).astype(np.float32))
    turned = transform(x, op)
    assert turned.shape == ((2, 10, 6, 3) if op[0] else (2, 6, 10, 3))
    np.testing.assert_array_equal(invert(turned, op).numpy(), x.numpy())


def position_dependent(x, training=False):
    """Not equivariant to anything: weights each pixel by its position, and
    doubles the grid (a scale-2 model's output shape)."""
    h, w = x.shape[1], x.shape[2]
    weight = tf.reshape(tf.range(h * w, dtype=tf.float32), (1, h, w, 1)) / (h * w)
    y = x * (1.0 + weight)
    return tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_average_matches_a_numpy_reference(name, rng):
    x = rng.random((1, 8, 8, 2)).astype(np.float32)
    got = averaged_prediction(position_dependent, tf.constant(x), name).numpy()
    outputs = [
        inverse(position_dependent(tf.constant(f(x[0]).copy()[np.newaxis]))[0].numpy())
        for f, inverse in zip(NUMPY[name], NUMPY_INVERSE[name], strict=True)
    ]
    np.testing.assert_allclose(got[0], np.mean(outputs, axis=0), rtol=1e-6)
    if name != "none":  # the model is not equivariant: averaging changed it
        plain = position_dependent(tf.constant(x)).numpy()
        assert np.abs(got - plain).max() > 1e-3


def test_an_equivariant_model_is_unchanged(rng):
    x = tf.constant(rng.random((2, 8, 12, 3)).astype(np.float32))
    squared = averaged_prediction(lambda t, training=False: t**2, x, "dihedral")
    np.testing.assert_allclose(squared.numpy(), x.numpy() ** 2, rtol=1e-6)
    with pytest.raises(ValueError, match="test_time_transforms must be one of"):
        averaged_prediction(lambda t, training=False: t, x, "octagon")


def tiny_model(**kwargs) -> SuperResolutionUNet:
    model = SuperResolutionUNet(frames=2, scale=2, depth=2, filters=4, **kwargs)
    head = model.get_layer("head").kernel
    head.assign(tf.random.normal(head.shape, stddev=0.1, seed=3))
    return model


def test_whole_image_prediction_averages_the_turned_images(rng):
    """The tiler's per-tile average equals averaging whole-image predictions
    of the turned image (normalization is the same for every orientation),
    away from the border, across tile seams. Sides are multiples of the
    model's size step: otherwise the pooling grid of a turned image starts
    at another corner and the two differ slightly."""
    model = tiny_model()
    image = (rng.random((300, 260, 2)) * 1000).astype(np.float32)
    plain = Predictor(model, tile=128, test_time_transforms="none")
    averaged = Predictor(model, tile=128, test_time_transforms="turns")(image)
    reference = np.mean(
        [
            inverse(plain(np.ascontiguousarray(f(image))))
            for f, inverse in zip(NUMPY["turns"], NUMPY_INVERSE["turns"], strict=True)
        ],
        axis=0,
    )
    border = 2 * model.halo
    inner = np.s_[border:-border, border:-border]
    scale = np.abs(reference[inner]).max()
    assert np.abs(averaged[inner] - reference[inner]).max() < 1e-4 * scale
    assert np.abs(averaged[inner] - plain(image)[inner]).max() > 1e-3 * scale


def test_the_model_carries_its_choice_and_old_configs_load_without():
    model = tiny_model(test_time_transforms="half-turn")
    assert model.get_config()["test_time_transforms"] == "half-turn"
    assert Predictor(model).test_time_transforms == "half-turn"
    assert Predictor(model, test_time_transforms="none").test_time_transforms == "none"
    old = model.get_config()
    del old["test_time_transforms"]  # a model saved before the option
    assert SuperResolutionUNet.from_config(old).test_time_transforms == "none"
    with pytest.raises(ValueError, match="test_time_transforms"):
        tiny_model(test_time_transforms="auto")
    with pytest.raises(ValueError, match="test_time_transforms"):
        Predictor(model, test_time_transforms="all")


def test_fit_builds_models_with_the_configs_choice_dihedral_by_default():
    """Dihedral even without augmentation or with the half-turn only: it
    measured better there too (README, Quality: test-time averaging)."""
    cfg = FitConfig()
    cfg.model.depth, cfg.model.filters = 1, 2
    assert cfg.model.test_time_transforms == "dihedral"
    assert build_model(cfg, 9, 2).test_time_transforms == "dihedral"
    cfg.model.test_time_transforms = "turns"
    assert build_model(cfg, 9, 2).test_time_transforms == "turns"
    with pytest.raises(UserError, match="--test-time-transforms: 'auto' is not one"):
        config.set_value(cfg, "model.test_time_transforms", "auto")


def test_predict_cli_overrides_the_models_choice(tmp_path, capsys, rng):
    import tifffile

    from keras_unet_sr.cli import main

    model = tiny_model(test_time_transforms="dihedral")
    model.save(tmp_path / "m.keras")
    image = (rng.random((2, 40, 48)) * 1000).astype(np.float32)  # (F, H, W)
    tifffile.imwrite(tmp_path / "x.tif", image, metadata={"axes": "CYX"})
    frames_last = np.moveaxis(image, 0, -1)
    for choice in ("none", "turns"):
        out = tmp_path / choice
        argv = ["predict", str(tmp_path / "m.keras"), str(tmp_path / "x.tif")]
        assert main([*argv, "--out", str(out), "--test-time-transforms", choice]) == 0
        expected = Predictor(model, test_time_transforms=choice)(frames_last)
        got = tifffile.imread(out / "x.tif")
        np.testing.assert_allclose(got, expected[..., 0], rtol=1e-5, atol=1e-3)
    argv += ["--server", "localhost:1", "--test-time-transforms", "none"]
    assert main([*argv, "--out", str(tmp_path / "s")]) == 2
    assert "--test-time-transforms are fixed in the exported bundle" in (
        capsys.readouterr().err
    )


def test_in_a_graph_each_call_waits_for_the_previous_one():
    """Independent calls could run at once (8x the activations); each
    orientation's input is ordered after the running sum of the last."""
    seen = []

    def recording(x, training=False):
        seen.append(x)
        return x * 2.0

    tf.function(
        lambda x: averaged_prediction(recording, x, "dihedral")
    ).get_concrete_function(tf.TensorSpec((1, 8, 8, 1), tf.float32))

    def waits(tensor, depth=4):
        op = tensor.op
        if op.control_inputs:
            return True
        return depth > 0 and any(waits(t, depth - 1) for t in op.inputs)

    assert len(seen) == 8
    assert not waits(seen[0]) and all(waits(x) for x in seen[1:])
