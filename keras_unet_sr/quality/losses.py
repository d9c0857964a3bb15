"""The SSIM-L1 training loss (Zhao, Gallo, Frosio & Kautz 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_unet_sr.config import PIXEL_LOSSES
from keras_unet_sr.model.layers import PACKAGE
from keras_unet_sr.quality import image_quality


@keras.saving.register_keras_serializable(package=PACKAGE)
class SSIML1Loss(keras.losses.Loss):
    """`alpha * (1 - SSIM) + (1 - alpha) * L1` (or L2), per image.

    SSIM rewards local structure and contrast but ignores absolute offsets
    in flat regions; L1 pins intensities down. Zhao et al. found the mix
    (alpha 0.84) better than either alone for image restoration. SSIM uses
    a Gaussian window; with `multiscale=True` it is MS-SSIM, which needs
    tiles of at least `filter_size * 2**(len(power_factors) - 1)` pixels
    (176 by default) and raises a clear `ValueError` otherwise.

    Everything is computed in float32, so the loss is stable under a
    `mixed_float16` policy, and its gradients are finite on constant tiles.

    Args:
        alpha: Weight of the SSIM term in [0, 1].
        max_val: Dynamic range of the (normalized) images.
        filter_size: Gaussian window size.
        filter_sigma: Gaussian window sigma.
        multiscale: Use MS-SSIM instead of SSIM.
        power_factors: MS-SSIM scale weights (their count is the scale count).
        pixel: The pixel term: `"l1"` (mean absolute error) or `"l2"`
            (mean squared error: with `alpha=0` the loss PSNR measures).
        reduction: Keras loss reduction.
        name: Loss name.
    """

    def __init__(
        self,
        alpha: float = 0.84,
        max_val: float = 1.0,
        filter_size: int = 11,
        filter_sigma: float = 1.5,
        multiscale: bool = False,
        power_factors: Sequence[float] = image_quality.MS_SSIM_POWER_FACTORS,
        pixel: str = "l1",
        reduction: str = "sum_over_batch_size",
        name: str = "ssim_l1",
        **kwargs,
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.max_val = float(max_val)
        self.filter_size = int(filter_size)
        self.filter_sigma = float(filter_sigma)
        self.multiscale = bool(multiscale)
        self.power_factors = tuple(float(p) for p in power_factors)
        if pixel not in PIXEL_LOSSES:
            raise ValueError(f"pixel must be one of {PIXEL_LOSSES}, got {pixel!r}")
        self.pixel = pixel

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        error = y_true - y_pred
        error = tf.abs(error) if self.pixel == "l1" else tf.square(error)
        pixel_term = tf.reduce_mean(error, axis=(-3, -2, -1))
        if self.alpha == 0.0:
            return pixel_term
        if self.multiscale:
            similarity = image_quality.ms_ssim(
                y_true,
                y_pred,
                self.max_val,
                self.power_factors,
                self.filter_size,
                self.filter_sigma,
            )
        else:
            similarity = image_quality.ssim(
                y_true, y_pred, self.max_val, self.filter_size, self.filter_sigma
            )
        return self.alpha * (1.0 - similarity) + (1.0 - self.alpha) * pixel_term

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "max_val": self.max_val,
            "filter_size": self.filter_size,
            "filter_sigma": self.filter_sigma,
            "multiscale": self.multiscale,
            "power_factors": list(self.power_factors),
            "pixel": self.pixel,
        }
