"""`keras-unet-sr serve`: a bundle folder over TF-Serving's gRPC and REST APIs."""

from __future__ import annotations

import argparse
import os

from keras_unet_sr.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve a bundle folder over TF-Serving's gRPC (and REST) API",
        description="A Python stand-in for tensorflow_model_server: latest version, "
        "version polling, warmup replay, Predict/GetModelMetadata/GetModelStatus "
        "over gRPC, and TF-Serving's REST API with --rest-port.",
    )
    parser.add_argument("base", help="bundle base folder (holds numbered versions)")
    parser.add_argument(
        "--port", type=options.PORT, default=8500, help="gRPC port (8500)"
    )
    parser.add_argument(
        "--rest-port",
        type=options.PORT,
        help="also answer TF-Serving's REST API on this port (its usual one: 8501)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1, loopback only)",
    )
    parser.add_argument("--model-name", help="served model name (default: BASE's name)")
    parser.add_argument(
        "--poll-seconds",
        type=options.finite,
        default=1.0,
        help="seconds between scans for new versions (0 or less: at start only)",
    )
    parser.add_argument(
        "--workers", type=options.POSITIVE, default=8, help="concurrent requests"
    )
    parser.add_argument(
        "--max-message-mb",
        type=options.bounded(1, 2047),  # gRPC's limit is a signed 32-bit int
        default=1024,
        help="largest request/response in MiB (default 1024; gRPC's own is 4)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_unet_sr.errors import UserError
    from keras_unet_sr.export.grpc_server import serve_forever
    from keras_unet_sr.export.serving_protocol import tune_malloc_for_large_messages

    tune_malloc_for_large_messages()
    if not os.path.exists(args.base):
        raise UserError(f"{args.base}: no such bundle folder")
    if not os.path.isdir(args.base):
        raise UserError(f"{args.base}: is a file; expected a bundle folder")
    try:
        serve_forever(
            args.base,
            model_name=args.model_name,
            host=args.host,
            port=args.port,
            poll_seconds=args.poll_seconds,
            max_workers=args.workers,
            max_message_bytes=args.max_message_mb << 20,
            rest_port=args.rest_port,
        )
    except (OSError, ValueError) as error:
        raise UserError(f"{args.base}: {error}") from error
    return 0
