"""`keras-unet-sr tune`: a hyperparameter search over `fit`'s options."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from keras_unet_sr.cli import options

if TYPE_CHECKING:
    from keras_unet_sr.config import FitConfig
    from keras_unet_sr.tuning.hypermodel import SearchSpace

TUNER_NAMES = ("hyperband", "bayesian", "random")  # keys of search.TUNERS


def register(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune",
        help="search hyperparameters (keras-tuner) and write the best config",
        description="Search U-Net and training hyperparameters on the data "
        "`fit` would train on, maximizing validation PSNR. Writes OUT/trials.csv "
        "and OUT/best_config.json (train it with `fit --config`); TensorBoard's "
        "HParams tab compares the trials in OUT/logs. Re-running the same "
        "command continues the search (give a larger --max-trials to extend "
        "it). Flags such as --depth or --lr fix that hyperparameter.",
        # `--epochs` is redefined: per trial here, the final run's in `fit`.
        conflict_handler="resolve",
    )
    options.add_config_arguments(tune)
    search = tune.add_argument_group("search")
    search.add_argument(
        "--tuner",
        choices=TUNER_NAMES,
        default="hyperband",
        help="search algorithm (default hyperband)",
    )
    search.add_argument(
        "--max-trials",
        type=options.POSITIVE,
        help="trials in all (default 10; hyperband: its whole schedule)",
    )
    search.add_argument(
        "--epochs",
        type=options.POSITIVE,
        dest="trial_epochs",
        metavar="EPOCHS",
        help="epochs per trial (hyperband: the most a trial trains); default: "
        "the config's epochs, which best_config.json keeps",
    )
    search.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="search NAME over V1,V2,... (a choice; one value fixes it) or "
        "MIN:MAX[:log] (a range), e.g. --space depth=1,2,3 --space "
        "lr=1e-4:1e-2:log; repeatable; overrides the default space (depth "
        "1,2,3, filters 8,16,32, lr 3e-4:3e-3:log, loss_alpha 0.5:0.95)",
    )
    search.add_argument(
        "--space-file",
        help='a JSON space, e.g. {"depth": [1, 2], "lr": {"min": 1e-4, '
        '"max": 1e-2, "sampling": "log"}}; --space entries override it',
    )
    tune.add_argument(
        "--out", default="runs/tune", help="output folder (default runs/tune)"
    )
    tune.set_defaults(func=run, epochs=None)


def run(args: argparse.Namespace) -> int:
    from keras_unet_sr.errors import UserError
    from keras_unet_sr.tuning.search import run_search

    if args.strategy == "multiworker":
        # keras-tuner distributes a search by running trials in parallel on
        # its own chief/worker processes (KERASTUNER_TUNER_ID), not by
        # MultiWorkerMirroredStrategy inside a trial.
        raise UserError(
            "--strategy multiworker: tune supports default and mirrored; run "
            "parallel trials with keras-tuner's KERASTUNER_* variables instead"
        )
    config = options.config_from_args(args)
    space = space_from_args(args, config)
    strategy = options.strategy_from_args(args) if args.strategy == "mirrored" else None
    run_search(
        config,
        space,
        args.out,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.trial_epochs,
        distribution_strategy=strategy,
    )
    return 0


def space_from_args(args: argparse.Namespace, config: FitConfig) -> SearchSpace:
    """The default space, updated by `--space-file`, then by `--space`; a
    model or training flag (e.g. `--depth 2`) fixes its hyperparameter."""
    from keras_unet_sr.config import tunable_settings
    from keras_unet_sr.errors import UserError
    from keras_unet_sr.tuning.hypermodel import (
        default_space,
        fixed_dimension,
        load_space_file,
        parse_space,
    )

    space = default_space(smoke=args.smoke)
    if args.space_file:
        space.update(load_space_file(args.space_file))
    explicit = parse_space(args.space)
    space.update(explicit)
    tunable = tunable_settings()
    for name in list(space):
        field = tunable[name]
        if options.flag_value(args, field.key) is None:
            continue
        if name in explicit:
            raise UserError(f"{field.flag} and --space {name}: give one of them")
        value = getattr(getattr(config, field.section), name)
        space[name] = fixed_dimension(name, value, field.flag)
    return space
