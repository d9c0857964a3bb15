"""Where a training step's time goes, measured part by part.

Two views of the same step, both on batches already in memory:

* **cumulative** — the same step cut at successive points, each its own
  `tf.function`: forward pass; + SSIM-L1 loss; + gradients (backward);
  + the optimizer update; Keras `fit` (adds the training metrics, callbacks
  and the loop); `fit` on the real tf.data tile pipeline (adds the input).
  Each part is the difference to the previous cut.
* **per convolution** — every Conv2D of the model timed alone at its
  training shape: forward, data gradient (`Conv2DBackpropInput`) and weight
  gradient (`Conv2DBackpropFilter`), with its FLOPs, so layers that run far
  below the machine's ceiling (few channels, small grids) show up.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from measure import best_time, default_model, forward_flops, set_threads


def _batch(model, tile: int, batch: int):
    rng = np.random.default_rng(0)
    low = tf.constant(rng.random((batch, tile, tile, model.frames), dtype=np.float32))
    side = tile * model.scale
    high = tf.constant(rng.random((batch, side, side, 1), dtype=np.float32))
    return low, high


def cumulative_parts(model, tile: int, batch: int, steps: int = 10) -> dict:
    """Seconds per step of each successive cut of the training step
    (`model` compiled as `fit` compiles it)."""
    low, high = _batch(model, tile, batch)
    loss_fn, optimizer = model.loss, model.optimizer
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function
    def forward():
        return tf.reduce_sum(model(low, training=True))

    @tf.function
    def forward_loss():
        return loss_fn(high, model(low, training=True))

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = loss_fn(high, model(low, training=True))
        return tape.gradient(loss, variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(high, model(low, training=True))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    def many(fn):
        def run():
            for _ in range(steps):
                out = fn()
            tf.nest.map_structure(lambda t: t.numpy(), out)

        return best_time(run, repeats=3) / steps

    cuts = {
        "forward": many(forward),
        "loss": many(forward_loss),
        "backward": many(gradients),
        "optimizer": many(step),
    }
    in_memory = tf.data.Dataset.from_tensors((low, high)).repeat()
    cuts["keras"] = fit_step(model, in_memory, steps)
    return cuts


def fit_step(model, dataset: tf.data.Dataset, steps: int = 30) -> float:
    """Seconds per `fit` step on `dataset` (best of 2 epochs after one warm-up)."""

    def epoch():
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)

    return best_time(epoch, repeats=2, warmup=1) / steps


def conv_rows(model, tile: int, batch: int) -> list[dict]:
    """Each Conv2D alone at its training shape: seconds and FLOPs of the
    forward pass, the data gradient and the weight gradient."""
    convs = [
        layer
        for layer in model.layers
        if type(layer) is keras.layers.Conv2D and layer.kernel.shape[0] > 1
    ]
    probe = keras.Model(model.inputs, [layer.input for layer in convs])
    inputs = probe(np.zeros((1, tile, tile, model.frames), np.float32))
    if len(convs) == 1:
        inputs = [inputs]
    rows = []
    rng = np.random.default_rng(0)
    for layer, x_shape in zip(convs, [t.shape for t in inputs], strict=True):
        kernel = tuple(layer.kernel.shape)
        x = tf.constant(
            rng.random((batch, *x_shape[1:]), dtype=np.float32), dtype=tf.float32
        )
        w = tf.constant(rng.random(kernel, dtype=np.float32))
        dy = tf.constant(
            rng.random((batch, *x_shape[1:3], kernel[3]), dtype=np.float32)
        )
        fns = {
            "forward": tf.function(lambda x=x, w=w: tf.nn.conv2d(x, w, 1, "SAME")),
            "data_grad": tf.function(
                lambda x=x, w=w, dy=dy: tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=tf.shape(x),
                    filter=w,
                    out_backprop=dy,
                    strides=[1, 1, 1, 1],
                    padding="SAME",
                )
            ),
            "weight_grad": tf.function(
                lambda x=x, w=w, dy=dy: tf.raw_ops.Conv2DBackpropFilter(
                    input=x,
                    filter_sizes=tf.shape(w),
                    out_backprop=dy,
                    strides=[1, 1, 1, 1],
                    padding="SAME",
                )
            ),
        }
        pixels = batch * x_shape[1] * x_shape[2]
        row = {
            "name": layer.name,
            "shape": f"{x_shape[1]}x{x_shape[2]}x{kernel[2]}->{kernel[3]}",
            "flops": 2.0 * pixels * kernel[0] * kernel[1] * kernel[2] * kernel[3],
        }
        for key, fn in fns.items():
            row[key] = best_time(lambda fn=fn: fn().numpy(), repeats=3)
        rows.append(row)
    return rows


def breakdown_task(
    precision: str = "float32",
    intra: int | None = None,
    inter: int | None = None,
    convs: bool = True,
    pipeline: bool = True,
) -> dict:
    """The `breakdown` child task of run.py: the cuts, the input and the
    convolutions of the default model's training step."""
    from keras_unet_sr.config import FitConfig
    from keras_unet_sr.training.fit import compile_model
    from keras_unet_sr.training.inputs import load_training_data

    set_threads(intra, inter)
    config = FitConfig()
    config.train.precision = precision
    t = config.train
    model = default_model(precision)
    compile_model(model, config, 1000)
    result = {
        "tile": t.tile,
        "batch": t.batch,
        "flops_step": 3 * forward_flops(model, t.tile) * t.batch,
        "cuts": cumulative_parts(model, t.tile, t.batch),
        "threads": [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ],
    }
    if pipeline:
        data = load_training_data(config)
        result["cuts"]["input"] = fit_step(model, data.train_tiles(t.batch))
    if convs:
        result["convs"] = conv_rows(model, t.tile, t.batch)
    return result
