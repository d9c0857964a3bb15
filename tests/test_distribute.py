"""tf.distribute: mirrored over logical CPUs, two workers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import h5py
import numpy as np
import pytest
from keras.src.backend.tensorflow import trainer as tf_trainer

from keras_unet_sr.config import FitConfig, smoke
from keras_unet_sr.data.sources import load_paired_images
from keras_unet_sr.training.multiworker_fixes import multi_worker_fixes


def fit_command(console_script, out, tfds_dir, *extra):
    return [
        console_script,
        "fit",
        "--smoke",
        "--batch",
        "4",
        # float32: exact comparisons across strategies (bfloat16 sums round).
        "--precision",
        "float32",
        "--out",
        str(out),
        "--data-dir",
        tfds_dir,
        *extra,
    ]


def first_loss(read_events, out) -> float:
    import tensorflow as tf

    for path in (out / "logs" / "train").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "epoch_loss" and event.step == 0:
                    return float(tf.make_ndarray(value.tensor))
    raise AssertionError("no epoch_loss at step 0")


def backup_weights(folder) -> list[np.ndarray]:
    (backup,) = sorted(folder.glob("backup/epoch-00002"))
    arrays = []
    with h5py.File(backup / "weights.weights.h5", "r") as store:
        store.visititems(
            lambda name, item: (
                arrays.append(item[()])
                if isinstance(item, h5py.Dataset) and name.startswith("layers")
                else None
            )
        )
    return arrays


@pytest.fixture(scope="module")
def prepared_data(tfds_dir):
    """Generate the smoke data once, before several processes read it."""
    config = smoke(FitConfig())
    config.data.data_dir = tfds_dir
    load_paired_images(config.data)
    return tfds_dir


@pytest.mark.slow
def test_mirrored_first_step_matches_single_device(
    tmp_path, prepared_data, console_script, read_events
):
    """One step of batch 4: on one device, and split 2 + 2 over two replicas."""
    single, mirrored = tmp_path / "single", tmp_path / "mirrored"
    steps = ("--epochs", "1", "--steps-per-epoch", "1")
    for out, extra in (
        (single, steps),
        (mirrored, (*steps, "--strategy", "mirrored", "--cpu-replicas", "2")),
    ):
        result = subprocess.run(
            fit_command(console_script, out, prepared_data, *extra),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert first_loss(read_events, mirrored) == pytest.approx(
        first_loss(read_events, single), rel=1e-4
    )


def test_global_batch_must_split_over_replicas(tmp_path, prepared_data, console_script):
    result = subprocess.run(
        fit_command(
            console_script,
            tmp_path / "run",
            prepared_data,
            "--batch",
            "3",
            "--strategy",
            "mirrored",
            "--cpu-replicas",
            "2",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert (
        "--batch 3: the global batch must be a multiple of the 2 replicas"
        in result.stderr
    )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes_outputs(
    tmp_path, prepared_data, console_script
):
    out = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        processes.append(
            subprocess.Popen(
                fit_command(
                    console_script, out, prepared_data, "--strategy", "multiworker"
                ),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    chief_out, worker_out = results[0][0], results[1][0]
    assert "Validation" in chief_out and worker_out == ""

    worker_dir = out / ".worker-worker-1"
    # The chief writes the run's outputs; the other worker only its own folder.
    for name in ("model.keras", "metrics.json", "config.json", "logs"):
        assert (out / name).exists(), name
    assert not (worker_dir / "metrics.json").exists()
    assert (worker_dir / "backup").is_dir()
    chief, other = backup_weights(out), backup_weights(worker_dir)
    assert len(chief) == len(other) > 0
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_array_equal(a, b)


def test_multi_worker_fixes_are_scoped():
    original = (
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build,
        tf_trainer.reduce_per_replica,
    )
    with multi_worker_fixes():
        assert tf_trainer.reduce_per_replica is not original[1]
        assert tf_trainer.TensorFlowTrainer._maybe_symbolic_build is not original[0]
    assert (
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build,
        tf_trainer.reduce_per_replica,
    ) == original
