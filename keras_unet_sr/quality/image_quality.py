"""SSIM, MS-SSIM and PSNR in TensorFlow ops.

One implementation serves the loss, the training metrics and the evaluation
function. It follows `tf.image.ssim` (Wang et al. 2004: Gaussian window of
size 11 and sigma 1.5, k1=0.01, k2=0.03, 'valid' filtering), but filters with
a separable kernel, always computes in float32 (stable under mixed
precision) and gives finite gradients on constant tiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# Wang, Simoncelli & Bovik 2003, the weights `tf.image.ssim_multiscale` uses.
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# MS-SSIM raises clipped contrast terms to fractional powers; the gradient of
# x**p at x=0 is infinite, so the base is kept at least this large.
_MS_SSIM_FLOOR = 1e-6


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """Normalized 1-D Gaussian window (the 2-D one is its outer product)."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-0.5 * (coords / sigma) ** 2)
    return (window / window.sum()).astype(np.float32)


def min_ms_ssim_size(filter_size: int = 11, scales: int = 5) -> int:
    """Smallest image side MS-SSIM accepts: the window fits the coarsest scale."""
    return filter_size * 2 ** (scales - 1)


def _check_static_size(x: tf.Tensor, minimum: int, what: str) -> None:
    height, width = x.shape[-3], x.shape[-2]
    for side in (height, width):
        if side is not None and side < minimum:
            raise ValueError(
                f"{what} needs images of at least {minimum} x {minimum} pixels; "
                f"got {height} x {width}. Use larger tiles or a smaller window."
            )


def _ssim_terms(x, y, max_val, window, k1, k2):
    """Per-channel mean SSIM and contrast-structure term, shape `(B, C)`."""
    channels = tf.shape(x)[-1]
    size = window.shape[0]
    wy = tf.tile(tf.reshape(window, (size, 1, 1, 1)), (1, 1, channels, 1))
    wx = tf.tile(tf.reshape(window, (1, size, 1, 1)), (1, 1, channels, 1))

    def blur(t):
        t = tf.nn.depthwise_conv2d(t, wy, (1, 1, 1, 1), "VALID")
        return tf.nn.depthwise_conv2d(t, wx, (1, 1, 1, 1), "VALID")

    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    mean_x, mean_y = blur(x), blur(y)
    mean_xy2 = 2.0 * mean_x * mean_y
    mean_sq = tf.square(mean_x) + tf.square(mean_y)
    luminance = (mean_xy2 + c1) / (mean_sq + c1)
    cov2 = 2.0 * blur(x * y) - mean_xy2
    var_sum = blur(tf.square(x) + tf.square(y)) - mean_sq
    cs = (cov2 + c2) / (var_sum + c2)
    ssim_per_channel = tf.reduce_mean(luminance * cs, axis=(-3, -2))
    cs_per_channel = tf.reduce_mean(cs, axis=(-3, -2))
    return ssim_per_channel, cs_per_channel


def ssim(
    x: tf.Tensor,
    y: tf.Tensor,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tf.Tensor:
    """Mean SSIM per image of `(B, H, W, C)` batches, shape `(B,)`."""
    x = tf.cast(x, tf.float32)
    y = tf.cast(y, tf.float32)
    _check_static_size(x, filter_size, "SSIM")
    window = tf.constant(gaussian_window(filter_size, filter_sigma))
    value, _ = _ssim_terms(x, y, max_val, window, k1, k2)
    return tf.reduce_mean(value, axis=-1)


def _halve(t):
    """2x2 average pooling; odd sides are padded symmetrically first (as TF)."""
    height, width = tf.shape(t)[1], tf.shape(t)[2]
    t = tf.pad(t, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]], "SYMMETRIC")
    return tf.nn.avg_pool2d(t, 2, 2, "VALID")


def ms_ssim(
    x: tf.Tensor,
    y: tf.Tensor,
    max_val: float = 1.0,
    power_factors: Sequence[float] = MS_SSIM_POWER_FACTORS,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tf.Tensor:
    """Multi-scale SSIM per image, shape `(B,)`.

    Raises:
        ValueError: if the images are too small for the coarsest scale
            (`filter_size * 2**(len(power_factors) - 1)` pixels).
    """
    x = tf.cast(x, tf.float32)
    y = tf.cast(y, tf.float32)
    _check_static_size(x, min_ms_ssim_size(filter_size, len(power_factors)), "MS-SSIM")
    window = tf.constant(gaussian_window(filter_size, filter_sigma))
    terms = []
    for scale in range(len(power_factors)):
        if scale:
            x, y = _halve(x), _halve(y)
        value, cs = _ssim_terms(x, y, max_val, window, k1, k2)
        terms.append(cs if scale < len(power_factors) - 1 else value)
    terms = tf.maximum(tf.stack(terms, axis=-1), _MS_SSIM_FLOOR)
    weights = tf.constant(power_factors, tf.float32)
    return tf.reduce_mean(tf.reduce_prod(terms**weights, axis=-1), axis=-1)


def psnr(x: tf.Tensor, y: tf.Tensor, max_val: float = 1.0) -> tf.Tensor:
    """Peak signal-to-noise ratio per image in dB, shape `(B,)`.

    Identical images give a large finite value (the MSE is floored at 1e-10
    of the squared range) so running means stay finite.
    """
    x = tf.cast(x, tf.float32)
    y = tf.cast(y, tf.float32)
    mse = tf.reduce_mean(tf.square(x - y), axis=(-3, -2, -1))
    mse = tf.maximum(mse, 1e-10 * max_val**2)
    return 10.0 * tf.math.log(max_val**2 / mse) / tf.math.log(10.0)
