"""keras-unet-sr benchmarks: one entry point, figures and ratios from one run.

    python benchmarks/run.py            # compute, training, pipeline,
                                        # inference, serving, memory
    python benchmarks/run.py --sweep    # + tile/batch and precision/XLA sweeps
    python benchmarks/run.py --quality  # + fixed-budget training quality
    python benchmarks/run.py --only compute,training

Everything is measured in this process or children it starts, on this
machine, so every ratio compares like with like. Goals print as pass/short.
Nothing here is a test: timings vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import keras
import measure
import tensorflow as tf

from keras_unet_sr.config import FitConfig
from keras_unet_sr.training import build_model, compile_model

SECTIONS = ("compute", "training", "inference", "serving", "memory")
GOALS = {
    "training": 0.70,  # achieved / ceiling
    "pipeline": 5.0,  # pipeline tiles/s / training tiles/s
    "tiled": 0.80,  # tiled / untiled throughput
    "grpc": 1.15,  # round trip / in-process at 2048
}
GIB = 1 << 30


def verdict(ok: bool) -> str:
    return "pass" if ok else "short"


def default_model(config: FitConfig, frames: int = 9, scale: int = 2):
    keras.utils.set_random_seed(0)
    return build_model(config, frames, scale)


def section_compute(report: dict) -> None:
    ceiling, shape = measure.conv_ceiling()
    report["ceiling"] = ceiling
    print(f"compute ceiling  3x3 conv {shape}, float32: {ceiling / 1e9:8.1f} GFLOP/s")


def section_training(report: dict, config: FitConfig) -> None:
    t = config.train
    model = default_model(config)
    flops_tile = 3 * measure.forward_flops(model, t.tile)  # forward + backward
    tiles_s = measure.training_throughput(
        model, lambda m: compile_model(m, config, 1000), t.tile, t.batch
    )
    achieved = flops_tile * tiles_s
    fraction = achieved / report["ceiling"]
    report.update(train_tiles_s=tiles_s, train_flops=achieved)
    print(
        f"training         depth {config.model.depth}, {config.model.filters} filters, "
        f"9 frames, x2, tile {t.tile}, batch {t.batch}: {tiles_s:6.1f} tiles/s x "
        f"{flops_tile / 1e9:.2f} GFLOP/tile = {achieved / 1e9:6.1f} GFLOP/s = "
        f"{fraction:5.1%} of ceiling  [goal >= {GOALS['training']:.0%}: "
        f"{verdict(fraction >= GOALS['training'])}]"
    )
    from keras_unet_sr.training import load_training_data

    data = load_training_data(config)
    pipeline_s = measure.pipeline_throughput(data.train_tiles(t.batch), t.batch)
    ratio = pipeline_s / tiles_s
    print(
        f"input pipeline   synthetic:sim9 tiles alone: {pipeline_s:8.1f} tiles/s = "
        f"{ratio:5.1f}x what training consumes  [goal >= {GOALS['pipeline']:.0f}x: "
        f"{verdict(ratio >= GOALS['pipeline'])}]"
    )


def section_inference(report: dict, config: FitConfig, size: int) -> None:
    model = default_model(config)
    result = measure.inference_throughputs(model, size)
    ratio = result["tiled_mpx_s"] / result["untiled_mpx_s"]
    flops_px = measure.forward_flops(model, 64) / (64 * 64 * model.scale**2)
    untiled_fraction = result["untiled_mpx_s"] * 1e6 * flops_px / report["ceiling"]
    print(
        f"inference        {size}x{size}x9 -> {size * 2}x{size * 2}: tiled "
        f"{result['tiled_mpx_s']:6.3f} Mpx/s ({result['tiled_s']:.1f} s), untiled "
        f"{result['untiled_mpx_s']:6.3f} Mpx/s ({result['untiled_s']:.1f} s) = "
        f"{ratio:5.1%}  [goal >= {GOALS['tiled']:.0%}: "
        f"{verdict(ratio >= GOALS['tiled'])}]"
    )
    print(
        f"{'':17s}untiled model at {untiled_fraction:5.1%} of the conv ceiling; "
        f"overlap overhead in theory {result['overhead_theory']:.2f}x pixels"
    )


def section_serving(config: FitConfig, sizes: list[int], workdir: Path) -> None:
    model = default_model(config)
    for row in measure.serving_round_trips(model, sizes, workdir):
        ratio = row["grpc_s"] / row["in_process_s"]
        goal = (
            f"  [goal <= {GOALS['grpc']}x: {verdict(ratio <= GOALS['grpc'])}]"
            if row["size"] >= 2048
            else ""
        )
        print(
            f"serving          {row['size']}x{row['size']}x9: in-process "
            f"{row['in_process_s']:6.2f} s, gRPC round trip {row['grpc_s']:6.2f} s = "
            f"{ratio:5.3f}x{goal}"
        )


def section_memory(config: FitConfig, sizes: list[int], workdir: Path) -> None:
    model = default_model(config)
    path = workdir / "model.keras"
    model.save(path)
    for size in sizes:
        row = measure.predict_peak_rss(str(path), size, 9, workdir)
        output_bytes = (size * model.scale) ** 2 * 4
        budget = 3 * (row["input_bytes"] + output_bytes) + GIB
        print(
            f"memory           predict {size}x{size}x9 uint16: peak RSS "
            f"{row['peak_rss'] / GIB:5.2f} GiB (input {row['input_bytes'] / GIB:.2f} "
            f"+ output {output_bytes / GIB:.2f} GiB; budget {budget / GIB:.2f} GiB) "
            f"in {row['seconds']:.0f} s  [{verdict(row['peak_rss'] <= budget)}]"
        )


def section_sweep(report: dict, config: FitConfig, size: int) -> None:
    """Tile/batch defaults and precision/XLA, chosen by measurement."""
    model = default_model(config)
    print(f"sweep            tiled inference on {size}x{size}x9 (Mpx/s of output):")
    for tile in (128, 256, 384, 512):
        for batch in (1, 4):
            result = measure.inference_throughputs(
                model, size, tile=tile, batch_size=batch
            )
            print(
                f"                 tile {tile:3d}, batch {batch}: "
                f"{result['tiled_mpx_s']:6.3f} Mpx/s (overlap overhead "
                f"{result['overhead_theory']:.2f}x)"
            )
    t = config.train
    print("sweep            training tiles/s by precision and XLA:")
    for precision in ("float32", "mixed_bfloat16", "mixed_float16"):
        for jit in (False, True):
            policy = keras.config.dtype_policy()
            sweep_config = FitConfig.from_dict(config.to_dict())
            sweep_config.train.precision = precision
            model = default_model(sweep_config)

            def compile_fn(m, c=sweep_config, jit=jit):
                compile_model(m, c, 1000)
                m.jit_compile = jit

            try:
                tiles_s = measure.training_throughput(
                    model, compile_fn, t.tile, t.batch
                )
                outcome = f"{tiles_s:6.1f} tiles/s"
            except Exception as error:  # report, keep sweeping
                outcome = f"failed ({error!s:.60})"
            print(f"{'':17s}{precision:15s} jit={jit!s:5s}: {outcome}")
            keras.config.set_dtype_policy(policy)


def section_quality(budget_epochs: int, steps: int) -> None:
    from quality import run_quality

    run_quality(budget_epochs, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="tile/batch/precision sweeps"
    )
    parser.add_argument(
        "--quality", action="store_true", help="fixed-budget quality runs"
    )
    parser.add_argument("--quality-epochs", type=int, default=6)
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--inference-size", type=int, default=1024)
    args = parser.parse_args()
    sections = args.only.split(",") if args.only else list(SECTIONS)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
        f"core(s), TF {tf.__version__}, Keras {keras.__version__}, Python "
        f"{sys.version.split()[0]}"
    )
    config = FitConfig()
    report: dict = {}
    workdir = Path(tempfile.mkdtemp(prefix="keras-unet-sr-bench-"))
    if "compute" in sections or "training" in sections or "inference" in sections:
        section_compute(report)
    if "training" in sections:
        section_training(report, config)
    if "inference" in sections:
        section_inference(report, config, args.inference_size)
    if "serving" in sections:
        section_serving(config, [1024, 2048], workdir)
    if "memory" in sections:
        section_memory(config, [2048, 4096], workdir)
    if args.sweep:
        section_sweep(report, config, args.inference_size)
    if args.quality:
        section_quality(args.quality_epochs, args.quality_steps)


if __name__ == "__main__":
    main()
