"""Side by side with CSBDeep CARE (Weigert et al. 2018): same data, same budget.

    python benchmarks/run.py --quality --peers
    python benchmarks/run.py --peers --peer-epochs 1 --peer-steps 5 --peer-folds dlsim15
    python benchmarks/run.py --only peers --project-set model.upsampling=input

Folds: `dlsim15` and `sim3` (frames 0, 5, 10) leave each DL-SIM field out in
turn; `sim9` and `widefield` train on the synthetic train split, test on its
test split. Both systems read each training set from one TIFF folder (never
holding a held-out image) and see the same tiles (epochs x steps x batch):
the project with `FitConfig()` (data, frame subset and budget set, and any
`--project-set` change: a candidate recipe), CARE with its documented
defaults in its own virtualenv (care_runner.py), each training in a fresh
process (measure.py: a second model in one process trains slower). Scores
are computed here alike for both and the widefield baseline: plain, and
registered (after the sub-pixel shift that best aligns prediction and
target, borders cropped).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from peer_report import (
    INDENT,
    LABELS,
    SYSTEMS,
    average,
    cell,
    goals,
    print_summary,
    score,
)

HERE = Path(__file__).resolve().parent
DLSIM = HERE.parents[1] / "shared" / "data" / "dlsim-microtubules"
FIELDS = ("mt_a", "mt_b", "mt_c")
SIM3 = [0, 5, 10]
FOLDS = ("dlsim15", "sim3", "sim9", "widefield")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# What --project-set may not change: the budget both systems share (--peer-*)
# and what project_job sets itself for the fold.
SHARED = {
    "train.epochs",
    "train.steps_per_epoch",
    "train.batch",
    "train.tile",
    "train.seed",
    "train.early_stopping_patience",
    "data.source",
    "data.frame_subset",
    "data.data_dir",
}


@dataclasses.dataclass
class Split:
    """One training set and the images held out from it."""

    folder: Path  # holds train/low and train/high
    tests: list[tuple[str, Path, np.ndarray]]  # name, raw (H, W, F) .npy, target
    subset: list[int] | None
    scale: int


def cpu_flags() -> str:
    """Which of the vector/matrix extensions that matter here the CPU has."""
    from keras_unet_sr.model.precision import cpu_flags as flags_of_this_cpu

    have = flags_of_this_cpu()
    return ", ".join(f"{flag} {'yes' if flag in have else 'no'}" for flag in CPU_FLAGS)


def _write_pair(folder: Path, name: str, low: np.ndarray, high: np.ndarray) -> None:
    """`(H, W, F)` / `(sH, sW, 1)` -> the `(F, H, W)` / `(sH, sW)` TIFFs fit reads."""
    tifffile.imwrite(folder / "low" / f"{name}.tif", np.moveaxis(low, -1, 0))
    tifffile.imwrite(folder / "high" / f"{name}.tif", high[..., 0])


def make_splits(fold: str, work: Path) -> list[Split]:
    """Write a fold's training folders and held-out inputs under `work`."""
    subset = SIM3 if fold == "sim3" else None
    if fold in ("dlsim15", "sim3"):
        splits = []
        for held in FIELDS:
            root = work / f"{fold}_{held}"
            for side in ("low", "high"):
                (root / "train" / side).mkdir(parents=True)
                for name in FIELDS:
                    if name != held:  # never the held-out field
                        source = DLSIM / side / f"{name}.tif"
                        shutil.copyfile(source, root / "train" / side / f"{name}.tif")
            low = np.moveaxis(tifffile.imread(DLSIM / "low" / f"{held}.tif"), 0, -1)
            high = tifffile.imread(DLSIM / "high" / f"{held}.tif")[..., np.newaxis]
            np.save(root / f"{held}.npy", low)
            tests = [(held, root / f"{held}.npy", high)]
            splits.append(Split(root, tests, subset, 1))
        return splits
    from keras_unet_sr.config import DataConfig
    from keras_unet_sr.data.sources import load_paired_images

    # The default TFDS folder: generated once, reused by later runs.
    data = load_paired_images(DataConfig(source=f"synthetic:{fold}"))
    root = work / fold
    for side in ("low", "high"):
        (root / "train" / side).mkdir(parents=True)
    for name, low, high in data.named_images("train"):
        _write_pair(root / "train", name, low, high)
    tests = []
    for name, low, high in data.named_images(
        data.split_or_fallback("test", "validation")
    ):
        np.save(root / f"{name}.npy", low)
        tests.append((name, root / f"{name}.npy", high))
    return [Split(root, tests, None, data.scale)]


def _job(split: Split, out: Path, **extra) -> Path:
    job = {
        "frame_subset": split.subset,
        "scale": split.scale,
        "test": [{"name": name, "low": str(path)} for name, path, _ in split.tests],
        "out": str(out),
        **extra,
    }
    path = out.with_suffix(".json")
    path.write_text(json.dumps(job, indent=1))
    return path


def _child(command: list[str], out: Path, env: dict | None = None) -> dict:
    """Run a job in a fresh process; its output goes to `out`.log."""
    log = out.with_suffix(".log")
    with open(log, "w") as stream:
        done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command[-2:])} failed (log {log}):\n{tail}")
    return json.loads((out / "timings.json").read_text())


def project_job(job_path: str) -> None:
    """In a child: fit with `FitConfig()` on the job's folder, then predict."""
    from keras_unet_sr.config import FitConfig, set_value
    from keras_unet_sr.inference.predictor import Predictor, load_model
    from keras_unet_sr.training.fit import fit

    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    config = FitConfig()
    for key, value in job["project_set"].items():  # a candidate recipe
        set_value(config, key, value)
    config.data.source = job["source"]
    config.data.data_dir = str(out.parent / "tfds")  # the run's temp folder, not ~
    config.data.frame_subset = job["frame_subset"]
    config.train.epochs, config.train.steps_per_epoch = job["epochs"], job["steps"]
    config.train.early_stopping_patience = 0  # a fixed budget, as quality.py
    start = time.perf_counter()
    result = fit(config, out / "fit", verbose=0, print_fn=lambda _: None)
    train_s = time.perf_counter() - start
    predictor = Predictor(load_model(str(result.model_path)))
    inputs = [(t["name"], np.load(t["low"])) for t in job["test"]]
    predictor(inputs[0][1])  # untimed: traces the graph once
    (out / "pred").mkdir()
    seconds, pixels = 0.0, 0
    for name, low in inputs:
        begin = time.perf_counter()
        restored = predictor(low)
        seconds += time.perf_counter() - begin
        pixels += restored[..., 0].size
        np.save(out / "pred" / f"{name}.npy", restored[..., 0])
    metrics = json.loads((out / "fit" / "metrics.json").read_text())
    timings = {
        "train_s": train_s,
        "predict_s": seconds,
        "output_px": pixels,
        "validation": [row["name"] for row in metrics["images"]],
        "epochs": result.final_epoch,
    }
    (out / "timings.json").write_text(json.dumps(timings, indent=1))


def widefield(low: np.ndarray, subset: list[int] | None, scale: int) -> np.ndarray:
    """The classical answer: mean of the (selected) frames, bicubic to the target."""
    import tensorflow as tf

    frames = low[..., subset] if subset is not None else low
    mean = frames.astype(np.float32).mean(axis=-1, keepdims=True)
    if scale > 1:
        size = (mean.shape[0] * scale, mean.shape[1] * scale)
        mean = tf.image.resize(mean[np.newaxis], size, method="bicubic")[0].numpy()
    return mean


def _validated(split: Split, timing: dict) -> str:
    names, total = timing["validation"], len(list(split.folder.glob("train/low/*")))
    held = split.tests[0][0] if len(split.tests) == 1 else "test"
    shown = ", ".join(names) if len(names) <= 2 else f"{len(names)} images"
    return f"{held} held out: validated on {shown} of {total}"


def run_fold(fold: str, work: Path, budget: dict, python: Path) -> dict:
    """Train and score both systems on every split of one fold; print its table."""
    from care_runner import care_env
    from error_bands import print_bands

    splits = make_splits(fold, work)
    rows, timings = [], {"project": [], "care": []}
    for split in splits:
        project_out = work / f"{split.folder.name}_project"
        job = _job(split, project_out, source=str(split.folder), **budget)
        command = [sys.executable, str(Path(__file__).resolve()), "--project-job"]
        timings["project"].append(_child([*command, str(job)], project_out))
        care_out = work / f"{split.folder.name}_care"
        job = _job(split, care_out, train=str(split.folder / "train"), **budget)
        command = [str(python), str(HERE / "care_runner.py"), str(job)]
        timings["care"].append(_child(command, care_out, care_env(budget["seed"])))
        for name, low_path, target in split.tests:
            row = {"name": name}
            for system, out in (("project", project_out), ("care", care_out)):
                row[system] = score(np.load(out / "pred" / f"{name}.npy"), target)
            baseline = widefield(np.load(low_path), split.subset, split.scale)
            row["widefield"] = score(baseline, target)
            rows.append(row)
    mean = {system: average([row[system] for row in rows]) for system in SYSTEMS}
    frames = f"frames {SIM3}" if fold == "sim3" else "all frames"
    where = "leave-one-field-out" if len(splits) > 1 else "train split -> test split"
    print(
        f"peers {fold:10s} {where}, {frames}, scale {splits[0].scale}; per system: "
        "PSNR dB/SSIM plain, registered, (dy,dx) shift px"
    )
    print(f"{INDENT}{'image':19s}" + "".join(f"{LABELS[s]:36s}" for s in SYSTEMS))
    for row in [*rows, {"name": "mean", **mean}]:
        cells = "".join(f"{cell(row[s]):36s}" for s in SYSTEMS).rstrip()
        print(f"{INDENT}{row['name'][:18]:19s}{cells}")
    print_bands(mean, INDENT)
    held = "; ".join(map(_validated, splits, timings["project"]))
    care = timings["care"][0]
    bare = sum(t["unfiltered_images"] for t in timings["care"])
    print(
        f"{INDENT}best-model choice: project on its own validation split of the "
        f"training images ({held}); CARE on {care['validation_patches']} of its "
        f"{care['patches']} patches ({care['patch_side']} px"
        + (f"; {bare} image(s) without its background filter)" if bare else ")")
    )
    return {"images": rows, "mean": mean, "timings": timings}


def run_peers(
    epochs: int | None = None,
    steps: int | None = None,
    folds: list[str] | None = None,
    keep: bool = False,
    json_path: str | None = None,
    project_set: dict[str, str] | None = None,
) -> dict:
    """The whole comparison; prints tables and goals, returns the results.

    Args:
        epochs: Epochs for both systems (default: `FitConfig()`'s).
        steps: Steps per epoch for both (default: `FitConfig()`'s).
        folds: Subset of `FOLDS` (default: all).
        keep: Keep the temporary folder (it is printed).
        json_path: Also write the results there as JSON.
        project_set: `section.key` -> value changes to the project's
            `FitConfig()` (a candidate recipe; CARE is unchanged).
    """
    from care_runner import care_python

    from keras_unet_sr.config import FitConfig, set_value
    from keras_unet_sr.errors import UserError
    from keras_unet_sr.model.precision import resolve_precision

    train = FitConfig().train  # the recipe of the day: read, never copied here
    budget = {
        "epochs": epochs or train.epochs,
        "steps": steps or train.steps_per_epoch,
        "batch": train.batch,
        "tile": train.tile,
        "seed": train.seed,
        "project_set": project_set or {},  # read by project_job only
    }
    folds = folds or list(FOLDS)
    if set(folds) - set(FOLDS):
        raise SystemExit(f"--peer-folds: choose from {','.join(FOLDS)}")
    for key, value in budget["project_set"].items():  # fail before CARE runs
        if key in SHARED:
            raise SystemExit(f"--project-set {key}: fixed by the benchmark")
        try:
            set_value(FitConfig(), key, value)
        except KeyError:
            raise SystemExit(f"--project-set {key}: no such setting") from None
        except UserError as error:
            raise SystemExit(f"--project-set {key}={value}: {error}") from None
    if not DLSIM.is_dir() and {"dlsim15", "sim3"} & set(folds):
        print(f"peers            {DLSIM} not found; skipping dlsim15 and sim3")
        folds = [f for f in folds if f not in ("dlsim15", "sim3")]
    flags = cpu_flags()
    precision = resolve_precision(train.precision)
    averaging = FitConfig().model.test_time_transforms
    print(
        f"peers            cpu flags: {flags}; project {precision}, test-time "
        f"average {averaging}; CARE float32, none (its documented predict)"
        + "".join(f"; project {k}={v}" for k, v in budget["project_set"].items())
    )
    python, versions = care_python()
    tiles = budget["epochs"] * budget["steps"] * budget["batch"]
    print(
        f"{INDENT}CARE: {versions}; budget for both: {budget['epochs']} epochs x "
        f"{budget['steps']} steps x batch {budget['batch']} = {tiles} tiles"
    )
    work = Path(tempfile.mkdtemp(prefix="keras-unet-sr-peers-"))
    results = {}
    try:
        for fold in folds:
            results[fold] = run_fold(fold, work, budget, python)
    except Exception:
        keep = True  # the failing job's log is in there
        raise
    finally:
        if keep:
            print(f"{INDENT}kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if results:
        print_summary(results)
    found = goals(results)
    for index, goal in enumerate(found):
        verdict = {True: "pass", False: "short", None: "n/a"}[goal["pass"]]
        head = "peers goals      " if index == 0 else INDENT
        print(f"{head}{goal['fold']:10s} {goal['goal']}  [{verdict}]")
    report = {"cpu_flags": flags, "project_precision": precision, "care": versions}
    report |= {"budget": budget, "folds": results, "goals": found}
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
        print(f"{INDENT}results: {json_path}")
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--project-job":
        project_job(sys.argv[2])
    else:
        sys.exit(__doc__)
