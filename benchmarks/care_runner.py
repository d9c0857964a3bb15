"""CSBDeep CARE, trained and applied as its documentation does, for `peers.py`.

The runner runs inside its own virtualenv, `benchmarks/.care-venv`, never in
the project's: csbdeep needs Keras 2 (`tf_keras`, with `TF_USE_LEGACY_KERAS=1`),
which must not become a dependency of the package. `care_python()` (called
by the driver, standard library only) makes that virtualenv on first use.

    TF_USE_LEGACY_KERAS=1 .care-venv/bin/python care_runner.py JOB.json

The job (JSON) names the training pairs (`train`: the folder with `low/` and
`high/` TIFFs, `(F, H, W)` frames and `(sH, sW)` targets matched by name, that
the project trains on too), the held-out inputs (`test`:
`[{"name", "low"}]`, `.npy` of `(H, W, F)` raw frames), `frame_subset`,
`scale`, the project's `tile`, `batch`, `epochs`, `steps`, `seed` and `out`.
It writes `out/pred/NAME.npy` (`(sH, sW)` float32) and `out/timings.json`.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VENV = Path(__file__).resolve().parent / ".care-venv"

# Patches live in memory (create_patches holds X and a target broadcast to
# X's channels: 2 x float32 per input value); cap them on a 24 GiB machine
# that others share. CARE then revisits patches, as its own examples do; the
# cap still leaves 2000+ overlapping 64 px patches per 256 px DL-SIM field.
PATCH_BYTES = 2 << 30
VALIDATION_SPLIT = 0.1  # csbdeep.io.load_training_data's usual 10 %


def care_env(seed: int = 0) -> dict[str, str]:
    """The runner's environment: Keras 2, quiet TF, nothing of the project's."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(key, None)
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONHASHSEED"] = str(seed)
    return env


def care_python() -> tuple[Path, str]:
    """The CARE virtualenv's python, made (or completed) on first use, and
    its versions. Runs in the driver's (the project's) python."""
    python = VENV / "bin" / "python"
    tf_version = importlib.metadata.version("tensorflow")
    check = (
        "import csbdeep, tensorboard, tf_keras, tifffile, tensorflow as tf; "
        "print(f'csbdeep {csbdeep.__version__}, TF {tf.__version__}, "
        "tf_keras {tf_keras.__version__}')"
    )

    def works() -> str | None:
        done = subprocess.run(
            [python, "-c", check], env=care_env(), capture_output=True, text=True
        )
        ok = done.returncode == 0 and f"TF {tf_version}," in done.stdout
        return done.stdout.strip() if ok else None

    if python.exists() and (versions := works()):
        return python, versions
    # The project's TF (like for like) and its Keras 2; TensorBoard for CARE's
    # default logging (TF 2.21 no longer pulls it in). pip keeps its cache.
    minor = ".".join(tf_version.split(".")[:2])
    packages = [f"tensorflow=={tf_version}", f"tf_keras~={minor}.0"]
    packages += [f"tensorboard~={minor}.0", "csbdeep~=0.8.0", "tifffile"]
    print(f"{' ' * 17}CARE virtualenv {VENV}: pip install {' '.join(packages)}")
    start = time.perf_counter()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    install = [python, "-m", "pip", "install", "--quiet", *packages]
    done = subprocess.run(install, env=care_env(), capture_output=True, text=True)
    versions = works()
    if done.returncode or not versions:
        raise RuntimeError(f"{VENV}: installing CARE failed:\n{done.stderr[-3000:]}")
    print(f"{' ' * 17}ready in {time.perf_counter() - start:.0f} s")
    return python, versions


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (patch sampling, CARE's batch order) and TF."""
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def upsample(image: np.ndarray, scale: int) -> np.ndarray:
    """`(H, W, F)` -> `(sH, sW, F)` bicubic: CARE has no upsampling of its own."""
    if scale == 1:
        return image
    import tensorflow as tf

    size = (image.shape[0] * scale, image.shape[1] * scale)
    return tf.image.resize(image[np.newaxis], size, method="bicubic")[0].numpy()


def frames_last(stack: np.ndarray) -> np.ndarray:
    """`(F, H, W)` or `(H, W)` TIFF data -> `(H, W, F)`."""
    return np.moveaxis(stack[np.newaxis] if stack.ndim == 2 else stack, 0, -1)


def model_input(image: np.ndarray, job: dict) -> np.ndarray:
    """Raw `(H, W, F)` -> CARE's input: the frame subset, float32, upsampled."""
    if job["frame_subset"] is not None:
        image = image[..., job["frame_subset"]]
    return upsample(image.astype(np.float32), job["scale"])


def patch_count(job: dict, images: int, frames: int) -> tuple[int, int]:
    """Patches per image for the budget's tiles (+10 % validation), capped."""
    side = job["tile"] * job["scale"]  # same output area as a project tile
    tiles = job["epochs"] * job["steps"] * job["batch"]
    wanted = math.ceil(tiles / (1 - VALIDATION_SPLIT))
    cap = PATCH_BYTES // (2 * 4 * side * side * frames)
    per_image = max(1, math.ceil(min(wanted, cap) / images))
    return side, per_image


def background_filter(fallbacks: list) -> object:
    """CARE's default `no_background_patches()`, except for an image where it
    leaves no patch centre (csbdeep then raises): there every patch is
    eligible. Sparse 256 px synthetic images with 128 px patches do that."""
    from csbdeep.data import no_background_patches

    default = no_background_patches()

    def patch_filter(datas, patch_size):
        mask = default(datas, patch_size)
        centres = tuple(
            slice(s // 2, d - s + s // 2 + 1)
            for s, d in zip(patch_size, mask.shape, strict=True)
        )
        if mask[centres].any():
            return mask
        fallbacks.append(1)
        return np.ones_like(mask)

    return patch_filter


def train(job: dict, out: Path):
    """Build patches and train CARE; returns the model and a timing dict."""
    import tifffile
    from csbdeep.data import RawData, create_patches_reduced_target
    from csbdeep.models import CARE, Config

    start = time.perf_counter()
    xs, ys = [], []
    lows = sorted((Path(job["train"]) / "low").glob("*.tif"))
    for low in lows:
        xs.append(model_input(frames_last(tifffile.imread(low)), job))
        high = tifffile.imread(low.parents[1] / "high" / low.name)
        ys.append(high.astype(np.float32)[..., np.newaxis])
    frames = xs[0].shape[-1]
    side, per_image = patch_count(job, len(xs), frames)
    fallbacks: list = []
    # Multi-frame input, one target channel: the documented route is the
    # reduced-target variant (target broadcast over C, then reduced again).
    X, Y, _ = create_patches_reduced_target(
        RawData.from_arrays(xs, ys, axes="YXC"),
        patch_size=(side, side, None),
        n_patches_per_image=per_image,
        reduction_axes="C",
        target_axes="YXC",
        patch_filter=background_filter(fallbacks),
        verbose=False,
    )
    del xs, ys
    # As load_training_data(validation_split=0.1): channels last, the last
    # 10 % of the (already shuffled) patches validate.
    X, Y = np.moveaxis(X, 1, -1), np.moveaxis(Y, 1, -1)
    n_val = max(1, round(len(X) * VALIDATION_SPLIT))
    validation = (X[-n_val:], Y[-n_val:])
    X, Y = X[:-n_val], Y[:-n_val]
    patched = time.perf_counter()

    config = Config(
        axes="YXC",
        n_channel_in=frames,
        n_channel_out=1,
        probabilistic=False,
        unet_kern_size=5,
        unet_n_depth=2,
        train_batch_size=job["batch"],
        train_steps_per_epoch=job["steps"],
        train_epochs=job["epochs"],
    )
    model = CARE(config, "care", basedir=str(out))
    model.train(X, Y, validation_data=validation)  # reloads the best weights
    end = time.perf_counter()
    timings = {
        "train_s": end - start,  # patches + training, as fit's data + training
        "patch_s": patched - start,
        "fit_s": end - patched,
        "patches": len(X) + n_val,
        "patch_side": side,
        "validation_patches": n_val,
        "train_images": len(lows),
        "unfiltered_images": len(fallbacks),  # no background filter there
    }
    return model, timings


def predict(model, job: dict, out: Path) -> dict:
    """Predict every held-out input (first call untimed: graph building)."""
    from csbdeep.data import PadAndCropResizer, PercentileNormalizer

    def run(raw: np.ndarray) -> np.ndarray:
        image = model_input(raw, job)
        restored = model.predict(
            image,
            axes="YXC",
            normalizer=PercentileNormalizer(1, 99.8),
            resizer=PadAndCropResizer(),
        )
        return np.asarray(restored, np.float32).reshape(image.shape[:2])

    (out / "pred").mkdir(parents=True, exist_ok=True)
    inputs = [(t["name"], np.load(t["low"])) for t in job["test"]]
    run(inputs[0][1])
    seconds, pixels = 0.0, 0
    for name, raw in inputs:
        start = time.perf_counter()
        restored = run(raw)
        seconds += time.perf_counter() - start
        pixels += restored.size
        np.save(out / "pred" / f"{name}.npy", restored)
    return {"predict_s": seconds, "output_px": pixels}


def versions() -> dict:
    import csbdeep
    import tensorflow as tf
    import tf_keras

    return {
        "csbdeep": csbdeep.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
    }


def main(job_path: str) -> None:
    """Run one job file (see the module docstring)."""
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(job["seed"])
    model, timings = train(job, out)
    timings.update(predict(model, job, out))
    timings["versions"] = versions()
    (out / "timings.json").write_text(json.dumps(timings, indent=1))


if __name__ == "__main__":
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        sys.exit("care_runner.py needs TF_USE_LEGACY_KERAS=1 (csbdeep uses Keras 2)")
    main(sys.argv[1])
