"""Whole-image prediction with a trained model, and the bicubic baseline.

`Predictor.graph_fn` is the single graph that local prediction runs and that
the TF-Serving export wraps: frame selection, per-image normalization,
tiling, stitching and de-normalization.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_unet_sr.frames import select_frames
from keras_unet_sr.tiling import TilingPlan, plan_for_model, tiled_predict
from keras_unet_sr.unet import SuperResolutionUNet


class Predictor:
    """Runs a `SuperResolutionUNet` on raw images of any size.

    Args:
        model: The trained model.
        tile: Tile side in input pixels (default: `tiling.DEFAULT_TILE`).
        overlap: Tile overlap (default: exact, from the model's halo).
        batch_size: Tiles per model call.
        jit_compile: Compile the whole graph with XLA.
    """

    def __init__(
        self,
        model: SuperResolutionUNet,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        jit_compile: bool = False,
    ):
        self.model = model
        self.plan: TilingPlan = plan_for_model(
            model, tile=tile, overlap=overlap, batch_size=batch_size
        )
        self.graph_fn = tf.function(
            self.predict_graph,
            input_signature=[tf.TensorSpec((None, None, None, None), tf.float32)],
            jit_compile=jit_compile,
            reduce_retracing=True,
        )

    def predict_graph(self, images: tf.Tensor) -> tf.Tensor:
        """Raw `(B, H, W, F)` stacks -> `(B, s*H, s*W, C)` in input units."""
        model = self.model
        images = select_frames(images, model.frames, model.frame_subset)
        return tiled_predict(model, images, self.plan, model.percentiles)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Predict one `(H, W, F)` image or a `(B, H, W, F)` batch (numpy)."""
        image = np.asarray(image, dtype=np.float32)
        single = image.ndim == 3
        batch = image[np.newaxis] if single else image
        output = self.graph_fn(tf.constant(batch)).numpy()
        return output[0] if single else output


def load_model(path: str) -> SuperResolutionUNet:
    """Load a `model.keras` in safe mode, without the training state."""
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def bicubic_baseline(image: np.ndarray, model: SuperResolutionUNet) -> np.ndarray:
    """The classical answer: the mean of the model's frames, bicubic-resized.

    For raw SIM frames the mean is the widefield image.
    """
    frames = select_frames(
        tf.constant(image[np.newaxis], tf.float32), model.frames, model.frame_subset
    )
    mean = tf.reduce_mean(frames, axis=-1, keepdims=True)
    if model.scale > 1:
        size = tf.shape(mean)[1:3] * model.scale
        mean = tf.image.resize(mean, size, method="bicubic")
    return mean[0].numpy()
