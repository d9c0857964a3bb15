"""Options shared by several commands, derived from the one config definition.

`add_config_arguments` turns every `FitConfig` field that has a flag into one
(`train.tile` -> `--tile`, with its help, default and allowed values), so a
new setting needs no CLI code; `config_from_args` applies the flags given,
checked by the same rules as a `config.json`.
"""

from __future__ import annotations

import argparse
import math
import os

from keras_unet_sr import config as cfg
from keras_unet_sr.errors import UserError

_GROUPS = {"data": "data", "model": "model", "train": "training"}


def bounded(low: int, high: int | None = None):
    """An argparse `type` for integers in [low, high]: out of range is one
    usage line and exit 2 (not a silent wrap-around, as ports would do)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({allowed})")
        return value

    return parse


def finite(text: str) -> float:
    """An argparse `type` for a finite number (no nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


PORT = bounded(0, 65535)
POSITIVE = bounded(1)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `fit` and `tune`; all default to None = "from config"."""
    defaults = cfg.FitConfig().to_dict()
    groups = {s: parser.add_argument_group(title) for s, title in _GROUPS.items()}
    for field in cfg.fields():
        if field.flag is None:
            continue
        default = defaults[field.section][field.name]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text = field.spec.help
        if field.spec.choices is not None:
            text += f"; {field.spec.rule}"
        text += f" (default {shown})" if default not in (None, []) else ""
        kwargs = {"dest": field.key, "help": text}
        if field.kind is bool and not field.is_list:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = "LIST" if field.is_list else field.name.upper()
        groups[field.section].add_argument(field.flag, **kwargs)
    groups["data"].add_argument(
        "--frames",
        help="frames the model reads: a count the data must have (e.g. 9), or "
        "frame indices of the raw stack (e.g. 0,5,10 for SIM3 of 15), or 'all'",
    )
    dist = parser.add_argument_group("distribution")
    dist.add_argument(
        "--strategy",
        choices=cfg.STRATEGIES,
        default="default",
        help="one device (default), all local GPUs (mirrored) or a TF_CONFIG "
        "cluster (multiworker); --batch is the global batch",
    )
    dist.add_argument(
        "--cpu-replicas",
        type=POSITIVE,
        help="split the CPU into N logical devices (to try mirrored without GPUs)",
    )
    parser.add_argument(
        "--config", help="a config.json to start from (flags override it)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="shrink everything to a seconds-long run"
    )


def flag_value(args: argparse.Namespace, key: str):
    """The value given for config field `key` on the command line, or None."""
    return getattr(args, key, None)


def config_from_args(args: argparse.Namespace) -> cfg.FitConfig:
    """The `FitConfig` a command line asks for: file, smoke shrink, then flags."""
    from keras_unet_sr.data.frames import parse_frame_subset

    config = cfg.load_config(args.config) if args.config else cfg.FitConfig()
    if args.smoke:  # shrink first, so explicit flags still win
        config = cfg.smoke(config)
    for field in cfg.fields():
        value = flag_value(args, field.key)
        if field.flag is not None and value is not None:
            cfg.set_value(config, field.key, value)
    source = flag_value(args, "data.source")
    if source is not None and not source.startswith("synthetic:"):
        config.data.synthetic_images = config.data.synthetic_size = None
    if args.frames is not None:
        text = args.frames.strip()
        if text.isdigit():
            cfg.set_value(config, "model.frames", text, "--frames")
        else:
            try:
                subset = parse_frame_subset(text)
            except ValueError as error:
                raise UserError(f"--frames: {error}") from error
            config.data.frame_subset = None if subset is None else list(subset)
            config.model.frames = None
    return config


def strategy_from_args(args: argparse.Namespace):
    """The tf.distribute strategy the flags ask for (not part of the config:
    a run may resume on other hardware)."""
    from keras_unet_sr.training.distribute import make_strategy, split_cpu

    if args.cpu_replicas:
        split_cpu(args.cpu_replicas)
    return make_strategy(args.strategy)


def add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    """Whole-image tiling options of `predict`, `evaluate` and `export`."""
    group = parser.add_argument_group("tiling")
    group.add_argument(
        "--tile",
        type=POSITIVE,
        help=f"largest tile side in input pixels (default {cfg.PREDICT_TILE})",
    )
    group.add_argument(
        "--overlap",
        type=bounded(0),
        help="tile overlap (default: exact, from the model's halo)",
    )
    group.add_argument(
        "--batch", type=POSITIVE, help="tiles per model call (default 1)"
    )
    group.add_argument(
        "--test-time-transforms",
        choices=cfg.TEST_TIME_TRANSFORMS,
        help="average each tile's prediction over flips and turns: dihedral "
        "(8 model calls), turns (4), half-turn (2), none (default: the "
        "model's own, from fit --test-time-transforms: dihedral unless set "
        "there; none for models saved before the option)",
    )
    group.add_argument(
        "--precision",
        choices=cfg.PRECISIONS,
        default="float32",
        help="inference precision (default float32: exact; mixed_bfloat16 is "
        "faster on CPUs with native BF16, mixed_float16 on GPUs)",
    )


def local_backend(args: argparse.Namespace):
    """The in-process predictor the tiling options describe."""
    from keras_unet_sr.inference.file_prediction import LocalBackend

    return LocalBackend(
        args.model,
        args.tile,
        args.overlap,
        args.batch,
        args.precision,
        test_time_transforms=args.test_time_transforms,
    )


def default_model_name(model: str) -> str:
    """With --server, MODEL may be the bundle base folder or just a name."""
    return os.path.basename(os.path.normpath(model))
