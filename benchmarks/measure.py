"""Measurements behind `benchmarks/run.py`: each returns plain numbers.

Every figure is taken in the calling process (or a child it starts) on this
machine, so the ratios between them are like for like.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tifffile

from keras_unet_sr.prediction import Predictor
from keras_unet_sr.unet import SuperResolutionUNet


def best_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Fastest wall time of `repeats` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# === compute ceiling ===


def conv_ceiling(dtype: str = "float32") -> tuple[float, str]:
    """Best FLOP/s of large 3x3 convolutions (the machine's practical limit
    for this network's main operation) and the winning shape."""
    best, label = 0.0, ""
    for batch, size, channels in ((8, 128, 64), (4, 128, 128), (2, 256, 64)):
        x = tf.random.normal((batch, size, size, channels), dtype=dtype)
        w = tf.random.normal((3, 3, channels, channels), dtype=dtype)
        conv = tf.function(lambda x=x, w=w: tf.nn.conv2d(x, w, 1, "SAME"))
        flops = 2.0 * batch * size * size * channels * channels * 9
        seconds = best_time(lambda conv=conv: conv().numpy(), repeats=5)
        if flops / seconds > best:
            best, label = flops / seconds, f"{batch}x{size}x{size}x{channels}"
    return best, label


# === model FLOPs ===


def forward_flops(model: SuperResolutionUNet, tile: int) -> float:
    """Multiply-adds x 2 of every convolution for one `tile` x `tile` input,
    from the layer shapes."""
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose)
    ]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    outputs = probe(np.zeros((1, tile, tile, model.frames), np.float32))
    total = 0.0
    for layer, output in zip(convs, outputs, strict=True):
        kh, kw, c_in, _ = layer.kernel.shape  # Conv2D: (kh, kw, in, out)
        c_out = output.shape[-1]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw, c_out, c_in = layer.kernel.shape  # (kh, kw, out, in)
            pixels = output.shape[1] * output.shape[2] / (kh * kw)  # input pixels
        else:
            pixels = output.shape[1] * output.shape[2]
        total += 2.0 * pixels * kh * kw * c_in * c_out
    return total


# === training ===


def training_throughput(
    model: SuperResolutionUNet,
    compile_fn: Callable[[keras.Model], None],
    tile: int,
    batch: int,
    steps: int = 20,
) -> float:
    """Tiles per second of `train_step` on batches already in memory."""
    compile_fn(model)
    rng = np.random.default_rng(0)
    low = rng.random((batch, tile, tile, model.frames), dtype=np.float32)
    high = rng.random(
        (batch, tile * model.scale, tile * model.scale, 1), dtype=np.float32
    )
    data = tf.data.Dataset.from_tensors((low, high)).repeat()
    model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)  # trace, warm up

    def run():
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)

    return steps * batch / best_time(run, repeats=2, warmup=0)


def pipeline_throughput(
    dataset: tf.data.Dataset, batch: int, batches: int = 60
) -> float:
    """Tiles per second the input pipeline delivers on its own."""
    iterator = iter(dataset)
    for _ in range(5):  # fill caches and prefetch buffers
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


# === inference ===


def inference_throughputs(
    model: SuperResolutionUNet, size: int, **tiling
) -> dict[str, float]:
    """Output megapixels per second: tiled whole-image vs the untiled model."""
    image = (
        np.random.default_rng(0).random((1, size, size, model.frames)) * 1000
    ).astype(np.float32)
    predictor = Predictor(model, **tiling)
    tiled = best_time(lambda: predictor(image), repeats=2)
    normalized = tf.constant(image / 1000.0)
    untiled_fn = tf.function(lambda x: model(x, training=False))
    untiled = best_time(lambda: untiled_fn(normalized).numpy(), repeats=2)
    megapixels = (size * model.scale) ** 2 / 1e6
    return {
        "tiled_mpx_s": megapixels / tiled,
        "untiled_mpx_s": megapixels / untiled,
        "tiled_s": tiled,
        "untiled_s": untiled,
        "overhead_theory": predictor.plan.overhead,
    }


# === memory ===


def predict_peak_rss(
    model_path: str, size: int, frames: int, workdir: Path, *extra: str
) -> dict:
    """Peak RSS (bytes) of a `keras-unet-sr predict` child on one image
    (`extra`: more command-line options, e.g. `--tile 512`)."""
    image = (
        100 + np.random.default_rng(0).gamma(2.0, 40.0, (frames, size, size))
    ).astype(np.uint16)
    path = workdir / f"in_{size}.tif"
    tifffile.imwrite(path, image)
    script = os.path.join(os.path.dirname(sys.executable), "keras-unet-sr")
    start = time.perf_counter()
    process = subprocess.Popen(
        [script, "predict", model_path, str(path), "--out", str(workdir / "o"), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(process.stderr.read().decode()[-2000:])
    return {
        "peak_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
        "input_bytes": image.nbytes,
        "seconds": seconds,
    }


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="keras-unet-sr-bench-"))


# === serving ===


def serving_round_trips(
    model: SuperResolutionUNet, sizes: list[int], workdir: Path, **tiling
) -> list[dict]:
    """Seconds per image: the bundle's `serving_default` called in-process,
    and a gRPC round trip to `keras-unet-sr serve` (a child process) on
    loopback, for square images of each size."""
    from keras_unet_sr.export.grpc_client import ServingClient
    from keras_unet_sr.export.saved_model_bundle import export_bundle

    base = workdir / "serving" / "bench"
    version = export_bundle(model, base, warmup_sizes=((256, 256),), **tiling)
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    script = os.path.join(os.path.dirname(sys.executable), "keras-unet-sr")
    server = subprocess.Popen(
        [script, "serve", str(base), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = server.stdout.readline().split(" on ")[1].split(" ")[0]
        client = ServingClient(address, "bench")
        rows = []
        for size in sizes:
            rng = np.random.default_rng(size)
            image = (100 + rng.gamma(2.0, 40.0, (size, size, model.frames))).astype(
                np.float32
            )
            local = best_time(
                lambda image=image: serve(image=tf.constant(image))["sr_image"].numpy(),
                repeats=2,
            )
            remote = best_time(
                lambda image=image: client.predict({"image": image}), repeats=2
            )
            rows.append({"size": size, "in_process_s": local, "grpc_s": remote})
        client.close()
        return rows
    finally:
        server.terminate()
        server.wait(timeout=60)
