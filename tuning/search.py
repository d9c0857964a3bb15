"""Run a hyperparameter search: `keras-unet-sr tune` as a library function.

Writes to the output folder:

* `search.json`: the search settings. Running the same search again
  continues it: finished trials are kept, and a trial cut short is run
  again. A run with other settings is refused, so trials never mix.
* `tuner/`: keras-tuner's project: the oracle state, and one folder per
  trial with its `trial.json` and best-epoch weights.
* `logs/`: TensorBoard: `logs/<trial>/execution0/{train,validation}` scalars,
  and on the HParams tab every trial's hyperparameters and scores side by
  side.
* `trials.csv`: one row per trial, best validation PSNR first.
* `best_config.json`: the best trial's complete `FitConfig`, with the base
  config's epochs, for `keras-unet-sr fit --config`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import tensorflow as tf

from keras_unet_sr.config import FitConfig, save_config
from keras_unet_sr.errors import UserError
from keras_unet_sr.files.atomic import write_json
from keras_unet_sr.files.folders import make_output_folder
from keras_unet_sr.training.fit import keras_verbosity
from keras_unet_sr.training.inputs import check_precision, load_training_data
from keras_unet_sr.tuning.hypermodel import (
    OBJECTIVE,
    Dimension,
    SearchSpace,
    SuperResolutionHyperModel,
    space_to_json,
)
from keras_unet_sr.tuning.trials import (
    TrialRecord,
    format_trials,
    trial_records,
    write_trials_csv,
)

DEFAULT_MAX_TRIALS = 10
PROJECT = "tuner"  # keras-tuner's project folder inside the output folder


class _TrialHygiene:
    """Tuner mixin: a trial run again starts with clean logs, and each trial's
    model is freed before the next one is built."""

    def __init__(self, *args, log_dir: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_dir = log_dir

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        # A trial cut short by an interrupt runs again under its id.
        shutil.rmtree(self.log_dir / trial.trial_id, ignore_errors=True)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        keras.backend.clear_session()
        gc.collect()


class RandomSearch(_TrialHygiene, keras_tuner.RandomSearch):
    """`keras_tuner.RandomSearch` with per-trial clean-up."""


class BayesianOptimization(_TrialHygiene, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` with per-trial clean-up."""


class Hyperband(_TrialHygiene, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` with per-trial clean-up."""


TUNERS = {
    "hyperband": Hyperband,
    "bayesian": BayesianOptimization,
    "random": RandomSearch,
}


class _ExpectedRetracing(logging.Filter):
    """Each trial traces its own model's train step, so TensorFlow's warning
    about frequent retracing is expected during a search."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@dataclasses.dataclass
class SearchResult:
    """What a finished search produced.

    Attributes:
        out_dir: The output folder.
        trials: All trials, best first.
        best_config: The best trial's config (the base config's epochs).
        best_config_path: Where it was written.
    """

    out_dir: Path
    trials: list[TrialRecord]
    best_config: FitConfig
    best_config_path: Path


def run_search(
    config: FitConfig,
    space: SearchSpace,
    out_dir: str | os.PathLike,
    *,
    tuner: str = "hyperband",
    max_trials: int | None = None,
    epochs: int | None = None,
    verbose: int | str = "auto",
    print_fn: Callable[[str], None] = print,
    distribution_strategy: tf.distribute.Strategy | None = None,
) -> SearchResult:
    """Search `space` around `config`, or continue the search in `out_dir`.

    Args:
        config: The base config; each trial is a copy with `space`'s values.
        space: The hyperparameters to search (see `tuning.hypermodel`).
        out_dir: Output folder (see the module docstring).
        tuner: `"hyperband"`, `"bayesian"` or `"random"`.
        max_trials: Trials in all (a re-run with more continues the search).
            Default: 10; Hyperband: its full schedule.
        epochs: Epochs per trial (Hyperband: its `max_epochs`); default: the
            config's epochs.
        verbose: Keras `fit` verbosity (`"auto"`: 1 on a terminal, else 2).
        print_fn: Where progress lines and the trials table go.
        distribution_strategy: Runs each trial under this strategy's scope.

    Returns:
        The trials and the best config.
    """
    out_dir = Path(out_dir)
    epochs = config.train.epochs if epochs is None else epochs
    _check_search(config, space, tuner, max_trials, epochs)
    settings = _settings(config, space, tuner, epochs)
    continuing = _check_search_folder(out_dir, settings)

    # The tile check of `load_training_data` must hold for the deepest trial.
    deepest = FitConfig.from_dict(config.to_dict())
    deepest.model.depth = _largest_depth(config, space)
    prepared = load_training_data(deepest)
    hypermodel = SuperResolutionHyperModel(
        config, space, prepared.frames, prepared.scale, epochs
    )
    if not continuing:
        make_output_folder(out_dir)
        _write_json(settings, out_dir / "search.json")
        _write_hparams_config(out_dir / "logs", space)
    search = make_tuner(
        tuner,
        hypermodel,
        out_dir,
        max_trials=max_trials,
        epochs=epochs,
        seed=config.train.seed,
        distribution_strategy=distribution_strategy,
    )
    if continuing:
        done = sum(t.status == "COMPLETED" for t in search.oracle.trials.values())
        print_fn(f"Continuing the search in {out_dir} ({done} trial(s) finished)")
    print_fn(f"TensorBoard (HParams tab): tensorboard --logdir {out_dir / 'logs'}")

    t = config.train
    quiet = _ExpectedRetracing()
    tf.get_logger().addFilter(quiet)
    try:
        search.search(
            prepared.train_tiles(t.batch),  # infinite: steps_per_epoch ends epochs
            validation_data=prepared.validation,
            epochs=epochs,
            steps_per_epoch=t.steps_per_epoch,
            callbacks=_trial_callbacks(out_dir / "logs", t.early_stopping_patience),
            shuffle=False,  # the tile stream is shuffled (and seeded) already
            verbose=keras_verbosity(verbose),
        )
    finally:
        tf.get_logger().removeFilter(quiet)
    return _report(search, hypermodel, out_dir, print_fn)


def _check_search(
    config: FitConfig,
    space: SearchSpace,
    tuner: str,
    max_trials: int | None,
    epochs: int,
) -> None:
    if tuner not in TUNERS:
        raise UserError(f"--tuner {tuner}: choose one of {', '.join(TUNERS)}")
    if max_trials is not None and max_trials < 1:
        raise UserError(f"--max-trials {max_trials}: must be at least 1")
    if epochs < 1:
        raise UserError(f"--epochs {epochs}: must be at least 1")
    check_precision(config)
    depth = _largest_depth(config, space)
    tile = config.train.tile
    if tile % 2**depth:
        raise UserError(
            f"--tile {tile}: must be a multiple of {2**depth} "
            f"(2**{depth}, the largest depth in the search space)"
        )


def _largest_depth(config: FitConfig, space: SearchSpace) -> int:
    return space["depth"].largest if "depth" in space else config.model.depth


def _settings(
    config: FitConfig, space: SearchSpace, tuner: str, epochs: int
) -> dict[str, Any]:
    """What makes trials comparable: equal settings, one search."""
    base = config.to_dict()
    del base["train"]["epochs"]  # only the best config's length, not the trials'
    settings = {
        "tuner": tuner,
        "objective": OBJECTIVE,
        "epochs": epochs,
        "space": space_to_json(space),
        "config": base,
    }
    return json.loads(json.dumps(settings))  # as it reads back from the file


def _check_search_folder(out_dir: Path, settings: dict[str, Any]) -> bool:
    """Whether `out_dir` holds this search already; refuses another search."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --out exists and is not a folder")
    saved = out_dir / "search.json"
    if not saved.exists():
        if (out_dir / PROJECT).exists():
            raise UserError(f"{out_dir}: holds a search without search.json")
        return False
    try:
        previous = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{saved}: unreadable ({error})") from error
    changed = _differences(previous, settings)
    if changed:
        raise UserError(
            f"{out_dir}: holds a search with other settings ({', '.join(changed)}); "
            "use another --out, or the same options to continue it"
        )
    return True


def _differences(previous: Any, current: Any, prefix: str = "") -> list[str]:
    if not (isinstance(previous, dict) and isinstance(current, dict)):
        return [] if previous == current else [prefix.rstrip(".") or "settings"]
    names = sorted(set(previous) | set(current))
    return [
        change
        for name in names
        for change in _differences(
            previous.get(name), current.get(name), f"{prefix}{name}."
        )
    ]


def _write_json(values: dict[str, Any], path: Path) -> None:
    write_json(path, values)


def _write_hparams_config(log_dir: Path, space: SearchSpace) -> None:
    """The HParams experiment: the searched domains and the score columns.

    keras-tuner logs each trial's values (`hparams_api.KerasCallback`); this
    names the columns, instead of TensorBoard inferring every scalar as one.
    """
    from tensorboard.plugins.hparams import api as hparams_api

    hparams = [
        hparams_api.HParam(name, _domain(dimension, hparams_api))
        for name, dimension in sorted(space.items())
    ]
    metrics = [
        hparams_api.Metric("epoch_psnr", group="validation", display_name="val PSNR"),
        hparams_api.Metric("epoch_ssim", group="validation", display_name="val SSIM"),
        hparams_api.Metric("epoch_loss", group="validation", display_name="val loss"),
        hparams_api.Metric("epoch_loss", group="train", display_name="train loss"),
    ]
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hparams_api.hparams_config(hparams=hparams, metrics=metrics)
    writer.close()


def _domain(dimension: Dimension, hparams_api):
    if dimension.choices:
        return hparams_api.Discrete(list(dimension.choices))
    if isinstance(dimension.low, int):
        return hparams_api.IntInterval(dimension.low, dimension.high)
    return hparams_api.RealInterval(float(dimension.low), float(dimension.high))


def oracle_seed(seed: int) -> int:
    """The keras-tuner oracle seed for a config seed.

    Why: the oracle does `seed or random.randint(1, 10000)`, so the default
    seed 0 would give a different search on every run; shifting by one keeps
    every config seed, 0 included, reproducible.
    """
    return seed + 1


def make_tuner(
    name: str,
    hypermodel: SuperResolutionHyperModel,
    out_dir: Path,
    *,
    max_trials: int | None,
    epochs: int,
    seed: int,
    distribution_strategy: tf.distribute.Strategy | None,
) -> keras_tuner.Tuner:
    """The keras-tuner tuner `name` over `hypermodel`, resuming `out_dir`."""
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        seed=oracle_seed(seed),
        directory=str(out_dir),
        project_name=PROJECT,
        overwrite=False,  # reload the oracle: finished trials are kept
        log_dir=out_dir / "logs",
        distribution_strategy=distribution_strategy,
    )
    if name != "hyperband":
        return TUNERS[name](max_trials=max_trials or DEFAULT_MAX_TRIALS, **common)
    search = Hyperband(max_epochs=epochs, factor=3, **common)
    search.oracle.max_trials = max_trials  # None: the whole Hyperband schedule
    return search


def _trial_callbacks(log_dir: Path, patience: int) -> list[keras.callbacks.Callback]:
    # keras-tuner moves TensorBoard's logs to `log_dir/<trial>/execution0` and
    # adds the HParams callback that records the trial's values.
    callbacks = [
        keras.callbacks.TensorBoard(str(log_dir), write_graph=False),
        keras.callbacks.TerminateOnNaN(),
    ]
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=OBJECTIVE, mode="max", patience=patience
            )
        )
    return callbacks


def _report(
    search: keras_tuner.Tuner,
    hypermodel: SuperResolutionHyperModel,
    out_dir: Path,
    print_fn: Callable[[str], None],
) -> SearchResult:
    """Writes the trials table and the best config."""
    names = sorted(hypermodel.space)
    records = trial_records(search.oracle, names)
    write_trials_csv(records, names, out_dir / "trials.csv")
    print_fn(format_trials(records, names))
    best = next((r for r in records if r.val_psnr is not None), None)
    if best is None:
        raise UserError(
            f"{out_dir}: no trial finished; see the messages in "
            f"{out_dir / PROJECT}/trial_*/trial.json"
        )
    best_config = hypermodel.config_for(best.values)  # the base config's epochs
    path = out_dir / "best_config.json"
    save_config(best_config, path)
    print_fn(
        f"Best: trial {best.trial_id}, val PSNR {best.val_psnr:.2f} dB. "
        f"Train it: keras-unet-sr fit --config {path}"
    )
    return SearchResult(out_dir, records, best_config, path)
