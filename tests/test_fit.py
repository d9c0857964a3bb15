"""`keras-unet-sr fit` end to end on tiny synthetic data, and resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import keras
import pytest

from keras_unet_sr.cli import main
from keras_unet_sr.config import load_config
from keras_unet_sr.model.unet import SuperResolutionUNet


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tfds_dir):
    out = tmp_path_factory.mktemp("fit") / "run"
    assert main(["fit", "--smoke", "--out", str(out), "--data-dir", tfds_dir]) == 0
    return out


def test_fit_writes_model_config_and_logs(smoke_run, capsys):
    out = smoke_run
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert isinstance(model, SuperResolutionUNet)
    assert (model.frames, model.scale) == (9, 2)
    config = load_config(out / "config.json")
    assert config.data.source == "synthetic:sim9" and config.train.epochs == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    for method in ("model", "bicubic"):
        assert set(metrics[method]) == {"psnr", "ssim", "nrmse"}
    assert len(metrics["images"]) == 2  # the smoke validation split
    seconds = metrics["seconds"]  # where the wall time went, for benchmarks
    assert 0 < seconds["data"] < seconds["total"]
    assert 0 < seconds["training"] < seconds["total"]


def test_tensorboard_gets_scalars_and_the_image_panel(smoke_run, read_events):
    train = read_events(smoke_run / "logs" / "train")
    validation = read_events(smoke_run / "logs" / "validation")
    for tag in ("epoch_loss", "epoch_psnr", "epoch_ssim", "epoch_learning_rate"):
        assert train[tag]["steps"] == [0, 1], tag
    for tag in ("epoch_loss", "epoch_psnr", "epoch_ssim"):
        assert validation[tag]["steps"] == [0, 1], tag
    images = read_events(smoke_run / "logs" / "images")
    panel = images["validation/input_prediction_target_error"]
    assert panel["plugin"] == "images" and panel["steps"] == [1, 2]


def test_config_json_repeats_the_run(smoke_run, tmp_path, tfds_dir):
    out = tmp_path / "again"
    code = main(
        [
            "fit",
            "--config",
            str(smoke_run / "config.json"),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--data-dir",
            tfds_dir,
        ]
    )
    assert code == 0
    first = load_config(smoke_run / "config.json").to_dict()
    second = load_config(out / "config.json").to_dict()
    assert second["train"].pop("epochs") == 1
    first["train"].pop("epochs")
    assert first == second


def test_rerunning_a_finished_run_resumes_instead_of_restarting(
    smoke_run, capsys, tfds_dir
):
    assert (
        main(["fit", "--smoke", "--out", str(smoke_run), "--data-dir", tfds_dir]) == 0
    )
    assert "Resuming from the backup of epoch 2" in capsys.readouterr().out


def test_a_different_config_does_not_overwrite_a_run(smoke_run, capsys, tfds_dir):
    code = main(
        [
            "fit",
            "--smoke",
            "--loss-alpha",
            "0.5",
            "--out",
            str(smoke_run),
            "--data-dir",
            tfds_dir,
        ]
    )
    assert code == 2
    assert "train.loss_alpha" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_run_then_same_command_continues_the_epoch_count(
    tmp_path, tfds_dir, console_script, read_events
):
    out = tmp_path / "run"
    command = [
        console_script,
        "fit",
        "--smoke",
        "--epochs",
        "5",
        "--steps-per-epoch",
        "15",
        "--out",
        str(out),
        "--data-dir",
        tfds_dir,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while not (out / "backup" / "epoch-00002").exists():
            assert process.poll() is None, "fit ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(0.1)  # into epoch 3 (a smoke epoch takes a fraction of a second)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = [p.name for p in (out / "backup").iterdir() if p.name.startswith("epoch-")]
    assert done and max(done) < "epoch-00005"  # really killed before the end

    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed_at = int(max(done)[6:])
    assert f"Resuming from the backup of epoch {resumed_at}" in result.stdout
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 5
    steps = read_events(out / "logs" / "train")["epoch_loss"]["steps"]
    assert set(steps) == {0, 1, 2, 3, 4}
    assert steps.count(0) == 1  # epoch 1 was not trained again
    keras.saving.load_model(out / "model.keras", safe_mode=True)
    assert not any(p.name.startswith(".tmp") for p in (out / "backup").iterdir())
    assert os.path.exists(out / "config.json")
