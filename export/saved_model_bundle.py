"""TF-Serving bundles: `BASE/<version>/` SavedModels built with ExportArchive.

Signatures (all `tensorflow/serving/predict`):

* `serving_default`: `image` float32, the raw image as the microscope gives
  it: `(H, W)`, `(H, W, frames)` or `(batch, H, W, frames)`, any size, the
  full raw stack for a frame-subset model. Frame selection, per-image
  normalization, tiling, stitching and de-normalization happen in the graph
  (the same graph as local `predict`). Returns `sr_image` float32 in the
  input's units, with the input's rank (`(sH, sW)`, `(sH, sW, C)` or
  `(batch, sH, sW, C)`).
* `predict_uint16`: the same for uint16 camera images (half the bytes on the
  wire); a signature has one dtype, so integer data other than uint16 is
  sent as float32 (exact up to 2**24).
* `tiles`: the model on normalized `(k, t, t, frames)` tiles, `t` a
  multiple of `size_multiple` -> `sr_tiles`, with the same test-time
  averaging as the whole-image signatures.
* `metadata`: no inputs; returns scale, frames, frame subset, tile, overlap,
  halo, size multiple, percentiles, test-time transforms and the package
  version.

`assets.extra/tf_serving_warmup_requests` holds realistic requests, replayed
by TF-Serving (and `keras-unet-sr serve`) before a version goes live.
Versions appear atomically: the bundle is written to a hidden folder in
`BASE` and renamed to `BASE/<version>` when complete, so a server polling
`BASE` never sees a partial version. `BASE/models.config` (a
`model_config_list`) lets `tensorflow_model_server --model_config_file`
serve it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_unet_sr import __version__
from keras_unet_sr.errors import UserError
from keras_unet_sr.export import bundle_layout, serving_protocol
from keras_unet_sr.files.atomic import atomic_path
from keras_unet_sr.files.folders import make_output_folder
from keras_unet_sr.inference.predictor import Predictor
from keras_unet_sr.inference.transforms import averaged_prediction
from keras_unet_sr.model.unet import SuperResolutionUNet
from keras_unet_sr.progress import track

DEFAULT_WARMUP_SIZES = ((256, 256), (1024, 1024))
METADATA_FILE = bundle_layout.METADATA_FILE


def _as_batch(image: tf.Tensor) -> tf.Tensor:
    """Rank 2/3/4 raw input -> `(B, H, W, F)`; anything else is refused.

    Failures are `InvalidArgumentError`s, which TF-Serving returns to the
    client as INVALID_ARGUMENT with the message.
    """
    rank, shape = tf.rank(image), tf.shape(image)
    tf.debugging.Assert(
        tf.logical_and(rank >= 2, rank <= 4),
        ["image must be (H, W), (H, W, frames) or (batch, H, W, frames); got", shape],
    )
    batch_shape = tf.switch_case(
        tf.clip_by_value(rank - 2, 0, 2),
        [
            lambda: tf.concat([[1], shape, [1]], 0),  # (H, W)
            lambda: tf.concat([[1], shape], 0),  # (H, W, F)
            lambda: shape,  # (B, H, W, F)
        ],
    )
    batch = tf.reshape(image, batch_shape)
    tf.debugging.Assert(
        tf.reduce_all(batch_shape[1:3] > 0), ["image has no pixels; shape", shape]
    )
    if image.dtype.is_floating:  # integers cannot be NaN; no float copy
        tf.debugging.assert_all_finite(batch, "image contains NaN or Inf pixels")
    return tf.ensure_shape(batch, (None, None, None, None))


def _like_input(output: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """`(B, sH, sW, C)` -> the input's rank: one image loses the batch axis,
    an `(H, W)` input with one output channel loses the channel axis too."""
    shape = tf.shape(output)
    single_channel_2d = tf.logical_and(tf.rank(image) == 2, shape[3] == 1)
    new_shape = tf.switch_case(
        tf.clip_by_value(tf.rank(image) - 2, 0, 2),
        [
            lambda: tf.cond(single_channel_2d, lambda: shape[1:3], lambda: shape[1:]),
            lambda: shape[1:],
            lambda: shape,
        ],
    )
    return tf.reshape(output, new_shape)


class ServingModule:
    """The graph functions a bundle exposes, over one `Predictor`."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.model: SuperResolutionUNet = predictor.model

    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        # Raw dtype in: each tile is cast to float32 inside the tiler.
        output = self.predictor.predict_graph(_as_batch(image))
        return {"sr_image": _like_input(output, image)}

    def tiles(self, tiles: tf.Tensor) -> dict[str, tf.Tensor]:
        transforms = self.predictor.test_time_transforms
        return {"sr_tiles": averaged_prediction(self.model, tiles, transforms)}

    def metadata(self) -> dict[str, tf.Tensor]:
        info = bundle_metadata(self.predictor)
        return {
            key: tf.constant(value, dtype=tf.string if isinstance(value, str) else None)
            for key, value in info.items()
            if not isinstance(value, dict)
        }


def bundle_metadata(predictor: Predictor) -> dict:
    """What a client needs to know about a bundle (also in assets.extra)."""
    model, plan = predictor.model, predictor.plan
    return {
        "scale": np.int32(model.scale),
        "frames": np.int32(model.frames),
        "frame_subset": np.asarray(model.frame_subset or [], np.int32),
        "out_channels": np.int32(model.out_channels),
        "tile": np.int32(plan.tile),
        "overlap": np.int32(plan.overlap),
        "tile_batch": np.int32(plan.batch_size),
        "halo": np.int32(model.halo),
        "size_multiple": np.int32(model.size_multiple),
        "percentiles": np.asarray(model.percentiles, np.float32),
        "test_time_transforms": predictor.test_time_transforms,
        "keras_unet_sr_version": __version__,
    }


def _next_version(base: Path) -> int:
    versions = bundle_layout.list_versions(base) if base.is_dir() else []
    return max(versions, default=0) + 1


def _warmup_requests(module: ServingModule, model_name: str, sizes) -> list:
    """Realistic camera-like requests: offset + Poisson-ish noise, per size."""
    rng = np.random.default_rng(0)
    frames = max(module.model.frame_subset or [module.model.frames - 1]) + 1
    requests = []
    for height, width in track(sizes, "export warmup", unit="size"):
        image = (100 + rng.gamma(2.0, 40.0, (height, width, frames))).astype(np.uint16)
        for signature, data in (
            ("serving_default", image.astype(np.float32)),
            ("predict_uint16", image),
        ):
            requests.append(
                serving_protocol.make_predict_request(
                    model_name, {"image": data}, signature_name=signature
                )
            )
    return requests


def export_bundle(
    model: SuperResolutionUNet | str | os.PathLike,
    base_dir: str | os.PathLike,
    version: int | None = None,
    *,
    model_name: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    warmup_sizes: Sequence[tuple[int, int]] = DEFAULT_WARMUP_SIZES,
    test_time_transforms: str | None = None,
) -> Path:
    """Write `base_dir/<version>/`, atomically, and `base_dir/models.config`.

    Args:
        model: A model or the path of a `model.keras`.
        base_dir: The TF-Serving model base path.
        version: Version number (default: the next free one).
        model_name: Name in `models.config` (default: the base folder's name).
        tile: Tile side of the serving graph.
        overlap: Tile overlap.
        batch_size: Tiles per model call.
        warmup_sizes: `(H, W)` of the recorded warmup requests.
        test_time_transforms: Test-time averaging inside the graph
            (default: the model's).

    Returns:
        The version folder.
    """
    if not isinstance(model, keras.Model):
        from keras_unet_sr.inference.predictor import load_model

        model = load_model(str(model))
    base = make_output_folder(Path(base_dir).expanduser().resolve())
    version = _next_version(base) if version is None else int(version)
    if version < 1:
        raise UserError(f"--version {version}: versions are positive integers")
    final = base / str(version)
    if final.exists():
        raise UserError(
            f"{final}: version {version} already exists; pick another --version"
        )
    model_name = model_name or base.name

    predictor = Predictor(
        model,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        test_time_transforms=test_time_transforms,
    )
    module = ServingModule(predictor)
    archive = keras.export.ExportArchive()
    archive.track(model)
    image_spec = tf.TensorSpec(None, tf.float32, name="image")
    archive.add_endpoint("serving_default", module.serve, [image_spec])
    archive.add_endpoint(
        "predict_uint16", module.serve, [tf.TensorSpec(None, tf.uint16, name="image")]
    )
    archive.add_endpoint(
        "tiles",
        module.tiles,
        [tf.TensorSpec((None, None, None, model.frames), tf.float32, name="tiles")],
    )
    archive.add_endpoint("metadata", module.metadata, [])

    # The version appears complete, or not at all (never replaced).
    with atomic_path(final, folder=True, replace=False) as staging:
        archive.write_out(str(staging), verbose=False)
        bundle_layout.write_warmup_requests(
            staging, _warmup_requests(module, model_name, warmup_sizes)
        )
        info = {
            k: np.asarray(v).tolist() for k, v in bundle_metadata(predictor).items()
        }
        info["model_config"] = predictor.model_config()
        (staging / "assets.extra" / METADATA_FILE).write_text(
            json.dumps(info, indent=2)
        )
    bundle_layout.write_models_config(base / "models.config", {model_name: base})
    return final
