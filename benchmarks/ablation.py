"""One change at a time: leave-one-field-out on the real DL-SIM data.

    python benchmarks/ablation.py                       # every variant below
    python benchmarks/ablation.py --variants default,register --frames 0,5,10

Each variant is `FitConfig()` (the current defaults) with one set of
`section.key=value` changes, trained on two of the three fields of
`../shared/data/dlsim-microtubules` and scored on the third (whole field,
CARE-style), for each of the three folds, at the same budget. Scores are
printed plain and after registering the prediction to the target by its
best sub-pixel shift (`keras_unet_sr.quality.registration`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from keras_unet_sr.config import FitConfig, set_value
from keras_unet_sr.inference.predictor import Predictor, load_model
from keras_unet_sr.quality.evaluation import evaluate_prediction, evaluate_registered
from keras_unet_sr.training.fit import fit

DLSIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dlsim-microtubules"
FIELDS = ("mt_a", "mt_b", "mt_c")
VARIANTS = {
    "default": {},
    "register": {"data.register": "true"},
    "register+no-augment": {"data.register": "true", "train.augment": "false"},
    "register+kernel5": {"data.register": "true", "model.kernel_size": "5"},
    "register+depth3": {"data.register": "true", "model.depth": "3"},
    "register+filters48": {"data.register": "true", "model.filters": "48"},
    "register+alpha0.5": {"data.register": "true", "train.loss_alpha": "0.5"},
    "kernel5": {"model.kernel_size": "5"},
    "depth3": {"model.depth": "3"},
    "filters48": {"model.filters": "48"},
    "alpha0.5": {"train.loss_alpha": "0.5"},
    "l1": {"train.loss_alpha": "0"},
    "float32": {"train.precision": "float32"},
    "lr5e-4": {"train.lr": "5e-4"},
    "residual": {"model.residual": "true"},
    "no-residual": {"model.residual": "false"},
    "min-foreground0.3": {"train.min_foreground": "0.3"},
    "half-turn": {"train.augment_transforms": "half-turn"},
    "lr4e-3": {"train.lr": "4e-3"},
    "mse": {"train.loss_alpha": "0", "train.pixel_loss": "l2"},
    "mse+half-turn": {
        "train.loss_alpha": "0",
        "train.pixel_loss": "l2",
        "train.augment_transforms": "half-turn",
    },
}


def run_fold(
    changes: dict, held_out: str, frames, work: Path, budget, seed: int = 0
) -> dict:
    folder = work / f"train_without_{held_out}"
    for side in ("low", "high"):
        (folder / side).mkdir(parents=True, exist_ok=True)
        for name in FIELDS:
            link = folder / side / f"{name}.tif"
            if name != held_out and not link.exists():
                link.symlink_to(DLSIM / side / f"{name}.tif")
    config = FitConfig()
    config.data.source = str(folder)
    config.data.data_dir = str(work / "tfds")
    config.data.frame_subset = frames
    config.train.epochs, config.train.steps_per_epoch = budget
    config.train.seed = seed
    for key, value in changes.items():
        set_value(config, key, value)
    out = work / f"run_{abs(hash((str(changes), held_out, str(frames), seed)))}"
    start = time.monotonic()
    result = fit(config, out, verbose=0, print_fn=lambda _: None)
    seconds = time.monotonic() - start
    model = load_model(str(result.model_path))
    low = np.moveaxis(tifffile.imread(DLSIM / "low" / f"{held_out}.tif"), 0, -1)
    target = tifffile.imread(DLSIM / "high" / f"{held_out}.tif").astype(np.float32)
    prediction = Predictor(model)(low)[..., 0]
    return {
        "plain": evaluate_prediction(prediction, target),
        "registered": evaluate_registered(prediction, target),
        "seconds": seconds,
        "epochs": result.final_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--frames", help="frame subset, e.g. 0,5,10 (default all)")
    parser.add_argument("--epochs", type=int, default=FitConfig().train.epochs)
    parser.add_argument("--steps", type=int, default=FitConfig().train.steps_per_epoch)
    parser.add_argument("--seeds", default="0", help="e.g. 0,1: each fold per seed")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    frames = [int(f) for f in args.frames.split(",")] if args.frames else None
    work = Path(tempfile.mkdtemp(prefix="keras-unet-sr-ablation-"))
    results = {}
    budget = (args.epochs, args.steps)
    print(
        f"dlsim leave-one-field-out, frames {args.frames or 'all'}, "
        f"{args.epochs} x {args.steps} steps, seeds {args.seeds} (per-fold figures: "
        "their mean); plain | registered PSNR/SSIM"
    )
    for name in args.variants.split(","):
        runs = {
            held: [
                run_fold(VARIANTS[name], held, frames, work, budget, seed)
                for seed in seeds
            ]
            for held in FIELDS
        }
        results[name] = runs

        def mean(kind, metric, runs=runs):
            return float(np.mean([r[kind][metric] for f in runs.values() for r in f]))

        def fold_mean(fold, kind):
            return float(np.mean([r[kind]["psnr"] for r in fold]))

        per_fold = " ".join(
            f"{h}:{fold_mean(f, 'plain'):.2f}/{fold_mean(f, 'registered'):.2f}"
            for h, f in runs.items()
        )
        seconds = sum(r["seconds"] for f in runs.values() for r in f) / len(seeds)
        print(
            f"{name:24s} {mean('plain', 'psnr'):6.2f} dB {mean('plain', 'ssim'):.3f} | "
            f"{mean('registered', 'psnr'):6.2f} dB {mean('registered', 'ssim'):.3f}"
            f" | {per_fold} | {seconds:.0f} s",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
