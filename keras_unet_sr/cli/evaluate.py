"""`keras-unet-sr evaluate`: CARE-style scores of a model and of the baseline."""

from __future__ import annotations

import argparse
import os

from keras_unet_sr.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score a model and the bicubic baseline (PSNR/SSIM/NRMSE, resolution)",
        description="Per-image and mean CARE-style PSNR/SSIM/NRMSE of the model "
        "and of bicubic interpolation, and the resolution (decorrelation "
        "analysis) of the model, the target and bicubic, on a folder of pairs "
        "or a dataset split.",
    )
    parser.add_argument("model", help="model.keras")
    parser.add_argument(
        "--data",
        required=True,
        help="folder with low/ and high/, synthetic:<config> or TFDS name",
    )
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    parser.add_argument("--data-dir", help="TFDS data directory")
    parser.add_argument(
        "--out",
        action="append",
        default=[],
        help="write scores to this .json or .csv file (repeatable)",
    )
    parser.add_argument(
        "--pixel-size",
        help="input pixel size, e.g. 65nm (default: what each low/ TIFF states); "
        "resolutions are then also in nm",
    )
    options.add_tiling_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_unet_sr.config import DataConfig
    from keras_unet_sr.data.frames import check_model_frames
    from keras_unet_sr.errors import UserError
    from keras_unet_sr.files.tiff_io import parse_pixel_size
    from keras_unet_sr.progress import track
    from keras_unet_sr.quality import evaluation

    for path in args.out:  # refuse a bad report path before the work
        check_report_path(path)
    pixel_size = parse_pixel_size(args.pixel_size) if args.pixel_size else None
    backend = options.local_backend(args)
    if os.path.isdir(args.data):
        images = evaluation.folder_images(args.data)
        where = args.data
        if pixel_size is None:
            pixel_size = evaluation.folder_pixel_sizes(args.data)
    else:
        from keras_unet_sr.data.sources import load_paired_images

        data = load_paired_images(DataConfig(source=args.data, data_dir=args.data_dir))
        split = data.split_or_fallback(args.split)
        images, where = data.named_images(split), f"{args.data} [{split}]"

    def checked():  # name the image whose frame count the model cannot read
        scale = backend.predictor.model.scale
        for name, low, high in track(images, "evaluate", unit="image"):
            check_model_frames(low, backend.frames, backend.frame_subset, name)
            if high.shape[:2] != (low.shape[0] * scale, low.shape[1] * scale):
                raise UserError(
                    f"{name}: target {high.shape[0]}x{high.shape[1]} is not {scale}x "
                    f"the input {low.shape[0]}x{low.shape[1]}, the model's scale"
                )
            yield name, low, high

    rows = evaluation.score_model_and_baseline(backend.predictor, checked(), pixel_size)
    if not rows:
        raise UserError(f"{where}: no images to evaluate")
    print(f"Evaluation of {args.model} on {where} (CARE-normalized PSNR/SSIM/NRMSE)")
    print(evaluation.format_table(rows))
    print(evaluation.format_resolution_table(rows))
    for path in args.out:
        evaluation.write_report(rows, path)
        print(f"Wrote {path}")
    return 0


def check_report_path(path: str) -> None:
    """A report path that can be written, or one line saying why not."""
    from keras_unet_sr.errors import UserError

    if not path.lower().endswith((".json", ".csv")):
        raise UserError(f"--out {path}: the report must be a .json or .csv file")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"--out {path}: is a folder; give a .json or .csv file name")
    if not os.path.isdir(folder):
        raise UserError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--out {path}: folder {folder} is not writable")
