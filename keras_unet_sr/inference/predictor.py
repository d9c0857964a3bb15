"""Whole-image prediction with a trained model, and the bicubic baseline.

`Predictor.graph_fn` is the single graph that local prediction runs and that
the TF-Serving export wraps: frame selection, per-image normalization,
tiling, stitching and de-normalization.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_unet_sr.data.frames import select_frames
from keras_unet_sr.inference.tiling import TilingPlan, plan_for_model, tiled_predict
from keras_unet_sr.inference.transforms import check_transforms
from keras_unet_sr.model.precision import resolve_precision
from keras_unet_sr.model.unet import SuperResolutionUNet


class Predictor:
    """Runs a `SuperResolutionUNet` on raw images of any size.

    Args:
        model: The trained model.
        tile: Tile side in input pixels (default: `tiling.DEFAULT_TILE`).
        overlap: Tile overlap (default: exact, from the model's halo).
        batch_size: Tiles per model call.
        jit_compile: Compile the whole graph with XLA.
        test_time_transforms: Average each tile's prediction over these
            flips and turns (`inference.transforms.TRANSFORMS`); default: the
            model's own `test_time_transforms`.
    """

    def __init__(
        self,
        model: SuperResolutionUNet,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        jit_compile: bool = False,
        test_time_transforms: str | None = None,
    ):
        self.model = model
        if test_time_transforms is None:
            test_time_transforms = getattr(model, "test_time_transforms", "none")
        self.test_time_transforms = check_transforms(test_time_transforms)
        self.plan: TilingPlan = plan_for_model(
            model, tile=tile, overlap=overlap, batch_size=batch_size
        )
        self.jit_compile = jit_compile
        self._graph_fns: dict[tf.DType, tf.types.experimental.GenericFunction] = {}

    def model_config(self) -> dict:
        """The model's `get_config()` with the averaging this predictor's
        graph does (an export may override the model's own): what exported
        metadata records."""
        return {
            **self.model.get_config(),
            "test_time_transforms": self.test_time_transforms,
        }

    def graph_fn(self, images: tf.Tensor) -> tf.Tensor:
        """`predict_graph`, traced once per input dtype for any shape: camera
        data stays uint16 (half the memory of float32) until each tile is
        cast, and a new image size never retraces."""
        if images.dtype not in self._graph_fns:
            spec = tf.TensorSpec((None, None, None, None), images.dtype)
            self._graph_fns[images.dtype] = tf.function(
                self.predict_graph, input_signature=[spec], jit_compile=self.jit_compile
            )
        return self._graph_fns[images.dtype](images)

    def predict_graph(self, images: tf.Tensor) -> tf.Tensor:
        """Raw `(B, H, W, F)` stacks -> `(B, s*H, s*W, C)` in input units."""
        model = self.model
        images = select_frames(images, model.frames, model.frame_subset)
        return tiled_predict(
            model,
            images,
            self.plan,
            model.percentiles,
            transforms=self.test_time_transforms,
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Predict one `(H, W, F)` image or a `(B, H, W, F)` batch (numpy).

        uint8, uint16 and float32 images go into the graph as they are;
        other types are converted to float32 first. The result is read-only
        (a view of the output tensor; `.copy()` it to modify it).
        """
        image = np.asarray(image)
        if image.dtype not in (np.uint8, np.uint16, np.float32):
            image = image.astype(np.float32)
        single = image.ndim == 3
        batch = image[np.newaxis] if single else image
        # A read-only view of the output tensor: `.numpy()` would copy it
        # (0.25 GiB for a 4096 x 4096 input at scale 2).
        output = np.asarray(self.graph_fn(tf.constant(batch)))
        return output[0] if single else output


def load_model(path: str, precision: str = "float32") -> SuperResolutionUNet:
    """Load a `model.keras` in safe mode, without the training state, to
    compute in `precision` (float32 by default: exact and portable, whatever
    precision it was trained in)."""
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return with_precision(model, precision)


def with_precision(model: SuperResolutionUNet, precision: str) -> SuperResolutionUNet:
    """The same model (same float32 weights) computing in `precision`."""
    precision = resolve_precision(precision)
    config = model.get_config()
    if keras.dtype_policies.get(config["dtype"]).name == precision:
        return model
    config["dtype"] = precision
    clone = type(model).from_config(config)
    clone.set_weights(model.get_weights())
    return clone
