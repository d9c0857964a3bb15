"""The camera's noise model, estimated from raw frames, and photon-noise resampling.

Raw counts are `x = offset + gain * Poisson(photons) + Normal(0, read_noise)`
(ADU). `estimate_camera_noise` recovers `offset`, `gain` and `read_noise` from
the raw frames alone:

* `offset`: the 0.1th percentile of the raw values (bias plus the faintest
  background; counting that background as zero photons only under-states the
  noise added there);
* `gain` and `read_noise`: the photon-transfer line `variance = gain * (mean -
  offset) + read_noise**2`, fitted over 2x2 blocks: each block's mean, and its
  diagonal Haar detail `(a - b - c + d) / 2` (variance sigma**2 for white noise,
  blind to flat signal and to edges along the axes); the variance per
  intensity bin is taken robustly (1.4826 * MAD)**2, so sparse structure does
  not count as noise.

It assumes white noise on the camera grid: frames that were interpolated
(e.g. the DL-SIM data, upsampled 2x by its authors) have correlated noise, for
which the estimate is too low; give `--camera-offset` / `--camera-gain` then.

`simulate_low_light` (TF ops, per training tile) turns a high-light tile into
one taken with `1/k` of the light and rescaled by `k`:
`offset + k * gain * Poisson(max(x - offset, 0) / (k * gain)) + Normal(0, k *
read_noise)`. Its mean is the input's (for `x >= offset`) and its variance
`k * gain * (x - offset) + (k * read_noise)**2`, the noise of the dimmer
acquisition in the original intensity units, so the image's normalization
stays valid.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

OFFSET_PERCENTILE = 0.1
_BINS = 16


@dataclasses.dataclass(frozen=True)
class CameraNoise:
    """Camera offset (ADU), gain (ADU per photon) and read noise (ADU rms)."""

    offset: float
    gain: float
    read_noise: float

    def as_array(self) -> np.ndarray:
        return np.asarray([self.offset, self.gain, self.read_noise], np.float32)


def estimate_camera_noise(frames: np.ndarray) -> CameraNoise:
    """Estimate the noise model of raw frames `(H, W[, F])` (see module doc)."""
    x = np.asarray(frames, np.float64)
    if x.ndim == 2:
        x = x[..., np.newaxis]
    offset = float(np.percentile(x, OFFSET_PERCENTILE))
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    a, b = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2]
    c, d = x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
    mean = ((a + b + c + d) / 4).ravel()
    detail = ((a - b - c + d) / 2).ravel()
    # Intensity bins by quantile, the brightest 2 % left out (saturation).
    edges = np.quantile(mean, np.linspace(0.0, 0.98, _BINS + 1))
    means, variances, weights = [], [], []
    for low, high in itertools.pairwise(edges):
        inside = (mean >= low) & (mean < high)
        if inside.sum() < 50:
            continue
        values = detail[inside]
        mad = np.median(np.abs(values - np.median(values)))
        means.append(mean[inside].mean())
        variances.append((1.4826 * mad) ** 2)
        weights.append(inside.sum())
    if len(means) < 2:
        return CameraNoise(offset, 1.0, 0.0)
    slope, intercept = np.polyfit(
        np.asarray(means) - offset, variances, 1, w=np.sqrt(weights)
    )
    gain = float(max(slope, 1e-3))
    read_noise = float(np.sqrt(max(intercept, 0.0)))
    return CameraNoise(offset, gain, read_noise)


def simulate_low_light(
    raw: tf.Tensor, camera: tf.Tensor, factor: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
    """Raw tiles as if taken with `1/factor` of the light (see module doc).

    Args:
        raw: Raw camera values, any shape, float32.
        camera: `(offset, gain, read_noise)` float32.
        factor: Light reduction `k >= 1`, a scalar or broadcastable to `raw`.
        seed: Stateless seed `(2,)`.
    """
    offset, gain, read_noise = camera[0], camera[1], camera[2]
    poisson_seed, normal_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2)
    )
    scale = tf.maximum(gain, 1e-6) * factor
    photons = tf.maximum(raw - offset, 0.0) / scale
    counts = tf.random.stateless_poisson(
        tf.shape(raw), poisson_seed, photons, dtype=tf.float32
    )
    read = tf.random.stateless_normal(tf.shape(raw), normal_seed) * read_noise
    return offset + scale * counts + factor * read
