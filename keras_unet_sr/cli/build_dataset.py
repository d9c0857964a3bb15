"""`keras-unet-sr build-dataset`: prepare a TFDS dataset (`tfds build` without beam)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "build-dataset",
        help="prepare a TFDS dataset (like `tfds build`, without apache-beam)",
    )
    parser.add_argument(
        "dataset",
        help="a dataset folder (e.g. datasets/microscopy_sr) or a registered name",
    )
    parser.add_argument("--config", help="builder config, e.g. sim9 or paired_tiff")
    parser.add_argument("--data-dir", help="TFDS data directory")
    parser.add_argument(
        "--manual-dir", help="folder with the paired TIFFs (paired_tiff)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
