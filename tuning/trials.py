"""The trials of a search as a table: one record per trial, `trials.csv` and the
printed summary.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import keras_tuner

from keras_unet_sr.files.atomic import atomic_path


@dataclasses.dataclass
class TrialRecord:
    """One row of the trials table.

    Attributes:
        trial_id: keras-tuner's trial id (also its `logs/` folder).
        status: `COMPLETED`, `FAILED`, ...
        values: The trial's hyperparameter values.
        params: Model parameters.
        epochs: Epochs the model was trained up to.
        val_psnr: Best validation PSNR (dB) of the trial; None if it failed.
        train_seconds: Training time of the trial.
    """

    trial_id: str
    status: str
    values: dict[str, Any]
    params: int | None
    epochs: int | None
    val_psnr: float | None
    train_seconds: float | None


def trial_records(oracle: keras_tuner.Oracle, names: list[str]) -> list[TrialRecord]:
    """The oracle's trials as table rows, best validation PSNR first."""
    records = []
    for trial in oracle.trials.values():
        score = trial.score if trial.status == "COMPLETED" else None
        params, epochs = _last(trial, "params"), _last(trial, "epochs")
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                status=trial.status,
                values={n: trial.hyperparameters.values.get(n) for n in names},
                params=None if params is None else int(params),
                epochs=None if epochs is None else int(epochs),
                val_psnr=None if score is None or math.isnan(score) else score,
                train_seconds=_last(trial, "train_seconds"),
            )
        )
    return sorted(
        records,
        key=lambda r: (r.val_psnr is None, -(r.val_psnr or 0.0), r.trial_id),
    )


def _last(trial: keras_tuner.engine.trial.Trial, metric: str) -> float | None:
    if not trial.metrics.exists(metric):
        return None
    return trial.metrics.get_last_value(metric)


def _columns(names: list[str]) -> list[str]:
    return ["trial", *names, "params", "epochs", "val_psnr", "train_seconds", "status"]


def _row(record: TrialRecord, names: list[str]) -> list[Any]:
    return [
        record.trial_id,
        *(record.values[name] for name in names),
        record.params,
        record.epochs,
        record.val_psnr,
        record.train_seconds,
        record.status,
    ]


def write_trials_csv(records: list[TrialRecord], names: list[str], path: Path) -> None:
    """One row per trial (empty cells for a failed trial's scores), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_columns(names))
        for record in records:
            writer.writerow(["" if v is None else v for v in _row(record, names)])


def format_trials(records: list[TrialRecord], names: list[str]) -> str:
    """The trials as an aligned text table."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}" if value < 100 else f"{value:.0f}"
        return str(value)

    rows = [_columns(names)] + [
        [cell(v) for v in _row(record, names)] for record in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)
