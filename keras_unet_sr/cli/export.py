"""`keras-unet-sr export`: a TF-Serving SavedModel bundle `BASE/<version>/`."""

from __future__ import annotations

import argparse

from keras_unet_sr.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a TF-Serving SavedModel bundle BASE/<version>/",
        description="Export a model as a TF-Serving bundle whose serving_default "
        "signature takes whole raw images and tiles them in the graph.",
    )
    parser.add_argument("model", help="model.keras")
    parser.add_argument("--out", required=True, help="model base folder (BASE)")
    parser.add_argument(
        "--version", type=options.POSITIVE, help="version number (default: next)"
    )
    parser.add_argument(
        "--name", help="model name in models.config (default: BASE's name)"
    )
    parser.add_argument(
        "--warmup-sizes",
        default="256x256,1024x1024",
        help="image sizes of the warmup requests (default 256x256,1024x1024)",
    )
    options.add_tiling_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_unet_sr.export.saved_model_bundle import export_bundle
    from keras_unet_sr.inference.file_prediction import load_model_checked
    from keras_unet_sr.inference.predictor import load_model

    model = load_model_checked(args.model, lambda p: load_model(p, args.precision))
    sizes = [parse_size(text) for text in args.warmup_sizes.split(",") if text]
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


def parse_size(text: str) -> tuple[int, int]:
    """`"1024x768"` -> `(1024, 768)`, or one line naming the flag."""
    from keras_unet_sr.errors import UserError

    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(
            f"--warmup-sizes {text}: expected HxW, e.g. 1024x1024"
        ) from None
    if height < 1 or width < 1:
        raise UserError(f"--warmup-sizes {text}: sizes must be positive")
    return height, width
