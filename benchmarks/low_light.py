"""Low light: train on high-light synthetic SIM, predict with far less light.

    python benchmarks/low_light.py [--factor 20] [--epochs 12] [--steps 100]

Training pairs are `sim9` simulations at a high light level only (peak
800-1500 photons); the test fields are the same specimens (same seeds) imaged
with 1, 1/5, 1/10 and 1/20 of that light. Two recipes train on the same
pairs at the same budget: the defaults, and the defaults with the photon-noise
augmentation (`--low-light FACTOR`, camera model estimated from the raw
frames). Prints PSNR/SSIM per light level for both and the widefield
baseline, and the goals as pass/short.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from keras_unet_sr.config import FitConfig
from keras_unet_sr.datasets.microscopy_sr import simulation
from keras_unet_sr.inference.predictor import Predictor, load_model
from keras_unet_sr.quality.evaluation import bicubic_baseline, evaluate_prediction
from keras_unet_sr.training.fit import fit

HIGH_LIGHT = (800.0, 1500.0)
LEVELS = (1, 5, 10, 20)


def modality(divisor: float) -> simulation.Modality:
    lo, hi = HIGH_LIGHT
    return dataclasses.replace(
        simulation.MODALITIES["sim9"], peak_photons=(lo / divisor, hi / divisor)
    )


def write_training_folder(folder: Path, count: int, size: int) -> None:
    for side in ("low", "high"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low, high = simulation.simulate_pair(modality(1), seed=(7, i), low_size=size)
        tifffile.imwrite(folder / "low" / f"train_{i:03d}.tif", low)
        tifffile.imwrite(
            folder / "high" / f"train_{i:03d}.tif", high.astype(np.float32)
        )


def test_fields(divisor: float, count: int, size: int):
    """The same specimens (seeds) at `1/divisor` of the training light."""
    for i in range(count):
        low, high = simulation.simulate_pair(
            modality(divisor), seed=(8, i), low_size=size
        )
        yield np.moveaxis(low, 0, -1), high[..., np.newaxis]


def score(model, divisor: float, count: int, size: int) -> dict[str, float]:
    predictor = Predictor(model)
    rows = {"model": [], "widefield": []}
    for low, high in test_fields(divisor, count, size):
        rows["model"].append(evaluate_prediction(predictor(low), high)["psnr"])
        baseline = bicubic_baseline(low.astype(np.float32), model)
        rows["widefield"].append(evaluate_prediction(baseline, high)["psnr"])
    return {name: float(np.mean(values)) for name, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=FitConfig().train.epochs)
    parser.add_argument("--steps", type=int, default=FitConfig().train.steps_per_epoch)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="keras-unet-sr-lowlight-"))
    write_training_folder(work / "train", args.images, args.size)
    results = {}
    for name, low_light in (
        ("defaults", 1.0),
        (f"low-light {args.factor:g}", args.factor),
    ):
        config = FitConfig()
        config.data.source = str(work / "train")
        config.data.data_dir = str(work / "tfds")
        config.train.epochs, config.train.steps_per_epoch = args.epochs, args.steps
        config.train.low_light = low_light
        result = fit(config, work / name.replace(" ", "_"), verbose=0, print_fn=print)
        model = load_model(str(result.model_path))
        results[name] = {
            level: score(model, level, args.test_images, args.size) for level in LEVELS
        }
    print(
        f"low light: sim9 trained at peak {HIGH_LIGHT} photons, "
        f"{args.epochs} x {args.steps} steps; PSNR dB per light level"
    )
    header = " | ".join(f"1/{level:<3d}" for level in LEVELS)
    print(f"  {'recipe':18s} {header}")
    widefield = {level: results["defaults"][level]["widefield"] for level in LEVELS}
    for name, by_level in results.items():
        cells = " | ".join(f"{by_level[level]['model']:5.2f}" for level in LEVELS)
        print(f"  {name:18s} {cells}")
    cells = " | ".join(f"{widefield[level]:5.2f}" for level in LEVELS)
    print(f"  {'widefield':18s} {cells}")
    plain, augmented = results["defaults"], results[f"low-light {args.factor:g}"]
    goals = [
        (
            "1/10: augmented >= widefield + 3 dB",
            augmented[10]["model"],
            widefield[10] + 3,
        ),
        (
            "1/10: augmented >= defaults + 2 dB",
            augmented[10]["model"],
            plain[10]["model"] + 2,
        ),
        (
            "full light: augmented >= defaults - 0.3 dB",
            augmented[1]["model"],
            plain[1]["model"] - 0.3,
        ),
    ]
    for label, value, bound in goals:
        verdict = "pass" if value >= bound else "short"
        print(f"  goal {label}: {value:.2f} vs {bound:.2f}: {verdict}")


if __name__ == "__main__":
    main()
