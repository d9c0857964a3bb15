"""PSNR and SSIM as Keras training metrics (on normalized images)."""

from __future__ import annotations

import keras

from keras_unet_sr.model.layers import PACKAGE
from keras_unet_sr.quality import image_quality


@keras.saving.register_keras_serializable(package=PACKAGE)
def psnr(y_true, y_pred, max_val: float = 1.0):
    """Per-image PSNR in dB."""
    return image_quality.psnr(y_true, y_pred, max_val)


@keras.saving.register_keras_serializable(package=PACKAGE)
def ssim(y_true, y_pred, max_val: float = 1.0):
    """Per-image Gaussian-window SSIM."""
    return image_quality.ssim(y_true, y_pred, max_val)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean per-image PSNR (dB) over the batches seen.

    Args:
        max_val: Dynamic range of the images (1 for normalized data).
        name: Metric name; `val_` is prefixed for validation by Keras.
    """

    def __init__(self, max_val: float = 1.0, name: str = "psnr", dtype=None):
        super().__init__(psnr, name=name, dtype=dtype, max_val=max_val)
        self.max_val = float(max_val)
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "max_val": self.max_val}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SSIM(keras.metrics.MeanMetricWrapper):
    """Mean per-image SSIM over the batches seen.

    Args:
        max_val: Dynamic range of the images (1 for normalized data).
        name: Metric name.
    """

    def __init__(self, max_val: float = 1.0, name: str = "ssim", dtype=None):
        super().__init__(ssim, name=name, dtype=dtype, max_val=max_val)
        self.max_val = float(max_val)
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "max_val": self.max_val}
