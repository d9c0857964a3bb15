"""Faults: NaN losses, a loaded gRPC server under bad and concurrent
requests, and the security guarantees (loopback, safe mode, no path
escapes)."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
import tifffile
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from keras_unet_sr import SSIML1Loss, SuperResolutionUNet
from keras_unet_sr.cli import main
from keras_unet_sr.export.grpc_client import ServingClient, ServingError
from keras_unet_sr.export.saved_model_bundle import export_bundle
from keras_unet_sr.files.atomic import TEMP_PREFIX
from keras_unet_sr.training import callbacks as cb


def fit_smoke_on_pairs(data: Path, low, high, tfds_dir: str, out: Path, *extra: str):
    """Writes three low/high pairs `a0..a2.tif` into `data`, then runs
    `keras-unet-sr fit --smoke` on them; returns the exit code."""
    (data / "low").mkdir(parents=True)
    (data / "high").mkdir()
    for i in range(3):
        tifffile.imwrite(data / "low" / f"a{i}.tif", low(i))
        tifffile.imwrite(data / "high" / f"a{i}.tif", high(i))
    command = ["fit", "--smoke", "--data", str(data), "--data-dir", tfds_dir]
    return main([*command, *extra, "--out", str(out)])


# --- NaN losses ---


def test_a_nan_loss_stops_training_at_that_step_and_keeps_the_last_good_state(
    tmp_path, rng
):
    """Real Keras training with the run's callbacks; the 6th batch (epoch 2,
    step 3) carries a NaN pixel, as a corrupted acquisition would."""
    model = SuperResolutionUNet(frames=1, scale=1, depth=1, filters=4)
    model.compile(keras.optimizers.Adam(1e-3), loss=SSIML1Loss())
    low = rng.random((9, 4, 16, 16, 1), dtype=np.float32)
    low[5, 0, 3, 3, 0] = np.nan
    data = tf.data.Dataset.from_tensor_slices((low, low))
    best = cb.BestModelCheckpoint(tmp_path / "model.keras")
    backup = cb.TrainingBackup(tmp_path / "backup", [best])
    guard = cb.NaNGuard(steps_per_epoch=3, backup=backup)
    val = tf.data.Dataset.from_tensors((low[0], low[0]))
    model.fit(
        data,
        epochs=3,
        steps_per_epoch=3,
        validation_data=val,
        callbacks=[guard, best, backup],
        shuffle=False,
        verbose=0,
    )
    assert guard.failure == "loss became nan at epoch 2, step 3 (global step 6)"
    assert backup.epochs() == [1]  # the diverged epoch was not backed up
    assert best.best_epoch == 1
    good = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert all(np.all(np.isfinite(w)) for w in good.get_weights())


def test_a_save_killed_midway_leaves_a_temporary_that_the_restart_removes(tmp_path):
    """SIGKILL skips `atomic_path`'s clean-up: the half-written backup stays
    under its temporary name, is never taken for a backup, and goes at the
    restart (the suite's SIGKILL test hits this only when the kill lands
    inside a save)."""
    model = SuperResolutionUNet(frames=1, scale=1, depth=1, filters=4)
    model.compile(keras.optimizers.Adam(1e-3), loss=SSIML1Loss())
    backup = cb.TrainingBackup(tmp_path / "backup", [])
    backup.set_model(model)
    backup.on_epoch_end(0, {"loss": 1.0})
    half = tmp_path / "backup" / f"{TEMP_PREFIX}0123456789ab"
    half.mkdir()
    (half / "weights.weights.h5").write_bytes(b"\x89HDF")  # cut short
    assert backup.epochs() == [1]
    assert backup.restore(model) == 1
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["epoch-00001"]


def test_fit_reports_divergence_in_one_line_and_saves_no_broken_state(
    tmp_path, tfds_dir, capsys
):
    """Float images spanning +-3e38 are finite (so they pass the readers) but
    overflow float32 in normalization: the loss turns NaN in epoch 1."""
    rng = np.random.default_rng(0)
    extremes = [rng.choice([-3e38, 3e38], (32, 32)) for _ in range(3)]
    extremes = [image.astype(np.float32) for image in extremes]
    out = tmp_path / "run"
    code = fit_smoke_on_pairs(
        tmp_path / "extreme", extremes.__getitem__, extremes.__getitem__, tfds_dir, out
    )
    err = capsys.readouterr().err
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert re.search(r"loss became nan at epoch 1, step \d+ \(global step \d+\)", line)
    assert "no model was saved before it" in line
    assert (
        not list((out / "backup").glob("epoch-*"))
        if (out / "backup").exists()
        else True
    )


# --- the gRPC server under load and bad requests ---


@pytest.fixture(scope="module")
def served(tmp_path_factory, console_script):
    base = tmp_path_factory.mktemp("serving") / "tiny"
    model = SuperResolutionUNet(frames=2, scale=2, depth=1, filters=4)
    export_bundle(model, base, warmup_sizes=((32, 32),))
    server = subprocess.Popen(
        [console_script, "serve", str(base), "--port", "0", "--max-message-mb", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = server.stdout.readline()
    match = re.search(r"on (\S+):(\d+) \(gRPC\)", line)
    assert match, line
    yield {
        "host": match.group(1),
        "address": f"{match.group(1)}:{match.group(2)}",
        "pid": server.pid,
        "base": base,
    }
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_serve_binds_loopback_by_default(served):
    assert served["host"] == "127.0.0.1"


def _raw_predict(address: str, request: predict_pb2.PredictRequest):
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30)


def test_malformed_oversized_and_wrong_dtype_requests_get_their_codes(served):
    good = np.ones((16, 16, 2), np.float32)
    client = ServingClient(served["address"], "tiny")
    malformed = predict_pb2.PredictRequest()
    malformed.model_spec.name = "tiny"
    tensor = malformed.inputs["image"]
    tensor.dtype = tf.float32.as_datatype_enum
    for size in (16, 16, 2):
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = b"\x00" * 10  # not 16*16*2 floats
    with pytest.raises(grpc.RpcError) as caught:
        _raw_predict(served["address"], malformed)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ServingError) as caught:  # 3 MiB > the server's 2 MiB
        client.predict({"image": np.ones((512, 768, 2), np.float32)})
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(ServingError) as caught:
        client.predict({"image": good.astype(np.int32)})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.predict({"image": good})["sr_image"].shape == (32, 32, 1)


def test_declared_sizes_are_checked_before_any_work(served):
    """A 60-byte request declaring a gigapixel, and a small image whose x2
    answer is over the 2 MiB limit: RESOURCE_EXHAUSTED at once."""
    huge = predict_pb2.PredictRequest()
    huge.model_spec.name = "tiny"
    tensor = huge.inputs["image"]
    tensor.dtype = tf.float32.as_datatype_enum
    for size in (40000, 40000, 2):
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.append(1.0)  # TF's rule: the last value repeats
    assert huge.ByteSize() < 64
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        _raw_predict(served["address"], huge)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "input of 'image' (shape [40000, 40000, 2])" in caught.value.details()
    client = ServingClient(served["address"], "tiny")
    with pytest.raises(ServingError) as caught:  # 1.3 MB in, 2.6 MB out
        client.predict({"image": np.ones((400, 400, 2), np.float32)})
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "answer of 'image'" in str(caught.value)
    assert time.monotonic() - start < 5
    assert client.predict({"image": np.ones((16, 16, 2), np.float32)})["sr_image"].size


@pytest.mark.slow
def test_eight_clients_by_fifty_requests_with_bad_ones_in_between(served):
    """Nothing dropped, every answer right, and no memory growth."""
    rng = np.random.default_rng(0)
    images = [rng.random((24, 24, 2), dtype=np.float32) * 500 for _ in range(8)]
    local = tf.saved_model.load(str(served["base"] / "1")).signatures["serving_default"]
    expected = [local(image=tf.constant(i))["sr_image"].numpy() for i in images]

    def client_run(index, results):
        client = ServingClient(served["address"], "tiny")
        for _ in range(50):
            out = client.predict({"image": images[index]})["sr_image"]
            results.append(np.allclose(out, expected[index], rtol=1e-5, atol=1e-3))
        client.close()

    def bad_run(stop, codes):
        client = ServingClient(served["address"], "tiny")
        bad = [
            {"image": np.ones((4, 4, 2), np.int32)},
            {"picture": images[0]},
            {"image": np.full((8, 8, 2), np.nan, np.float32)},
        ]
        while not stop.is_set():
            for inputs in bad:
                try:
                    client.predict(inputs)
                except ServingError as error:
                    codes.add(error.code)

    client_run(0, [])  # warm up before measuring memory
    before = rss_bytes(served["pid"])
    results: list[bool] = []
    codes: set = set()
    stop = threading.Event()
    noise = threading.Thread(target=bad_run, args=(stop, codes))
    noise.start()
    threads = [threading.Thread(target=client_run, args=(i, results)) for i in range(8)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    stop.set()
    noise.join(timeout=60)
    assert len(results) == 400 and all(results), (len(results), results.count(False))
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
    growth = rss_bytes(served["pid"]) - before
    assert growth < 64 << 20, f"server RSS grew {growth / 2**20:.0f} MiB"
    assert time.time() - start < 300


# --- security ---


def test_a_model_with_python_code_is_refused_by_safe_mode(tmp_path, capsys):
    inputs = keras.Input((8, 8, 1))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    unsafe.save(tmp_path / "unsafe.keras")
    image = tmp_path / "a.tif"
    tifffile.imwrite(image, np.ones((8, 8), np.float32))
    code = main(
        [
            "predict",
            str(tmp_path / "unsafe.keras"),
            str(image),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "unsafe.keras: not a loadable keras-unet-sr model" in err
    assert "Lambda" in err


def test_request_fields_cannot_reach_other_paths(served):
    for name in ("../tiny", "/etc/passwd", "tiny/../../x"):
        with pytest.raises(ServingError) as caught:
            ServingClient(served["address"], name).predict(
                {"image": np.ones((8, 8, 2), np.float32)}
            )
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.version_label = "../../1"
    with pytest.raises(grpc.RpcError) as caught:
        _raw_predict(served["address"], request)
    assert caught.value.code() in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_config_and_input_names_stay_inside_their_folders(tmp_path, tfds_dir, capsys):
    code = fit_smoke_on_pairs(
        tmp_path / "data",
        lambda i: np.ones((16, 16), np.uint16),
        lambda i: np.ones((16, 16), np.float32),
        tfds_dir,
        tmp_path / "r",
        "--validation-names",
        "../../etc/passwd",
    )
    assert code == 2
    assert "../../etc/passwd: no image of that name" in capsys.readouterr().err

    model = SuperResolutionUNet(frames=1, scale=1, depth=1, filters=4)
    model.save(tmp_path / "m.keras")
    nested = tmp_path / "deep" / "er"
    nested.mkdir(parents=True)
    tifffile.imwrite(nested / "x.tif", np.ones((16, 16), np.uint16))
    out = tmp_path / "out"
    relative = str(Path("deep") / "er" / ".." / "er" / "x.tif")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["predict", "m.keras", relative, "--out", str(out)]) == 0
    finally:
        os.chdir(cwd)
    assert [p.name for p in out.iterdir()] == ["x.tif"]  # inside --out, nowhere else


def _mount_tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A real small file system (tmpfs), where the machine lets us mount."""
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture()
def small_disk(tmp_path):
    yield from _mount_tmpfs(tmp_path / "small_disk", "size=256k")


@pytest.fixture()
def read_only_disk(tmp_path):
    yield from _mount_tmpfs(tmp_path / "read_only", "ro,size=64k")


def test_a_read_only_data_dir_is_one_line(read_only_disk, tmp_path, tfds_dir, capsys):
    folder = tmp_path / "data"
    for side in ("low", "high"):
        (folder / side).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        tifffile.imwrite(folder / "low" / f"a{i}.tif", rng.random((2, 16, 16)))
        tifffile.imwrite(folder / "high" / f"a{i}.tif", rng.random((16, 16)))
    data_dir = read_only_disk / "tfds"
    command = ["fit", "--smoke", "--data", str(folder), "--data-dir", str(data_dir)]
    assert main([*command, "--out", str(tmp_path / "run")]) == 2
    assert f"{data_dir}: cannot be written: read-only" in capsys.readouterr().err


@pytest.fixture()
def tiny_disk(tmp_path):
    yield from _mount_tmpfs(tmp_path / "tiny_disk", "size=200k")


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["small_disk", "tiny_disk"])  # fills at two places
def test_a_full_disk_during_fit_is_one_line_naming_the_file(
    disk, request, tmp_path, tfds_dir, rng, capsys
):
    small_disk = request.getfixturevalue(disk)
    code = fit_smoke_on_pairs(
        tmp_path / "data",
        lambda i: rng.integers(100, 900, (9, 24, 24)).astype(np.uint16),
        lambda i: rng.random((48, 48)).astype(np.float32),
        tfds_dir,
        small_disk / "run",
    )
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert str(small_disk / "run") in lines[0]
    assert "cannot be written: no space left on the disk" in lines[0]
    assert "Traceback" not in err
    assert not list((small_disk / "run").rglob(".tmp-*"))  # no half-written file


def test_a_disk_filling_up_during_predict_names_each_file_and_keeps_the_rest(
    small_disk, tmp_path, capsys
):
    model = SuperResolutionUNet(frames=1, scale=2, depth=1, filters=4)
    model.save(tmp_path / "m.keras")
    (tmp_path / "in").mkdir()
    for i in range(6):  # 64 KiB of output each: the 256 KiB disk takes 3
        tifffile.imwrite(tmp_path / "in" / f"im{i}.tif", np.ones((64, 64), np.float32))
    out = small_disk / "out"
    code = main(
        ["predict", str(tmp_path / "m.keras"), str(tmp_path / "in"), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2
    listed = err.split("input(s) failed:")[-1].splitlines()  # the end's list
    failed = [line for line in listed if "cannot be written: no space left" in line]
    written = sorted(p.name for p in out.glob("*.tif"))
    assert failed and written and len(failed) + len(written) == 6, err
    for name in written:  # complete files, never half-written ones
        assert tifffile.imread(out / name).shape == (128, 128)
    assert not list(out.glob(".tmp-*"))
