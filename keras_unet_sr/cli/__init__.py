"""`keras-unet-sr`: a thin command line over the library functions.

Every command turns bad input into one line on stderr naming the file or
option and the problem, and exits non-zero (2 for bad input, 1 for an
unexpected failure; `--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class _OneLineFormatter(logging.Formatter):
    """Log records without tracebacks (those are for `--debug`)."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = record.stack_info = None
        return super().format(record)


def _quiet_tensorflow(debug: bool) -> None:
    """Keep TF's start-up chatter (CUDA probing, oneDNN notices) off the terminal.

    TF 2.21 logs these from C++ before absl logging is initialized, ignoring
    TF_CPP_MIN_LOG_LEVEL, so stderr is muted while TensorFlow loads and probes
    devices. Import errors are raised after stderr is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(message)s") if debug else _OneLineFormatter("%(message)s")
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("keras_unet_sr").setLevel(logging.INFO)
    # tifffile logs each corrupt file; our own error names it once, clearly.
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    if debug:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import absl.logging
        import tensorflow as tf
        import tensorflow_datasets

        tf.config.list_physical_devices()
        # TFDS logs routine notices (custom configs, deprecations) as warnings.
        absl.logging.set_verbosity(absl.logging.ERROR)
        if not sys.stderr.isatty():  # progress bars are noise in logs
            tensorflow_datasets.disable_progress_bar()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# === fit ===


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `fit` and `tune`; all default to None = "from config"."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        help="synthetic:<sim9|sim3|confocal|widefield> (default synthetic:sim9), "
        "a folder with low/ and high/ TIFF pairs, or a TFDS dataset name",
    )
    data.add_argument(
        "--data-dir", help="TFDS data directory (default ~/tensorflow_datasets)"
    )
    data.add_argument(
        "--frames",
        help="frames the model reads: a count the data must have (e.g. 9), or "
        "frame indices of the raw stack (e.g. 0,5,10 for SIM3 of 15), or 'all'",
    )
    data.add_argument(
        "--validation-names",
        help="paired TIFFs: comma-separated image names held out for validation",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--depth", type=int, help="U-Net depth (number of 2x poolings)")
    model.add_argument("--filters", type=int, help="filters of the first level")
    model.add_argument(
        "--scale", type=int, help="expected scale factor (checked against the data)"
    )
    model.add_argument("--normalization", choices=["none", "batch", "layer"])
    model.add_argument("--dropout", type=float)
    train = parser.add_argument_group("training")
    train.add_argument(
        "--loss-alpha", type=float, help="SSIM weight in the SSIM-L1 loss"
    )
    train.add_argument("--tile", type=int, help="training tile side in input pixels")
    train.add_argument("--batch", type=int, help="tiles per step")
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument(
        "--precision",
        choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"],
        help="auto (default): mixed_bfloat16 on CPUs with native BF16, "
        "mixed_float16 on GPUs, else float32",
    )
    train.add_argument("--seed", type=int)
    dist = parser.add_argument_group("distribution")
    dist.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multiworker"],
        default="default",
        help="one device (default), all local GPUs (mirrored) or a TF_CONFIG "
        "cluster (multiworker); --batch is the global batch",
    )
    dist.add_argument(
        "--cpu-replicas",
        type=int,
        help="split the CPU into N logical devices (to try mirrored without GPUs)",
    )
    parser.add_argument(
        "--config", help="a config.json to start from (flags override it)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="shrink everything to a seconds-long run"
    )


def config_from_args(args: argparse.Namespace):
    """The `FitConfig` a command line asks for."""
    from keras_unet_sr.config import FitConfig, load_config, smoke
    from keras_unet_sr.data.frames import parse_frame_subset
    from keras_unet_sr.errors import UserError

    config = load_config(args.config) if args.config else FitConfig()
    if args.smoke:  # shrink first, so explicit flags still win
        config = smoke(config)
    overrides = {
        ("data", "source"): args.data,
        ("data", "data_dir"): args.data_dir,
        ("model", "depth"): args.depth,
        ("model", "filters"): args.filters,
        ("model", "scale"): args.scale,
        ("model", "normalization"): args.normalization,
        ("model", "dropout"): args.dropout,
        ("train", "loss_alpha"): args.loss_alpha,
        ("train", "tile"): args.tile,
        ("train", "batch"): args.batch,
        ("train", "epochs"): args.epochs,
        ("train", "steps_per_epoch"): args.steps_per_epoch,
        ("train", "lr"): args.lr,
        ("train", "precision"): args.precision,
        ("train", "seed"): args.seed,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.data is not None and not args.data.startswith("synthetic:"):
        config.data.synthetic_images = config.data.synthetic_size = None
    if args.validation_names:
        config.data.validation_names = [
            n for n in args.validation_names.split(",") if n
        ]
    if args.frames is not None:
        text = args.frames.strip()
        if text.isdigit():
            config.model.frames = int(text)
        else:
            try:
                subset = parse_frame_subset(text)
            except ValueError as error:
                raise UserError(f"--frames: {error}") from error
            config.data.frame_subset = None if subset is None else list(subset)
            config.model.frames = None
    for name in ("tile", "batch", "epochs", "steps_per_epoch"):
        value = getattr(config.train, name)
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    if not 0.0 <= config.train.loss_alpha <= 1.0:
        raise UserError(f"--loss-alpha {config.train.loss_alpha}: must be in [0, 1]")
    return config


def strategy_from_args(args: argparse.Namespace):
    """The tf.distribute strategy the flags ask for (not part of the config:
    a run may resume on other hardware)."""
    from keras_unet_sr.training.distribute import make_strategy, split_cpu

    if args.cpu_replicas:
        split_cpu(args.cpu_replicas)
    return make_strategy(args.strategy)


def _run_fit(args: argparse.Namespace) -> int:
    from keras_unet_sr.training.fit import fit

    config = config_from_args(args)
    fit(config, args.out, strategy=strategy_from_args(args))
    return 0


# === predict ===


def _run_predict(args: argparse.Namespace) -> int:
    from keras_unet_sr.inference.file_prediction import (
        LocalBackend,
        ServerBackend,
        predict_files,
    )

    if args.server:
        from keras_unet_sr.export.serving_protocol import tune_malloc_for_large_messages

        tune_malloc_for_large_messages()
        if args.tile or args.overlap or args.batch:
            raise_user_error(
                "--tile/--overlap/--batch are fixed in the exported bundle"
            )
        backend = ServerBackend(
            args.server, args.model_name or _default_model_name(args.model)
        )
    else:
        backend = LocalBackend(
            args.model, args.tile, args.overlap, args.batch, args.precision
        )
    report = predict_files(backend, args.inputs, args.out)
    count = len(report.written)
    print(f"Predicted {count} image(s) into {args.out} with {backend.description}")
    if report.failed:
        print(f"{len(report.failed)} input(s) failed:", file=sys.stderr)
        for problem in report.failed:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _default_model_name(model: str) -> str:
    """With --server, MODEL may be the bundle base folder or just a name."""
    return os.path.basename(os.path.normpath(model))


def raise_user_error(message: str):
    from keras_unet_sr.errors import UserError

    raise UserError(message)


# === evaluate ===


def _run_evaluate(args: argparse.Namespace) -> int:
    from keras_unet_sr.config import DataConfig
    from keras_unet_sr.inference.file_prediction import LocalBackend
    from keras_unet_sr.quality import evaluation

    for path in args.out:  # refuse a bad report path before the work
        _check_report_path(path)
    backend = LocalBackend(
        args.model, args.tile, args.overlap, args.batch, args.precision
    )
    if os.path.isdir(args.data):
        images = evaluation.folder_images(args.data)
        where = args.data
    else:
        from keras_unet_sr.data.sources import load_paired_images

        data = load_paired_images(DataConfig(source=args.data, data_dir=args.data_dir))
        split = data.split_or_fallback(args.split)
        images, where = data.named_images(split), f"{args.data} [{split}]"
    rows = evaluation.score_model_and_baseline(
        backend.predictor, _frames_checked(images, backend)
    )
    if not rows:
        raise_user_error(f"{where}: no images to evaluate")
    print(f"Evaluation of {args.model} on {where} (CARE-normalized PSNR/SSIM/NRMSE)")
    print(evaluation.format_table(rows))
    for path in args.out:
        evaluation.write_report(rows, path)
        print(f"Wrote {path}")
    return 0


def _frames_checked(images, backend):
    """Name the image whose frame count the model cannot read."""
    from keras_unet_sr.inference.file_prediction import check_frames

    for name, low, high in images:
        check_frames(low, backend.frames, backend.frame_subset, name)
        yield name, low, high


def _check_report_path(path: str) -> None:
    if not path.lower().endswith((".json", ".csv")):
        raise_user_error(f"--out {path}: the report must be a .json or .csv file")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise_user_error(f"--out {path}: is a folder; give a .json or .csv file name")
    if not os.path.isdir(folder):
        raise_user_error(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise_user_error(f"--out {path}: folder {folder} is not writable")


# === export ===


def _run_export(args: argparse.Namespace) -> int:
    from keras_unet_sr.export.saved_model_bundle import export_bundle
    from keras_unet_sr.inference.file_prediction import load_model_checked
    from keras_unet_sr.inference.predictor import load_model

    model = load_model_checked(args.model, lambda p: load_model(p, args.precision))
    sizes = [_parse_size(text) for text in args.warmup_sizes.split(",") if text]
    version_dir = export_bundle(
        model,
        args.out,
        args.version,
        model_name=args.name,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch,
        warmup_sizes=sizes,
    )
    print(f"Exported {args.model} to {version_dir}")
    print(f"TF-Serving config: {version_dir.parent / 'models.config'}")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise_user_error(f"--warmup-sizes {text}: expected HxW, e.g. 1024x1024")
    if height < 1 or width < 1:
        raise_user_error(f"--warmup-sizes {text}: sizes must be positive")
    return height, width


# === serve ===


def _run_serve(args: argparse.Namespace) -> int:
    from keras_unet_sr.export.grpc_server import serve_forever
    from keras_unet_sr.export.serving_protocol import tune_malloc_for_large_messages

    tune_malloc_for_large_messages()
    if not os.path.exists(args.base):
        raise_user_error(f"{args.base}: no such bundle folder")
    if not os.path.isdir(args.base):
        raise_user_error(f"{args.base}: is a file; expected a bundle folder")
    try:
        serve_forever(
            args.base,
            model_name=args.model_name,
            host=args.host,
            port=args.port,
            poll_seconds=args.poll_seconds,
            max_workers=args.workers,
            max_message_bytes=args.max_message_mb << 20,
        )
    except (OSError, ValueError) as error:
        raise_user_error(f"{args.base}: {error}")
    return 0


# === build-dataset ===


def _run_build_dataset(args: argparse.Namespace) -> int:
    from keras_unet_sr.datasets.build import build_dataset

    builder = build_dataset(
        args.dataset,
        config=args.config,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
    )
    print(f"Prepared {builder.info.full_name} in {builder.data_dir}")
    for name, split in builder.info.splits.items():
        print(f"  {name}: {split.num_examples} examples")
    return 0


# === parser ===


def _add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tiling")
    group.add_argument(
        "--tile", type=int, help="largest tile side in input pixels (default 768)"
    )
    group.add_argument(
        "--overlap",
        type=int,
        help="tile overlap (default: exact, from the model's halo)",
    )
    group.add_argument("--batch", type=int, help="tiles per model call (default 1)")
    group.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16", "auto"],
        default="float32",
        help="inference precision (default float32: exact; mixed_bfloat16 is "
        "faster on CPUs with native BF16, mixed_float16 on GPUs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-unet-sr",
        description="U-Net super-resolution for fluorescence microscopy: "
        "train, tune, predict, evaluate, export to TF-Serving and serve.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="train a model",
        description="Train a super-resolution U-Net. Re-running the same command "
        "resumes an interrupted run from its last epoch backup.",
    )
    _add_fit_arguments(fit)
    fit.add_argument(
        "--out", default="runs/fit", help="output folder (default runs/fit)"
    )
    fit.set_defaults(func=_run_fit)

    from keras_unet_sr.tuning.command import register as register_tune

    register_tune(commands)

    predict = commands.add_parser(
        "predict",
        help="super-resolve TIFF images (locally or on TF-Serving)",
        description="Predict TIFF files, folders or globs into float32 TIFFs "
        "of the same names. Bad files are skipped and listed; the exit code is "
        "non-zero if any failed.",
    )
    predict.add_argument(
        "model", help="model.keras (or, with --server, the bundle folder or model name)"
    )
    predict.add_argument(
        "inputs", nargs="+", help="TIFF files, folders or glob patterns"
    )
    predict.add_argument("--out", required=True, help="output folder")
    _add_tiling_arguments(predict)
    predict.add_argument(
        "--server", help="HOST:PORT of TF-Serving (gRPC) to predict on"
    )
    predict.add_argument("--model-name", help="model name on the server")
    predict.set_defaults(func=_run_predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model and the bicubic baseline (PSNR/SSIM/NRMSE)",
        description="Per-image and mean CARE-style PSNR/SSIM/NRMSE of the model "
        "and of bicubic interpolation, on a folder of pairs or a dataset split.",
    )
    evaluate.add_argument("model", help="model.keras")
    evaluate.add_argument(
        "--data",
        required=True,
        help="folder with low/ and high/, synthetic:<config> or TFDS name",
    )
    evaluate.add_argument(
        "--split", default="test", help="dataset split (default test)"
    )
    evaluate.add_argument("--data-dir", help="TFDS data directory")
    evaluate.add_argument(
        "--out",
        action="append",
        default=[],
        help="write scores to this .json or .csv file (repeatable)",
    )
    _add_tiling_arguments(evaluate)
    evaluate.set_defaults(func=_run_evaluate)

    export = commands.add_parser(
        "export",
        help="write a TF-Serving SavedModel bundle BASE/<version>/",
        description="Export a model as a TF-Serving bundle whose serving_default "
        "signature takes whole raw images and tiles them in the graph.",
    )
    export.add_argument("model", help="model.keras")
    export.add_argument("--out", required=True, help="model base folder (BASE)")
    export.add_argument("--version", type=int, help="version number (default: next)")
    export.add_argument(
        "--name", help="model name in models.config (default: BASE's name)"
    )
    export.add_argument(
        "--warmup-sizes",
        default="256x256,1024x1024",
        help="image sizes of the warmup requests (default 256x256,1024x1024)",
    )
    _add_tiling_arguments(export)
    export.set_defaults(func=_run_export)

    serve = commands.add_parser(
        "serve",
        help="serve a bundle folder over TF-Serving's gRPC API",
        description="A Python stand-in for tensorflow_model_server: latest version, "
        "version polling, warmup replay, Predict/GetModelMetadata/GetModelStatus.",
    )
    serve.add_argument("base", help="bundle base folder (holds numbered versions)")
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1, loopback only)",
    )
    serve.add_argument("--model-name", help="served model name (default: BASE's name)")
    serve.add_argument("--poll-seconds", type=float, default=1.0)
    serve.add_argument("--workers", type=int, default=8, help="concurrent requests")
    serve.add_argument(
        "--max-message-mb",
        type=int,
        default=1024,
        help="largest request/response in MiB (default 1024; gRPC's own is 4)",
    )
    serve.set_defaults(func=_run_serve)

    build = commands.add_parser(
        "build-dataset",
        help="prepare a TFDS dataset (like `tfds build`, without apache-beam)",
    )
    build.add_argument(
        "dataset",
        help="a dataset folder (e.g. datasets/microscopy_sr) or a registered name",
    )
    build.add_argument("--config", help="builder config, e.g. sim9 or paired_tiff")
    build.add_argument("--data-dir", help="TFDS data directory")
    build.add_argument(
        "--manual-dir", help="folder with the paired TIFFs (paired_tiff)"
    )
    build.set_defaults(func=_run_build_dataset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tensorflow(args.debug)
    from keras_unet_sr.errors import UserError

    try:
        return args.func(args)
    except UserError as error:
        if args.debug:
            raise
        print(f"keras-unet-sr {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"keras-unet-sr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, no traceback
        if args.debug:
            raise
        message = str(error).strip().splitlines()
        summary = message[0] if message else ""
        print(
            f"keras-unet-sr {args.command}: error: {type(error).__name__}: {summary} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
