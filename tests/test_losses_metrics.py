"""SSIM-L1 loss and the PSNR/SSIM metrics against TensorFlow's references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_unet_sr import PSNR, SSIM, SSIML1Loss, SuperResolutionUNet
from keras_unet_sr.quality import image_quality


def blobs(rng, shape, sigma=2.0):
    """Smooth random images, more microscopy-like than white noise."""
    x = rng.random(shape, dtype=np.float32)
    return tf.nn.avg_pool2d(x, 5, 1, "SAME").numpy()


@pytest.mark.parametrize(
    ("shape", "max_val"),
    [((2, 32, 32, 1), 1.0), ((3, 40, 27, 3), 1.0), ((1, 11, 64, 2), 255.0)],
)
def test_ssim_matches_tf_image_ssim(shape, max_val, rng):
    x = blobs(rng, shape) * max_val
    y = np.clip(x + rng.normal(0, 0.05 * max_val, shape), 0, max_val).astype(np.float32)
    ours = image_quality.ssim(x, y, max_val)
    reference = tf.image.ssim(x, y, max_val)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_ms_ssim_matches_tf_image_ssim_multiscale(rng):
    x = blobs(rng, (2, 192, 180, 1))
    y = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(
        image_quality.ms_ssim(x, y), tf.image.ssim_multiscale(x, y, 1.0), atol=1e-4
    )


def test_multiscale_loss_on_small_tiles_fails_clearly(rng):
    loss = SSIML1Loss(multiscale=True)
    x = rng.random((1, 128, 128, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="at least 176 x 176"):
        loss(x, x)


def test_psnr_matches_tf_image_psnr(rng):
    x = rng.random((4, 16, 16, 1), dtype=np.float32)
    y = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    np.testing.assert_allclose(
        image_quality.psnr(x, y), tf.image.psnr(x, y, 1.0), rtol=1e-5
    )


@pytest.mark.parametrize("multiscale", [False, True])
def test_loss_is_zero_for_identical_images_and_positive_otherwise(multiscale, rng):
    loss = SSIML1Loss(multiscale=multiscale)
    x = blobs(rng, (2, 176, 176, 1))
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, x + 0.05)) > 0.0
    assert float(loss(x, np.flip(x, 1))) > float(loss(x, x + 0.05))


def test_loss_formula_mixes_ssim_and_l1(rng):
    x = blobs(rng, (2, 32, 32, 1))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    ssim = image_quality.ssim(x, y).numpy()
    l1 = np.abs(x - y).mean(axis=(1, 2, 3))
    expected = np.mean(0.84 * (1 - ssim) + 0.16 * l1)
    assert float(SSIML1Loss()(x, y)) == pytest.approx(expected, rel=1e-5)
    assert float(SSIML1Loss(alpha=0.0)(x, y)) == pytest.approx(l1.mean(), rel=1e-5)
    l2 = ((x - y) ** 2).mean(axis=(1, 2, 3))
    mixed = SSIML1Loss(alpha=0.5, pixel="l2")(x, y)
    assert float(mixed) == pytest.approx(np.mean(0.5 * (1 - ssim) + 0.5 * l2), rel=1e-5)
    mse = SSIML1Loss(alpha=0.0, pixel="l2")(x, y)
    assert float(mse) == pytest.approx(
        float(keras.losses.MeanSquaredError()(x, y)), rel=1e-5
    )
    with pytest.raises(ValueError, match="pixel"):
        SSIML1Loss(pixel="l3")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("multiscale", [False, True])
def test_gradients_are_finite_on_constant_tiles(dtype, multiscale):
    loss = SSIML1Loss(multiscale=multiscale)
    target = tf.fill((2, 176, 176, 1), 0.3)
    for value in (0.0, 0.3, 1.0):
        prediction = tf.Variable(tf.cast(tf.fill((2, 176, 176, 1), value), dtype))
        with tf.GradientTape() as tape:
            value_ = loss(target, prediction)
        grad = tape.gradient(value_, prediction)
        assert np.isfinite(float(value_))
        assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))


def test_loss_decreases_when_training_a_tiny_model(rng):
    model = SuperResolutionUNet(frames=3, scale=2, depth=1, filters=8)
    low = blobs(rng, (4, 16, 16, 3))
    high = tf.image.resize(low[..., :1] ** 2, (32, 32)).numpy()
    model.compile(keras.optimizers.Adam(3e-3), loss=SSIML1Loss())
    history = model.fit(low, high, epochs=30, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]


def test_loss_and_metrics_serialize(tmp_path, rng):
    loss = SSIML1Loss(alpha=0.5, multiscale=True, filter_size=7, pixel="l2")
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, SSIML1Loss)
    assert clone.get_config() == loss.get_config()

    model = SuperResolutionUNet(frames=1, depth=1, filters=4)
    model.compile("adam", loss=SSIML1Loss(alpha=0.6), metrics=[PSNR(), SSIM()])
    x = blobs(rng, (2, 16, 16, 1))
    model.fit(x, x, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.loss.alpha == pytest.approx(0.6)
    results = loaded.evaluate(x, x, verbose=0, return_dict=True)
    assert set(results) == {"loss", "psnr", "ssim"}


def test_metrics_average_per_image_values(rng):
    x = rng.random((4, 16, 16, 1), dtype=np.float32)
    y = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    psnr, ssim = PSNR(), SSIM()
    psnr.update_state(x, y)
    ssim.update_state(x, y)
    assert float(psnr.result()) == pytest.approx(
        float(tf.reduce_mean(tf.image.psnr(x, y, 1.0))), rel=1e-5
    )
    assert float(ssim.result()) == pytest.approx(
        float(tf.reduce_mean(tf.image.ssim(x, y, 1.0))), abs=1e-4
    )
    assert float(PSNR()(x, x)) == pytest.approx(100.0)
