"""`keras-unet-sr fit`: train a model."""

from __future__ import annotations

import argparse

from keras_unet_sr.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fit",
        help="train a model",
        description="Train a super-resolution U-Net. Re-running the same command "
        "resumes an interrupted run from its last epoch backup.",
    )
    options.add_config_arguments(parser)
    parser.add_argument(
        "--out", default="runs/fit", help="output folder (default runs/fit)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_unet_sr.training.fit import fit

    config = options.config_from_args(args)
    strategy = options.strategy_from_args(args)
    # --quiet: one line per epoch instead of Keras' bar.
    fit(config, args.out, strategy=strategy, verbose=2 if args.quiet else "auto")
    return 0
