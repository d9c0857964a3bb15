"""Small registered layers used by the U-Net.

Registered, with complete configs, so the saved `.keras` file loads in safe
mode (no `Lambda` layers, no pickled Python code).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

PACKAGE = "keras_unet_sr"


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel upsampling (depth-to-space, Shi et al. 2016).

    Rearranges `(B, H, W, C * s * s)` into `(B, H * s, W * s, C)`. The network
    learns the fine-grid detail itself instead of receiving a bicubic
    pre-resized input, and costs stay at the coarse resolution.

    Args:
        scale: Integer upsampling factor `s`.
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, inputs):
        s = self.scale
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        channels = inputs.shape[-1] // (s * s)
        x = ops.reshape(inputs, (batch, height, width, s, s, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (batch, height * s, width * s, channels))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.scale
        return (
            b,
            None if h is None else h * s,
            None if w is None else w * s,
            c // (s * s),
        )

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def resize(x, scale: int, interpolation: str):
    """Every channel of `x` interpolated `scale` times finer (pixel centres
    aligned, as `tf.image.resize`)."""
    if scale == 1:
        return x
    # tf.image.resize, not keras.ops: Keras 3.15's resize needs static sizes,
    # and tiles in the serving graph have dynamic ones.
    return tf.image.resize(x, tf.shape(x)[1:3] * scale, method=interpolation)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InterpolatedFrames(keras.layers.Layer):
    """Every input frame interpolated to the output grid (the input of a
    U-Net that works on the output grid, as CARE's does).

    Args:
        scale: Integer upsampling factor.
        interpolation: `"bilinear"`, `"bicubic"` or `"nearest"`.
    """

    def __init__(self, scale: int, interpolation: str = "bicubic", **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)
        self.interpolation = interpolation

    def call(self, inputs):
        return resize(inputs, self.scale, self.interpolation)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.scale
        return (b, None if h is None else h * s, None if w is None else w * s, c)

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "interpolation": self.interpolation,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class InterpolatedFrameMean(keras.layers.Layer):
    """Mean over the input frames, interpolated to the output grid.

    For raw SIM frames the mean is the widefield image; for a single frame it
    is the image itself. Added to the network output it gives a residual
    U-Net whose untrained state already returns the interpolated input.

    Args:
        scale: Integer upsampling factor.
        interpolation: `"bilinear"`, `"bicubic"` or `"nearest"`.
        out_channels: Number of output channels the mean is repeated to.
    """

    def __init__(
        self,
        scale: int,
        interpolation: str = "bilinear",
        out_channels: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.scale = int(scale)
        self.interpolation = interpolation
        self.out_channels = int(out_channels)

    def call(self, inputs):
        x = resize(
            ops.mean(inputs, axis=-1, keepdims=True), self.scale, self.interpolation
        )
        if self.out_channels > 1:
            x = ops.repeat(x, self.out_channels, axis=-1)
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.scale
        return (
            b,
            None if h is None else h * s,
            None if w is None else w * s,
            self.out_channels,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "interpolation": self.interpolation,
            "out_channels": self.out_channels,
        }
