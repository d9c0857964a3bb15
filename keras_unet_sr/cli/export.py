"""`keras-unet-sr export`: a TF-Serving SavedModel bundle `BASE/<version>/`,
or a BioImage Model Zoo package `NAME.zip` (`--format bioimageio`)."""

from __future__ import annotations

import argparse

from keras_unet_sr.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="write a TF-Serving bundle BASE/<version>/ or a bioimage.io NAME.zip",
        description="Export a model as a TF-Serving bundle whose serving_default "
        "signature takes whole raw images and tiles them in the graph, or as a "
        "BioImage Model Zoo package (Fiji/deepImageJ, napari, ilastik), tested "
        "with bioimageio.core before it is written.",
    )
    parser.add_argument("model", help="model.keras")
    parser.add_argument(
        "--out",
        required=True,
        help="model base folder (BASE), or the package NAME.zip for bioimageio",
    )
    parser.add_argument(
        "--format",
        choices=("tfserving", "bioimageio"),
        default="tfserving",
        help="tfserving (default) or bioimageio (needs the [bioimageio] extra)",
    )
    parser.add_argument(
        "--version", type=options.POSITIVE, help="version number (default: next)"
    )
    parser.add_argument(
        "--name",
        help="model name in models.config (default: BASE's name), or the "
        "package's name",
    )
    parser.add_argument(
        "--warmup-sizes",
        default="256x256,1024x1024",
        help="image sizes of the warmup requests (default 256x256,1024x1024)",
    )
    zoo = parser.add_argument_group("bioimageio")
    zoo.add_argument("--description", help="one or two sentences on the model")
    zoo.add_argument(
        "--author",
        action="append",
        default=[],
        help='"Name" or "Name <email>" (repeat for several)',
    )
    zoo.add_argument(
        "--license", default="CC-BY-4.0", help="SPDX license id (default CC-BY-4.0)"
    )
    zoo.add_argument(
        "--cite",
        action="append",
        default=[],
        help='"TEXT;DOI" or "TEXT;URL" (repeat; default: U-Net and CARE)',
    )
    zoo.add_argument(
        "--sample",
        help="a raw TIFF of yours for the test and sample tensors (default: a "
        "simulated image of the model's modality)",
    )
    zoo.add_argument("--axes", help="axes of --sample when it states none, e.g. YXC")
    zoo.add_argument(
        "--pixel-size",
        help="input pixel size (e.g. 65nm); default: --sample's own, else none",
    )
    options.add_tiling_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "bioimageio":
        return run_bioimageio(args)
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
        test_time_transforms=args.test_time_transforms,
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


def run_bioimageio(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_unet_sr.export import bioimageio_files, bioimageio_sources
    from keras_unet_sr.export.bioimageio_package import (
        check_package_path,
        export_bioimageio,
    )
    from keras_unet_sr.export.bioimageio_sources import (
        DEFAULT_CITES,
        PackageInfo,
        parse_cite,
    )
    from keras_unet_sr.files.tiff_io import parse_pixel_size, pixel_size_nm
    from keras_unet_sr.inference.file_prediction import load_model_checked
    from keras_unet_sr.inference.predictor import load_model

    check_package_path(args.out)  # before any slow work
    cites = [parse_cite(text) for text in args.cite] or list(DEFAULT_CITES)
    size = parse_pixel_size(args.pixel_size) if args.pixel_size else None
    model = load_model_checked(args.model, load_model)
    sample = bioimageio_sources.sample_image(model, args.sample, args.axes)
    if size is None and args.sample:
        size = pixel_size_nm(args.sample)
    run_files = bioimageio_files.run_summary(Path(args.model))
    info = PackageInfo(
        name=args.name or bioimageio_sources.default_name(model),
        description=args.description
        or f"Super-resolution of {model.frames}-frame raw fluorescence images "
        f"onto a {model.scale}x finer grid (keras-unet-sr U-Net).",
        authors=args.author,
        license=args.license,
        cites=cites,
        pixel_size_nm=size,
        training_data=bioimageio_sources.training_data_text(run_files),
        run=run_files,
    )
    package = export_bioimageio(
        model,
        args.out,
        info,
        sample,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch,
        test_time_transforms=args.test_time_transforms,
    )
    print(
        f"Exported {args.model} to {package} (bioimage.io model, tested with "
        "bioimageio.core)"
    )
    return 0
