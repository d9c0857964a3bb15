"""`keras-unet-sr predict`: super-resolve TIFF files, locally or on TF-Serving."""

from __future__ import annotations

import argparse
import sys

from keras_unet_sr.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="super-resolve TIFF images (locally or on TF-Serving)",
        description="Predict TIFF files, folders or globs into float32 TIFFs "
        "of the same names. Bad files are skipped and listed; the exit code is "
        "non-zero if any failed.",
    )
    parser.add_argument(
        "model", help="model.keras (or, with --server, the bundle folder or model name)"
    )
    parser.add_argument(
        "inputs", nargs="+", help="TIFF files, folders or glob patterns"
    )
    parser.add_argument("--out", required=True, help="output folder")
    options.add_tiling_arguments(parser)
    parser.add_argument(
        "--axes",
        help="axes of every input, e.g. YXC for channel-last stacks or CYX "
        "(default: the file's ImageJ/OME metadata, else (H, W) or (frames, H, W))",
    )
    parser.add_argument(
        "--pixel-size",
        help="input pixel size for files that state none, e.g. 65nm or 0.065um; "
        "outputs carry it divided by the scale",
    )
    parser.add_argument(
        "--server",
        help="TF-Serving to predict on: HOST:PORT (gRPC) or http://HOST:PORT (REST)",
    )
    parser.add_argument("--model-name", help="model name on the server")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_unet_sr.errors import UserError
    from keras_unet_sr.inference.file_prediction import predict_files

    if args.server:
        from keras_unet_sr.export.grpc_client import ServerBackend
        from keras_unet_sr.export.serving_protocol import tune_malloc_for_large_messages

        tune_malloc_for_large_messages()
        fixed = (args.tile, args.overlap, args.batch, args.test_time_transforms)
        if any(v is not None for v in fixed):
            raise UserError(
                "--tile/--overlap/--batch/--test-time-transforms are fixed in "
                "the exported bundle"
            )
        name = args.model_name or options.default_model_name(args.model)
        if args.server.startswith(("http://", "https://")):
            from keras_unet_sr.export.rest_client import RestBackend

            backend = RestBackend(args.server, name)
        else:
            backend = ServerBackend(args.server, name)
    else:
        backend = options.local_backend(args)
    from keras_unet_sr.files.tiff_io import parse_pixel_size

    size = parse_pixel_size(args.pixel_size) if args.pixel_size else None
    report = predict_files(
        backend, args.inputs, args.out, axes=args.axes, pixel_size_nm=size
    )
    count = len(report.written)
    print(f"Predicted {count} image(s) into {args.out} with {backend.description}")
    if report.failed:
        print(f"{len(report.failed)} input(s) failed:", file=sys.stderr)
        for problem in report.failed:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0
