"""Measurements behind `benchmarks/run.py`; each returns plain numbers.

`run.py` calls every measurement in a fresh process (`python measure.py
TASK JSON`, printing one `RESULT {...}` line): on this 2-core VM, a second
model trained in the same process ran up to 40 % slower than the first,
so measurements in one long-lived process would not compare like for like.
"""

from __future__ import annotations

import json
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

from keras_unet_sr.inference.predictor import Predictor
from keras_unet_sr.model.unet import SuperResolutionUNet


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
    dataset: tf.data.Dataset, batch: int, first_pass_batches: int, batches: int = 200
) -> tuple[float, float]:
    """Tiles per second the input pipeline delivers on its own: during the
    first pass over the images (decoding and normalizing each, filling the
    cache) and afterwards (tiles cut from cached images)."""
    iterator = iter(dataset)
    start = time.perf_counter()
    for _ in range(first_pass_batches):
        next(iterator)
    first = first_pass_batches * batch / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return first, batches * batch / (time.perf_counter() - start)


# === inference ===


def inference_throughputs(
    model: SuperResolutionUNet, size: int, **tiling
) -> dict[str, float]:
    """Output megapixels per second: tiled whole-image vs the untiled model."""
    image = (
        np.random.default_rng(0).random((1, size, size, model.frames)) * 1000
    ).astype(np.float32)
    # One model call per tile, as the untiled figure: tiling's own cost.
    # The test-time average multiplies the calls (README, Quality).
    predictor = Predictor(model, test_time_transforms="none", **tiling)
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
    peak = _watch_peak_rss(process)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(process.stderr.read().decode()[-2000:])
    return {"peak_rss": peak, "input_bytes": image.nbytes, "seconds": seconds}


def _watch_peak_rss(process: subprocess.Popen, interval: float = 0.02) -> int:
    """The child's peak RSS in bytes, from /proc/PID/status VmHWM.

    Not `wait4`'s `ru_maxrss`: that high-water mark survives `exec`, so a
    child forked from a large process reports the parent's size.
    """
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(interval)
    return peak


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="keras-unet-sr-bench-"))


# === serving ===


def serving_round_trips(
    model: SuperResolutionUNet,
    sizes: list[int],
    workdir: Path,
    server_env: dict | None = None,
    **tiling,
) -> list[dict]:
    """Seconds per image: the bundle's signature called in-process, and a
    gRPC and a REST round trip to `keras-unet-sr serve` (a child process) on
    loopback, for square camera-like images of each size, sent as float32
    (`serving_default`) and as uint16 (`predict_uint16`)."""
    from keras_unet_sr.export.grpc_client import ServingClient
    from keras_unet_sr.export.rest_client import RestClient
    from keras_unet_sr.export.saved_model_bundle import export_bundle

    base = workdir / "serving" / "bench"
    if not base.exists():
        # One model call per tile: the protocol's overhead against the
        # plain model's compute, not against the 8x of the dihedral average.
        export_bundle(
            model,
            base,
            warmup_sizes=((256, 256),),
            test_time_transforms="none",
            **tiling,
        )
    loaded = tf.saved_model.load(str(base / "1"))

    cases = []  # (size, signature, image), each image made once
    for size in sizes:
        rng = np.random.default_rng(size)
        camera = (100 + rng.gamma(2.0, 40.0, (size, size, model.frames))).astype(
            np.uint16
        )
        cases.append((size, "serving_default", camera.astype(np.float32)))
        cases.append((size, "predict_uint16", camera))

    # In-process figures first, before the server process exists: with it
    # alive (idle) beside us the in-process calls measured up to 1.6x slower
    # on 2 cores, which flattered the ratio.
    rows = []
    for size, signature, image in cases:
        serve = loaded.signatures[signature]
        local = best_time(
            lambda serve=serve, image=image: serve(image=tf.constant(image))[
                "sr_image"
            ].numpy(),
            repeats=2,
        )
        rows.append({"size": size, "dtype": str(image.dtype), "in_process_s": local})
    del loaded
    script = os.path.join(os.path.dirname(sys.executable), "keras-unet-sr")
    server = subprocess.Popen(
        [script, "serve", str(base), "--port", "0", "--rest-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(server_env or {})},
    )
    try:
        words = server.stdout.readline().split(" on ")[1].split(" ")
        address, url = words[0], words[3]  # "HOST:PORT (gRPC) and URL (REST)"
        clients = {
            "grpc_s": ServingClient(address, "bench"),
            "rest_s": RestClient(url, "bench"),
        }
        for row, (_, signature, image) in zip(rows, cases, strict=True):
            for key, client in clients.items():
                row[key] = best_time(
                    lambda image=image, signature=signature, client=client: (
                        client.predict({"image": image}, signature_name=signature)
                    ),
                    repeats=2,
                )
        for client in clients.values():
            client.close()
        return rows
    finally:
        server.terminate()
        server.wait(timeout=60)


# === child-process entry point ===


def default_model(precision: str = "float32") -> SuperResolutionUNet:
    """The quick-start architecture (FitConfig defaults, 9 frames, x2)."""
    from keras_unet_sr.config import FitConfig
    from keras_unet_sr.training.fit import build_model

    config = FitConfig()
    config.train.precision = precision
    keras.utils.set_random_seed(0)
    model = build_model(config, 9, 2)
    keras.config.set_dtype_policy("float32")
    return model


def task_ceiling(dtype: str) -> dict:
    flops, shape = conv_ceiling(dtype)
    return {"flops": flops, "shape": shape}


def task_training(
    precision: str,
    jit: bool = False,
    intra: int | None = None,
    inter: int | None = None,
    steps_per_execution: int = 1,
) -> dict:
    from keras_unet_sr.config import FitConfig
    from keras_unet_sr.training.fit import compile_model

    set_threads(intra, inter)
    config = FitConfig()
    config.train.precision = precision
    t = config.train
    model = default_model(precision)

    def compile_fn(m):
        compile_model(m, config, 1000)
        m.jit_compile, m.steps_per_execution = jit, steps_per_execution

    tiles_s = training_throughput(model, compile_fn, t.tile, t.batch)
    return {
        "tiles_s": tiles_s,
        "flops_tile": 3 * forward_flops(model, t.tile),
        "tile": t.tile,
        "batch": t.batch,
    }


def set_threads(intra: int | None, inter: int | None) -> None:
    """TF's thread pools (before the first op runs; None: TF's default)."""
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def task_breakdown(**arguments) -> dict:
    from breakdown import breakdown_task  # it imports this module's helpers

    return breakdown_task(**arguments)


def task_pipeline() -> dict:
    from keras_unet_sr.config import FitConfig
    from keras_unet_sr.training.inputs import load_training_data

    config = FitConfig()
    t = config.train
    data = load_training_data(config)
    images = data.data.builder.info.splits["train"].num_examples
    first_pass = -(-images * t.tiles_per_image // t.batch)
    first, steady = pipeline_throughput(data.train_tiles(t.batch), t.batch, first_pass)
    return {"first": first, "steady": steady}


def task_inference(size: int, precision: str = "float32", **tiling) -> dict:
    model = default_model(precision)
    result = inference_throughputs(model, size, **tiling)
    result["flops_px"] = forward_flops(model, 64) / (64 * 64 * model.scale**2)
    return result


def task_serving(sizes: list[int]) -> dict:
    from keras_unet_sr.export.serving_protocol import tune_malloc_for_large_messages

    tune_malloc_for_large_messages()  # as `predict --server` does
    return {"rows": serving_round_trips(default_model(), sizes, scratch_dir())}


def task_memory(size: int) -> dict:
    workdir = scratch_dir()
    model = default_model()
    model.save(workdir / "model.keras")
    row = predict_peak_rss(str(workdir / "model.keras"), size, model.frames, workdir)
    row["output_bytes"] = (size * model.scale) ** 2 * 4
    return row


TASKS = {
    "ceiling": task_ceiling,
    "training": task_training,
    "pipeline": task_pipeline,
    "breakdown": task_breakdown,
    "inference": task_inference,
    "serving": task_serving,
    "memory": task_memory,
}


if __name__ == "__main__":
    task, arguments = sys.argv[1], json.loads(sys.argv[2])
    result = TASKS[task](**arguments)
    print("RESULT " + json.dumps(result), flush=True)
