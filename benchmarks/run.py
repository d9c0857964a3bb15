"""keras-unet-sr benchmarks: one entry point, figures and ratios from one run.

    python benchmarks/run.py            # compute, training, pipeline,
                                        # inference, serving, memory (~6 min)
    python benchmarks/run.py --sweep    # + tile/batch and precision/XLA sweeps
    python benchmarks/run.py --quality  # + fixed-budget training quality
    python benchmarks/run.py --quality --peers  # + side by side with CARE
    python benchmarks/run.py --only peers --peer-folds dlsim15,sim9
    python benchmarks/run.py --only peers --peer-folds sim9 \
        --project-set model.upsampling=input  # a candidate recipe against CARE
    python benchmarks/run.py --only compute,training

Every figure is measured on this machine in this run, each in a fresh child
process (see measure.py), repeated `--repeats` times, best kept. Ratios
therefore compare like with like. Goals print as pass/short. Nothing here
is a test: timings vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = (
    "compute",
    "training",
    "breakdown",
    "inference",
    "serving",
    "memory",
    "quickstart",
)
GOALS = {
    "training": 0.70,  # achieved FLOP/s / the convolution ceiling
    "pipeline": 5.0,  # pipeline tiles/s / training tiles/s
    "tiled": 0.80,  # tiled / untiled throughput on the same image
    "grpc": 1.15,  # round trip / in-process at 2048 x 2048
    "inference": 0.80,  # untiled inference FLOP/s / the convolution ceiling
    "quickstart_s": 300.0,  # the README's first command, data generation included
    "quickstart_db": 7.0,  # its gain over bicubic
}
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
GIB = 1 << 30
INDENT = " " * 17


def verdict(ok: bool) -> str:
    return "pass" if ok else "short"


def child(task: str, repeats: int = 1, best: str = "max", **arguments) -> dict:
    """Run `measure.py TASK` in fresh processes; keep the best of `repeats`
    (per numeric key: the largest, or the smallest with `best="min"`)."""
    results = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, str(HERE / "measure.py"), task, json.dumps(arguments)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [
            line for line in output.stdout.splitlines() if line.startswith("RESULT ")
        ]
        if output.returncode != 0 or not lines:
            raise RuntimeError(f"{task} failed:\n{output.stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    pick = max if best == "max" else min
    merged = dict(results[0])
    for key, value in merged.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = pick(r[key] for r in results)
    return merged


def section_compute(report: dict, repeats: int) -> None:
    for dtype, name in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        result = child("ceiling", repeats, dtype=dtype)
        report[f"ceiling_{name}"] = result["flops"]
        print(
            f"compute ceiling  3x3 conv {result['shape']}, {dtype:8s}: "
            f"{result['flops'] / 1e9:7.1f} GFLOP/s"
        )


def section_training(report: dict, repeats: int) -> None:
    from keras_unet_sr.model.precision import resolve_precision

    default = resolve_precision("auto")
    for precision in dict.fromkeys(("float32", default)):
        result = child("training", repeats, precision=precision)
        achieved = result["tiles_s"] * result["flops_tile"]
        fraction = achieved / report[f"ceiling_{precision}"]
        report[f"train_{precision}"] = result["tiles_s"]
        print(
            f"training         {precision:14s} quick-start model (depth 2, 32 filters, "
            f"9 frames, x2), tile {result['tile']}, batch {result['batch']}:\n"
            f"{INDENT}{result['tiles_s']:6.1f} tiles/s x "
            f"{result['flops_tile'] / 1e9:.2f} GFLOP/tile = {achieved / 1e9:6.1f} "
            f"GFLOP/s = {fraction:5.1%} of the {precision} ceiling  "
            f"[goal >= {GOALS['training']:.0%}: "
            f"{verdict(fraction >= GOALS['training'])}]"
        )
    consumed = report[f"train_{default}"]
    result = child("pipeline", 1)
    for label, key in (("first pass", "first"), ("cached", "steady")):
        ratio = result[key] / consumed
        print(
            f"input pipeline   synthetic:sim9, {label:10s}: {result[key]:7.1f} "
            f"tiles/s = {ratio:5.1f}x what {default} training consumes  "
            f"[goal >= {GOALS['pipeline']:.0f}x: "
            f"{verdict(ratio >= GOALS['pipeline'])}]"
        )


def cpu_summary() -> str:
    """The CPU model and the vector flags that decide conv throughput."""
    from keras_unet_sr.model.precision import cpu_flags

    flags, model = cpu_flags(), platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    present = [flag for flag in CPU_FLAGS if flag in flags] or ["none of interest"]
    return f"{model}; flags: {' '.join(present)}"


def section_breakdown(report: dict) -> None:
    from keras_unet_sr.model.precision import resolve_precision

    precision = resolve_precision("auto")
    result = child("breakdown", 1, precision=precision)
    cuts = result["cuts"]
    order = ("forward", "loss", "backward", "optimizer", "keras", "input")
    labels = {
        "keras": "keras fit (metrics, loop)",
        "input": "input pipeline",
    }
    parts, previous = {}, 0.0
    for key in order:
        parts[key] = cuts[key] - previous
        previous = cuts[key]
    total = cuts["input"]
    ceiling = report.get(f"ceiling_{precision}") or report["ceiling_float32"]
    print(
        f"breakdown        {precision} training step, tile {result['tile']}, batch "
        f"{result['batch']} ({result['flops_step'] / 1e9:.1f} GFLOP), TF threads "
        f"intra {result['threads'][0] or 'default'} / inter "
        f"{result['threads'][1] or 'default'}: {total * 1e3:.0f} ms per step = "
        f"{result['flops_step'] / total / 1e9:.1f} GFLOP/s"
    )
    for key in order:
        print(
            f"{INDENT}{labels.get(key, key):26s} {parts[key] * 1e3:7.1f} ms "
            f"({parts[key] / total:6.1%})"
        )
    rows = result["convs"]
    # The first convolution's data gradient is never needed (its input is the
    # data), so training does not compute it.
    needed = [
        r["forward"] + r["weight_grad"] + (r["data_grad"] if i else 0.0)
        for i, r in enumerate(rows)
    ]
    conv_flops = sum(r["flops"] * (3 if i else 2) for i, r in enumerate(rows))
    print(
        f"{INDENT}3x3 convolutions alone (each timed at its shape): "
        f"{sum(needed) * 1e3:.0f} ms = {sum(needed) / total:.0%} of the step, at "
        f"{conv_flops / sum(needed) / 1e9:.1f} GFLOP/s = "
        f"{conv_flops / sum(needed) / ceiling:.0%} of the ceiling"
    )
    print(
        f"{INDENT}{'layer':16s} {'shape':16s} {'GFLOP':>6s}  GFLOP/s: forward "
        f"data-grad weight-grad"
    )
    for row in rows:
        rates = "  ".join(
            f"{row['flops'] / row[key] / 1e9:7.1f}"
            for key in ("forward", "data_grad", "weight_grad")
        )
        print(
            f"{INDENT}{row['name']:16s} {row['shape']:16s} "
            f"{row['flops'] / 1e9:6.2f}  {rates}"
        )
    report["breakdown"] = result


def section_quickstart() -> None:
    """The README's first command as a new user runs it: fresh data folder,
    default config, timed end to end by `fit` itself."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="keras-unet-sr-quickstart-") as folder:
        metrics = _run_quickstart(Path(folder))
    seconds = metrics["seconds"]
    gain = metrics["model"]["psnr"] - metrics["bicubic"]["psnr"]
    ok_time = seconds["total"] <= GOALS["quickstart_s"]
    ok_gain = gain >= GOALS["quickstart_db"]
    print(
        f"quick start      keras-unet-sr fit (defaults, fresh data folder): "
        f"{seconds['total'] / 60:.1f} min (data {seconds['data']:.0f} s, training "
        f"{seconds['training']:.0f} s, rest "
        f"{seconds['total'] - seconds['data'] - seconds['training']:.0f} s)  "
        f"[goal <= {GOALS['quickstart_s'] / 60:.0f} min: {verdict(ok_time)}]\n"
        f"{INDENT}gain over bicubic {gain:+.2f} dB "
        f"(model {metrics['model']['psnr']:.2f} dB, {metrics['epochs']} epochs)  "
        f"[goal >= +{GOALS['quickstart_db']:.0f} dB: {verdict(ok_gain)}]"
    )


def _run_quickstart(work: Path) -> dict:
    """`keras-unet-sr fit` with the defaults in `work`; its metrics.json."""
    script = Path(sys.executable).with_name("keras-unet-sr")
    command = [
        str(script),
        "fit",
        "--quiet",
        "--out",
        str(work / "run"),
        "--data-dir",
        str(work / "tfds"),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise RuntimeError(f"quick start failed:\n{output.stderr[-3000:]}")
    return json.loads((work / "run" / "metrics.json").read_text())


def section_inference(report: dict, size: int, repeats: int) -> None:
    result = child("inference", repeats, size=size)
    tiled, untiled = result["tiled_mpx_s"], result["untiled_mpx_s"]
    ratio = tiled / untiled
    megapixels = (2 * size) ** 2 / 1e6
    flops = untiled * 1e6 * result["flops_px"]
    print(
        f"inference        float32, {size}x{size}x9 -> {2 * size}x{2 * size}: tiled "
        f"{tiled:5.2f} Mpx/s ({megapixels / tiled:.1f} s), untiled {untiled:5.2f} "
        f"Mpx/s ({megapixels / untiled:.1f} s) = {ratio:5.1%}  "
        f"[goal >= {GOALS['tiled']:.0%}: {verdict(ratio >= GOALS['tiled'])}]"
    )
    fraction = flops / report["ceiling_float32"]
    print(
        f"{INDENT}untiled model at {flops / 1e9:.0f} GFLOP/s = "
        f"{fraction:5.1%} of the float32 conv ceiling  [goal >= "
        f"{GOALS['inference']:.0%}: {verdict(fraction >= GOALS['inference'])}]; "
        f"default tiles compute {result['overhead_theory']:.2f}x the pixels"
    )


def section_serving(repeats: int) -> None:
    result = child("serving", 1, sizes=[1024, 2048])
    for row in result["rows"]:
        ratio = row["grpc_s"] / row["in_process_s"]
        goal = ""
        if row["size"] >= 2048:
            goal = f"  [goal <= {GOALS['grpc']}x: {verdict(ratio <= GOALS['grpc'])}]"
        print(
            f"serving          {row['size']}x{row['size']}x9 {row['dtype']:7s}: "
            f"in-process {row['in_process_s']:5.2f} s, gRPC round trip "
            f"{row['grpc_s']:5.2f} s = {ratio:5.3f}x{goal}, REST "
            f"{row['rest_s']:5.2f} s = {row['rest_s'] / row['in_process_s']:5.3f}x"
        )


def section_memory() -> None:
    for size in (2048, 4096):
        row = child("memory", 1, size=size)
        budget = 3 * (row["input_bytes"] + row["output_bytes"]) + GIB
        goal = (
            f"  [goal <= {budget / GIB:.2f} GiB: {verdict(row['peak_rss'] <= budget)}]"
        )
        print(
            f"memory           predict {size}x{size}x9 uint16 -> float32: peak RSS "
            f"{row['peak_rss'] / GIB:4.2f} GiB (input {row['input_bytes'] / GIB:.2f} + "
            f"output {row['output_bytes'] / GIB:.2f} GiB), {row['seconds']:.0f} s"
            + (goal if size == 4096 else "")
        )


def section_sweep(report: dict, size: int) -> None:
    ceiling = (
        report.get("ceiling_float32") or child("ceiling", dtype="float32")["flops"]
    )
    print("sweep            untiled float32 model by input size (memory vs cache):")
    for side in (256, 512, 1024, size):
        result = child("inference", 1, size=side)
        flops = result["untiled_mpx_s"] * 1e6 * result["flops_px"]
        share = f"{flops / 1e9:5.1f} GFLOP/s = {flops / ceiling:5.1%} of the ceiling"
        print(f"{INDENT}{f'{side}x{side}x9':>11s}: {share}")
    print(
        f"sweep            float32 tiled inference, {size}x{size}x9 (Mpx/s of output):"
    )
    for tile in (256, 384, 512, 640, 768, 1024):
        for batch in (1, 2):
            result = child("inference", 1, size=size, tile=tile, batch_size=batch)
            ratio = result["tiled_mpx_s"] / result["untiled_mpx_s"]
            print(
                f"{INDENT}tile {tile:4d}, batch {batch}: {result['tiled_mpx_s']:5.2f} "
                f"Mpx/s = {ratio:5.1%} of untiled (overlap overhead "
                f"{result['overhead_theory']:.2f}x)"
            )
    print("sweep            training tiles/s by precision, XLA, steps per execution:")
    runs = [(p, jit, 1) for p in PRECISIONS for jit in (False, True)]
    for precision, jit, steps in [*runs, ("float32", False, 4)]:
        try:
            result = child(
                "training", precision=precision, jit=jit, steps_per_execution=steps
            )
            outcome = f"{result['tiles_s']:6.1f}"
        except RuntimeError as error:
            outcome = "failed: " + str(error).strip().splitlines()[-1][:70]
        print(f"{INDENT}{precision:15s} jit={jit!s:5s} steps/call {steps}: {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of {','.join(SECTIONS)},quality,peers",
    )
    parser.add_argument("--sweep", action="store_true", help="+ the sweeps")
    parser.add_argument("--quality", action="store_true", help="+ quality runs")
    parser.add_argument("--quality-epochs", type=int, default=6)
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--peers", action="store_true", help="+ CARE (peers.py)")
    parser.add_argument("--peer-epochs", type=int, help="default: FitConfig()'s")
    parser.add_argument("--peer-steps", type=int, help="default: FitConfig()'s")
    parser.add_argument("--peer-folds", help="comma-separated subset of the peer folds")
    parser.add_argument("--keep", action="store_true", help="keep the peers' folder")
    parser.add_argument("--peer-json", help="also write the peers' results there")
    parser.add_argument(
        "--project-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="peers: train the project with this change to FitConfig() (repeatable)",
    )
    parser.add_argument("--inference-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2, help="fresh runs per figure")
    args = parser.parse_args()
    sections = args.only.split(",") if args.only else list(SECTIONS)
    # `--only peers` (or quality) runs that part alone.
    args.peers = args.peers or "peers" in sections
    args.quality = args.quality or "quality" in sections
    # A peers budget given on the command line is a smoke run: peers only.
    smoke = args.peers and (args.peer_epochs or args.peer_steps)
    if smoke:
        sections, args.quality, args.sweep = [], False, False

    import keras
    import tensorflow as tf

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU core(s), TF "
        f"{tf.__version__}, Keras {keras.__version__}, Python {sys.version.split()[0]}"
    )
    from keras_unet_sr.model.precision import resolve_precision

    print(f"cpu: {cpu_summary()}")
    print(
        f"--precision auto -> {resolve_precision('auto')} on this machine "
        "(mixed_bfloat16 with avx512_bf16/amx_bf16, mixed_float16 on a GPU, "
        "else float32)"
    )
    report: dict = {}
    if {"compute", "training", "breakdown", "inference"} & set(sections):
        section_compute(report, args.repeats)
    if "training" in sections:
        section_training(report, args.repeats)
    if "breakdown" in sections:
        section_breakdown(report)
    if "inference" in sections:
        section_inference(report, args.inference_size, args.repeats)
    if "serving" in sections:
        section_serving(args.repeats)
    if "memory" in sections:
        section_memory()
    if "quickstart" in sections:
        section_quickstart()
    if args.sweep:
        section_sweep(report, args.inference_size)
    if args.quality:
        from quality import run_quality

        run_quality(args.quality_epochs, args.quality_steps)
    if args.peers:
        from peers import run_peers

        folds = args.peer_folds.split(",") if args.peer_folds else None
        if smoke:
            print(
                "peers            --peer-epochs/--peer-steps: a smoke run, peers only"
            )
        changes = dict(item.partition("=")[::2] for item in args.project_set)
        run_peers(
            args.peer_epochs, args.peer_steps, folds, args.keep, args.peer_json, changes
        )


if __name__ == "__main__":
    main()
