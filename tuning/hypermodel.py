"""The search space and the keras-tuner HyperModel of `keras-unet-sr tune`.

A hyperparameter is named after the `FitConfig` field it sets (`depth`,
`filters`, `lr`, `loss_alpha`, ...). A trial's values go into a copy of the
base config, and `build` calls the same `build_model`/`compile_model` as
`fit`. So a trial's config is a `FitConfig`, and the best one is a
`fit --config` file.

A space maps names to `Dimension`s. On the command line a dimension is
`NAME=V1,V2,...` (a choice; one value fixes it) or `NAME=MIN:MAX[:log]` (a
uniform or log-uniform range). In a JSON file it is a list (choice), a single
value (fixed) or `{"min": MIN, "max": MAX, "sampling": "linear" | "log"}`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_unet_sr.config import Field, FitConfig, read_json, tunable_settings
from keras_unet_sr.errors import UserError
from keras_unet_sr.training.fit import build_model, compile_model

OBJECTIVE = "val_psnr"
SPACE_SYNTAX = (
    "NAME=V1,V2,... or NAME=MIN:MAX[:log], e.g. depth=1,2,3 or lr=1e-4:1e-2:log"
)


# Only fields that `build_model`/`compile_model` read (`tunable=True` in the
# config): the data (tiles, batch, frames, percentiles) is prepared once per
# search and cannot vary by trial.
TUNABLE: dict[str, Field] = tunable_settings()


@dataclasses.dataclass(frozen=True)
class Dimension:
    """The values one hyperparameter takes: a choice or a range.

    Attributes:
        choices: The values to choose from (one value: fixed); empty for a range.
        low: Lower bound of a range (inclusive).
        high: Upper bound of a range (inclusive).
        log: Sample the range log-uniformly.
    """

    choices: tuple = ()
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False

    @property
    def largest(self) -> Any:
        return max(self.choices) if self.choices else self.high

    def declare(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        """Register this dimension as `name` in `hp`; returns the trial's value."""
        if len(self.choices) == 1:
            return hp.Fixed(name, self.choices[0])
        if self.choices:
            if all(isinstance(choice, bool) for choice in self.choices):
                # hp.Choice hands True/False back as 1/0, which the config refuses.
                return hp.Boolean(name, default=self.choices[0])
            return hp.Choice(name, list(self.choices))
        sampling = "log" if self.log else "linear"
        if isinstance(self.low, int):
            return hp.Int(name, self.low, self.high, sampling=sampling)
        return hp.Float(name, self.low, self.high, sampling=sampling)

    def to_json(self) -> list | dict:
        if self.choices:
            return list(self.choices)
        sampling = "log" if self.log else "linear"
        return {"min": self.low, "max": self.high, "sampling": sampling}


SearchSpace = dict[str, Dimension]


def default_space(smoke: bool = False) -> SearchSpace:
    """A space that trains in minutes per trial on a laptop CPU.

    Args:
        smoke: Smaller U-Nets (depth 1-2, 4-8 filters), for `--smoke`.
    """
    return {
        "depth": Dimension(choices=(1, 2) if smoke else (1, 2, 3)),
        "filters": Dimension(choices=(4, 8) if smoke else (8, 16, 32)),
        "lr": Dimension(low=3e-4, high=3e-3, log=True),
        "loss_alpha": Dimension(low=0.5, high=0.95),
    }


def parse_space(entries: Sequence[str]) -> SearchSpace:
    """Dimensions from `--space` arguments (`NAME=V1,V2` or `NAME=MIN:MAX[:log]`)."""
    space = {}
    for text in entries:
        origin = f"--space {text}"
        name, sep, spec = (part.strip() for part in text.partition("="))
        if not sep or not name or not spec:
            raise UserError(f"{origin}: expected {SPACE_SYNTAX}")
        tunable = _tunable(name, origin)
        if ":" not in spec:
            space[name] = _choice(name, tunable, spec.split(","), origin)
            continue
        low, high, *sampling = spec.split(":")
        if sampling not in ([], ["log"], ["linear"]):
            raise UserError(f"{origin}: expected MIN:MAX or MIN:MAX:log")
        space[name] = _range(name, tunable, low, high, sampling == ["log"], origin)
    return space


def load_space_file(path: str | os.PathLike) -> SearchSpace:
    """Dimensions from a JSON object, e.g. `{"depth": [1, 2], "lr": {"min": 1e-4,
    "max": 1e-2, "sampling": "log"}}`."""
    values = read_json(path, f"--space-file {path}")
    return space_from_json(values, f"--space-file {path}")


def space_from_json(values: Any, origin: str) -> SearchSpace:
    """Dimensions from their JSON form (see `Dimension.to_json`)."""
    if not isinstance(values, dict):
        raise UserError(f"{origin}: expected an object of NAME: [values] or range")
    space = {}
    for name, spec in values.items():
        where = f"{origin}: {name}"
        tunable = _tunable(name, where)
        if not isinstance(spec, dict):
            choices = spec if isinstance(spec, list) else [spec]
            space[name] = _choice(name, tunable, choices, where)
            continue
        keys = set(spec)
        sampling = spec.get("sampling", "linear")
        if not {"min", "max"} <= keys <= {"min", "max", "sampling"}:
            raise UserError(f'{where}: a range is {{"min", "max", "sampling"}}')
        if sampling not in ("linear", "log"):
            raise UserError(f"{where}: sampling must be 'linear' or 'log'")
        log = sampling == "log"
        space[name] = _range(name, tunable, spec["min"], spec["max"], log, where)
    return space


def space_to_json(space: SearchSpace) -> dict[str, Any]:
    return {name: dimension.to_json() for name, dimension in sorted(space.items())}


def fixed_dimension(name: str, value: Any, origin: str) -> Dimension:
    """A one-value dimension, checked like a `--space` value."""
    return _choice(name, _tunable(name, origin), [value], origin)


def _tunable(name: str, origin: str) -> Field:
    if name in TUNABLE:
        return TUNABLE[name]
    config_fields = FitConfig().to_dict()
    if any(name in section for section in config_fields.values()):
        problem = f"'{name}' cannot be tuned (it is the same for every trial)"
    else:
        problem = f"unknown hyperparameter '{name}'"
    raise UserError(f"{origin}: {problem}; tunable: {', '.join(sorted(TUNABLE))}")


def _choice(name: str, tunable: Field, raw: Sequence[Any], origin: str) -> Dimension:
    if not raw:
        raise UserError(f"{origin}: an empty list of values (give at least one)")
    values = [_value(name, tunable, item, origin) for item in raw]
    return Dimension(choices=tuple(dict.fromkeys(values)))  # drops repeats


def _range(
    name: str, tunable: Field, low: Any, high: Any, log: bool, origin: str
) -> Dimension:
    if tunable.kind in (str, bool):
        raise UserError(f"{origin}: {name} takes a list of values, not a range")
    low, high = (_value(name, tunable, bound, origin) for bound in (low, high))
    if not low < high:
        raise UserError(f"{origin}: empty range (min {low} must be below max {high})")
    if log and low <= 0:
        raise UserError(f"{origin}: log sampling needs min > 0")
    return Dimension(low=low, high=high, log=log)


def _value(name: str, tunable: Field, raw: Any, origin: str) -> Any:
    try:
        return tunable.check(raw.strip() if isinstance(raw, str) else raw)
    except ValueError as error:
        raise UserError(f"{origin}: {name} {error}") from None


class SuperResolutionHyperModel(keras_tuner.HyperModel):
    """Builds and trains one trial's U-Net from a copy of the base config.

    Args:
        base: The config every trial starts from.
        space: The hyperparameters and their values.
        frames: Input frames of the data.
        scale: Scale factor of the data.
        epochs: Epochs per trial (Hyperband: the most any trial trains).
    """

    def __init__(
        self,
        base: FitConfig,
        space: SearchSpace,
        frames: int,
        scale: int,
        epochs: int,
    ):
        super().__init__(name="super_resolution_unet")
        self.base = base
        self.space = space
        self.frames = frames
        self.scale = scale
        self.epochs = epochs

    def config_for(self, values: Mapping[str, Any]) -> FitConfig:
        """The base config with a trial's hyperparameter values filled in."""
        config = FitConfig.from_dict(self.base.to_dict())
        for name in self.space:
            setattr(getattr(config, TUNABLE[name].section), name, values[name])
        return config

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        values = {name: dim.declare(hp, name) for name, dim in self.space.items()}
        config = self.config_for(values)
        keras.utils.set_random_seed(config.train.seed)  # trials differ by hp only
        model = build_model(config, self.frames, self.scale)
        # One schedule over the longest trial, so a Hyperband round trains the
        # first part of the full run.
        compile_model(model, config, self.epochs * config.train.steps_per_epoch)
        # Built now, not in the first traced train step: Hyperband's checkpoint
        # load then restores Adam's state and the schedule position, and each
        # trial leaks 3 graphs in TensorFlow instead of ~130.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(
        self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs
    ) -> dict[str, float]:
        """`model.fit`; returns the best epoch's metrics plus the trial's
        `params`, `epochs` (trained up to) and `train_seconds`."""
        start = time.monotonic()
        history = model.fit(*args, **kwargs)
        seconds = time.monotonic() - start
        scores = np.asarray(history.history.get(OBJECTIVE, [math.nan]), dtype=float)
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        metrics = {name: values[best] for name, values in history.history.items()}
        return {
            OBJECTIVE: math.nan,  # a trial that never validated fails
            **metrics,
            "params": model.count_params(),
            "epochs": kwargs.get("initial_epoch", 0) + len(history.epoch),
            "train_seconds": seconds,
        }
