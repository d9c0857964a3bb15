"""Whole-image prediction by overlapping tiles, entirely in TensorFlow ops.

The same graph runs for local `predict` and inside the TF-Serving signature.

How an image of any size becomes tiles and back:

* Along each axis the image is extended by a `guard` margin (>= the model's
  halo, a multiple of its pooling factor) by mirror reflection. The mirror
  index is computed arithmetically, so it works for any pad size, even
  for a 1-pixel image, and no padded copy of the image is ever made: each
  tile is gathered straight from the original pixels.
* Along each axis, as few tiles as the maximum side `tile` allows, each
  shrunk to just cover the image (so a finite image wastes little), start
  every `side - overlap` pixels. Strides are multiples of `2**depth`, so the
  pooling grid of every tile lines up with the whole image's and a tile
  computes exactly what the whole image would wherever it sees `halo`
  pixels of context.
* Tiles go through the model `batch_size` at a time in a `tf.while_loop`,
  so activation memory is bounded by the tile batch, not the image.
* Each tile output is weighted by a separable window that is `eps` in the
  guard band (where the tile lacks context), ramps smoothly (raised cosine)
  across the rest of the overlap and is 1 inside. It never reaches zero, so
  the normalizing weight sum is defined everywhere. The weighted tiles are
  overlap-added by reshapes and one shifted add per axis (linear in the
  number of pixels), divided by the summed window, and cropped to exactly
  `scale * H` by `scale * W`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import tensorflow as tf

from keras_unet_sr.config import PREDICT_TILE as DEFAULT_TILE
from keras_unet_sr.data.normalization import percentile_range, safe_scale
from keras_unet_sr.inference.transforms import averaged_prediction

DEFAULT_TILE_BATCH = 1
# Weight of a tile's guard band: small enough that a pixel seen without full
# context contributes < 1e-4 of its error, large enough to divide by.
WINDOW_FLOOR = 1e-4


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class TilingPlan:
    """Tile geometry for one model, in input pixels.

    Attributes:
        tile: Tile side.
        overlap: Overlap of neighbouring tiles (`guard` on each side plus
            the blending ramp).
        guard: Context margin around kept pixels.
        batch_size: Tiles per model call.
        multiple: The model's size multiple (`2**depth`).
        scale: The model's upsampling factor.
    """

    tile: int
    overlap: int
    guard: int
    batch_size: int
    multiple: int
    scale: int

    @property
    def ramp(self) -> int:
        return self.overlap - 2 * self.guard

    @property
    def overhead(self) -> float:
        """Model pixels computed per output pixel on a large image."""
        return (self.tile / (self.tile - self.overlap)) ** 2


def plan_tiling(
    halo: int,
    multiple: int,
    scale: int,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
) -> TilingPlan:
    """Validate and complete tile geometry for a model.

    Args:
        halo: The model's halo (`SuperResolutionUNet.halo`).
        multiple: The model's size multiple (`2**depth`).
        scale: The model's scale factor.
        tile: Tile side in input pixels (default `DEFAULT_TILE`, at least
            `2 * overlap`, rounded up to a multiple of `multiple`).
        overlap: Overlap in input pixels; default `2 * guard + multiple`,
            which makes tiled and whole-image predictions agree. Must be at
            least the halo; it is rounded up to a multiple of `multiple`.
        batch_size: Tiles per model call (default `DEFAULT_TILE_BATCH`).

    Raises:
        ValueError: for an overlap below the halo or a tile too small for it.
    """
    full_guard = _round_up(max(halo, 1), multiple)
    if overlap is None:
        overlap = 2 * full_guard + multiple
    overlap = _round_up(int(overlap), multiple)
    if overlap < halo:
        raise ValueError(
            f"overlap {overlap} is smaller than the model's halo ({halo} pixels)"
        )
    guard = min(full_guard, (overlap // 2) // multiple * multiple)
    if tile is None:
        tile = max(DEFAULT_TILE, _round_up(2 * overlap, multiple))
    tile = _round_up(int(tile), multiple)
    if tile < 2 * overlap:
        raise ValueError(
            f"tile {tile} must be at least twice the overlap ({overlap}); "
            f"use a tile of {_round_up(2 * overlap, multiple)} or more"
        )
    batch_size = DEFAULT_TILE_BATCH if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return TilingPlan(tile, overlap, guard, batch_size, multiple, scale)


def plan_for_model(model, **kwargs) -> TilingPlan:
    """`plan_tiling` with the halo, size multiple and scale of `model`."""
    return plan_tiling(model.halo, model.size_multiple, model.scale, **kwargs)


def _reflect_index(positions: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Reflect integer positions into [0, length), edge not repeated (numpy's
    'reflect' pad mode: ... 2 1 | 0 1 2 | 1 0 ...), for any pad width."""
    period = tf.maximum(2 * (length - 1), 1)
    folded = tf.math.floormod(positions, period)
    folded = tf.where(folded >= length, period - folded, folded)
    return tf.where(length > 1, folded, tf.zeros_like(folded))


class _Axis:
    """Tile layout along one axis of a `length`-pixel image (graph tensors)."""

    def __init__(self, length: tf.Tensor, plan: TilingPlan):
        full = length + 2 * plan.guard
        single = full <= plan.tile
        multiple, overlap = plan.multiple, plan.overlap

        def round_up(value):
            return (value + multiple - 1) // multiple * multiple

        # As few tiles as `plan.tile` allows, each then shrunk to just cover
        # the image: a 1024-pixel side takes 3 tiles of 400, not 3 of 512.
        # The stride stays a multiple of the pooling factor and >= overlap.
        count = (full - overlap + plan.tile - overlap - 1) // (plan.tile - overlap)
        count = tf.maximum(count, 1)  # single-tile images: not used, but finite
        needed = (full - overlap + count - 1) // count
        stride = round_up(tf.maximum(needed, overlap))
        # An image smaller than a tile gets one tile just big enough.
        self.count = tf.where(single, 1, count)
        self.overlap = tf.where(single, 0, overlap)
        self.tile = tf.where(single, round_up(full), stride + overlap)
        self.stride = self.tile - self.overlap
        padded = self.count * self.stride + self.overlap
        self.source = _reflect_index(tf.range(padded) - plan.guard, length)
        # Source index of every pixel of every tile: (count, tile).
        starts = tf.range(self.count) * self.stride
        self.tile_source = tf.gather(
            self.source, starts[:, tf.newaxis] + tf.range(self.tile)
        )
        self.window = self._window(plan)

    def _window(self, plan: TilingPlan) -> tf.Tensor:
        s = plan.scale
        size = self.tile * s
        distance = tf.cast(tf.range(size), tf.float32) + 0.5
        guard = float(plan.guard * s)
        ramp = float(max(plan.ramp * s, 1e-6))

        def taper(d):
            u = tf.clip_by_value((d - guard) / ramp, 0.0, 1.0)
            return WINDOW_FLOOR + (1.0 - WINDOW_FLOOR) * 0.5 * (
                1.0 - tf.cos(math.pi * u)
            )

        window = tf.minimum(
            taper(distance), taper(tf.cast(size, tf.float32) - distance)
        )
        return tf.where(self.count > 1, window, tf.ones_like(window))


def _overlap_add(tiles: tf.Tensor, stride: tf.Tensor, overlap: tf.Tensor) -> tf.Tensor:
    """Sum tiles `(M, n, U, K)` laid `stride` apart into `(M, n*stride+overlap, K)`.

    Needs `overlap <= stride`, so only neighbours overlap: each tile's tail
    (its last `overlap` entries) is added to the head of the next tile.
    """
    shape = tf.shape(tiles)
    m, n, k = shape[0], shape[1], shape[3]
    body = tiles[:, :, :stride]
    tail = tiles[:, :, stride:]
    shifted = tf.pad(tail[:, :-1], [[0, 0], [1, 0], [0, stride - overlap], [0, 0]])
    body = tf.reshape(body + shifted, (m, n * stride, k))
    return tf.concat([body, tail[:, -1]], axis=1)


def _summed_window(axis: _Axis, scale: int) -> tf.Tensor:
    """The sum of all tiles' windows along one axis, `(n*stride+overlap,)`."""
    repeated = tf.tile(
        axis.window[tf.newaxis, tf.newaxis, :, tf.newaxis], (1, axis.count, 1, 1)
    )
    return _overlap_add(repeated, axis.stride * scale, axis.overlap * scale)[0, :, 0]


def tiled_predict(
    model: Callable[[tf.Tensor], tf.Tensor],
    images: tf.Tensor,
    plan: TilingPlan,
    percentiles: Sequence[float] | None = (1.0, 99.8),
    transforms: str = "none",
) -> tf.Tensor:
    """Predict whole images of any size through overlapping tiles.

    The image is never copied whole: tiles are gathered from it (and cast to
    float32) one batch at a time. Outputs are assembled row by row: a row
    of tiles is blended horizontally into a strip, its top overlap is added
    to the bottom of the previous strip (carried over), and the finished
    rows are weighted, cropped and de-normalized at once. Besides the input
    and the output, memory holds one row of tile outputs and the model's
    activations for `plan.batch_size` tiles.

    Args:
        model: Callable mapping `(k, t, t, frames)` normalized tiles to
            `(k, scale*t, scale*t, C)` (e.g. a `SuperResolutionUNet`, whose
            `out_channels` gives `C`).
        images: `(B, H, W, frames)` raw images of any real dtype and size.
        plan: Tile geometry from `plan_tiling`/`plan_for_model`.
        percentiles: Per-image normalization percentiles (the model's);
            the output is mapped back to the input's intensity units.
            `None` feeds the images through unnormalized.
        transforms: Test-time averaging of each tile's output over flips
            and turns (a key of `inference.transforms.TRANSFORMS`).

    Returns:
        `(B, scale*H, scale*W, C)` float32.
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    if percentiles is None:
        low = tf.zeros((batch, 1, 1, 1))
        high = tf.ones((batch, 1, 1, 1))
    else:
        low, high = percentile_range(images, percentiles)
    scale = safe_scale(low, high)

    s = plan.scale
    channels = getattr(model, "out_channels", 1)
    rows, cols = _Axis(height, plan), _Axis(width, plan)
    window = rows.window[:, tf.newaxis, tf.newaxis] * cols.window[:, tf.newaxis]
    # Horizontal: blended strips are cropped to the image's columns at once.
    first_col, out_width = plan.guard * s, width * s
    weight_x = _summed_window(cols, s)[first_col : first_col + out_width]
    # Vertical: each strip finishes `stride` rows; its last `overlap` rows
    # wait for the next strip's first ones.
    weight_y = _summed_window(rows, s)
    stride_y, overlap_y = rows.stride * s, rows.overlap * s
    first_row, out_height = plan.guard * s, height * s

    def predict_strip(b, iy):
        """Tiles of row `iy` of image `b`, blended into `(Uy, s*W, C)`."""
        tile_rows = tf.gather(rows.tile_source, iy)

        def predict_batch(start, parts):
            ix = start + tf.range(tf.minimum(plan.batch_size, cols.count - start))
            xs = tf.gather(cols.tile_source, ix)
            grid = tf.stack([tf.shape(xs)[0], rows.tile, cols.tile])
            index = tf.stack(
                [
                    tf.broadcast_to(b, grid),
                    tf.broadcast_to(tile_rows[tf.newaxis, :, tf.newaxis], grid),
                    tf.broadcast_to(xs[:, tf.newaxis, :], grid),
                ],
                axis=-1,
            )
            tiles = (tf.cast(tf.gather_nd(images, index), tf.float32) - low[b]) / scale[
                b
            ]
            predicted = averaged_prediction(model, tiles, transforms) * window
            return start + plan.batch_size, parts.write(
                start // plan.batch_size, predicted
            )

        parts = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
        _, parts = tf.while_loop(
            lambda start, _: start < cols.count,
            predict_batch,
            (tf.constant(0), parts),
            parallel_iterations=1,
        )
        row_tiles = tf.transpose(parts.concat(), (1, 0, 2, 3))  # (Uy, nx, Ux, C)
        strip = _overlap_add(row_tiles, cols.stride * s, cols.overlap * s)
        strip = strip[:, first_col : first_col + out_width]
        return strip / weight_x[tf.newaxis, :, tf.newaxis]

    def predict_row(r, carry, finished):
        b, iy = r // rows.count, r % rows.count
        strip = predict_strip(b, iy)
        carry = tf.where(iy == 0, tf.zeros_like(carry), carry)
        strip = tf.concat([strip[:overlap_y] + carry, strip[overlap_y:]], axis=0)
        last = iy == rows.count - 1
        done_rows = tf.where(last, rows.tile * s, stride_y)
        start = iy * stride_y
        done = strip[:done_rows] / weight_y[start : start + done_rows, None, None]
        keep_from = tf.clip_by_value(first_row - start, 0, done_rows)
        keep_to = tf.clip_by_value(first_row + out_height - start, 0, done_rows)
        done = done[keep_from:keep_to] * scale[b] + low[b]  # de-normalize
        carry = tf.ensure_shape(strip[stride_y:], (None, None, channels))
        return r + 1, carry, finished.write(r, done)

    carry = tf.zeros(tf.stack([overlap_y, out_width, channels]))
    finished = tf.TensorArray(tf.float32, size=batch * rows.count, infer_shape=False)
    _, _, finished = tf.while_loop(
        lambda r, *_: r < batch * rows.count,
        predict_row,
        (tf.constant(0), carry, finished),
        parallel_iterations=1,
    )
    return tf.reshape(finished.concat(), (batch, out_height, out_width, channels))
