"""Fixed-budget quality: the model vs bicubic, on synthetic and real SIM data.

* synthetic:sim9 (the quick-start data), scored on its whole validation images;
* ../shared/data/dlsim-microtubules, leave-one-sample-out (train on two
  fields, score the third, for each of the three), with all 15 raw frames
  and with the SIM3 subset (frames 0, 5, 10).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from keras_unet_sr.config import FitConfig
from keras_unet_sr.training.fit import fit

DLSIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dlsim-microtubules"
FIELDS = ("mt_a", "mt_b", "mt_c")


def _budget(config: FitConfig, epochs: int, steps: int) -> FitConfig:
    config.train.epochs = epochs
    config.train.steps_per_epoch = steps
    config.train.early_stopping_patience = 0  # a fixed budget, no early stop
    return config


def _row(label: str, scores: list[dict]) -> str:
    def mean(method, metric):
        return float(np.mean([s[method][metric] for s in scores]))

    def summary(method):
        return f"{mean(method, 'psnr'):6.2f} dB / {mean(method, 'ssim'):.3f}"

    gain = mean("model", "psnr") - mean("bicubic", "psnr")
    return (
        f"  {label:34s} model {summary('model')} | bicubic {summary('bicubic')}"
        f" | gain {gain:+5.2f} dB"
    )


def run_quality(epochs: int, steps: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="keras-unet-sr-quality-"))
    silent = lambda _: None  # noqa: E731 - the table below is the output
    print(f"quality          fixed budget: {epochs} epochs x {steps} steps, batch 8")
    config = _budget(FitConfig(), epochs, steps)
    result = fit(config, work / "sim9", verbose=0, print_fn=silent)
    print(_row("synthetic:sim9 (validation images)", [result.scores]))
    if not DLSIM.is_dir():
        print(f"  {DLSIM} not found; skipping the real-data rows")
        return
    for label, subset in (
        ("dlsim 15 frames, leave-one-out", None),
        ("dlsim SIM3 (0,5,10), leave-one-out", [0, 5, 10]),
    ):
        folds = []
        for held_out in FIELDS:
            config = _budget(FitConfig(), epochs, steps)
            config.data.source = str(DLSIM)
            config.data.validation_names = [held_out]
            config.data.frame_subset = subset
            out = work / f"dlsim_{held_out}_{'sim3' if subset else 'all'}"
            folds.append(fit(config, out, verbose=0, print_fn=silent).scores)
        print(_row(label, folds))
