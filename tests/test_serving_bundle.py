"""TF-Serving bundles: signatures, equivalence with local prediction, the TF1
session path, warmup records, atomic versions, and a full gRPC round trip."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tifffile
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.export import bundle_layout
from keras_unet_sr.export.grpc_client import ServingClient, ServingError
from keras_unet_sr.export.grpc_server import start_server
from keras_unet_sr.export.saved_model_bundle import export_bundle
from keras_unet_sr.inference.predictor import Predictor

SIGNATURES = {"serving_default", "predict_uint16", "tiles", "metadata"}


def sim3_model() -> SuperResolutionUNet:
    """A tiny x2 model reading frames 0, 5, 10 of a 15-frame stack, with
    a test-time average in its graphs (the half turn: two model calls)."""
    model = SuperResolutionUNet(
        frames=3,
        scale=2,
        depth=2,
        filters=4,
        frame_subset=(0, 5, 10),
        test_time_transforms="half-turn",
    )
    head = model.get_layer("head").kernel
    head.assign(tf.random.normal(head.shape, stddev=0.1, seed=3))
    return model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    model = sim3_model()
    model_path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(model_path)
    base = tmp_path_factory.mktemp("serving") / "sim3"
    version = export_bundle(model, base, tile=128, warmup_sizes=((96, 80),))
    return {"model": model, "model_path": model_path, "base": base, "version": version}


def camera_image(rng, height, width, frames=15):
    return (100 + rng.gamma(2.0, 50.0, (height, width, frames))).astype(np.uint16)


def test_bundle_layout_and_models_config(bundle):
    version = bundle["version"]
    assert version.name == "1"
    for name in (
        "saved_model.pb",
        "variables",
        "assets.extra/tf_serving_warmup_requests",
    ):
        assert (version / name).exists(), name
    config = text_format.Parse(
        (bundle["base"] / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    (entry,) = config.model_config_list.config
    assert entry.name == "sim3" and entry.base_path == str(bundle["base"])
    assert entry.model_platform == "tensorflow"


def test_saved_model_cli_lists_predict_signatures(bundle):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--dir", str(bundle["version"]), "--all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listed = set(re.findall(r"signature_def\['(\w+)'\]", result.stdout))
    assert listed >= SIGNATURES
    methods = re.findall(r"Method name is: (\S+)", result.stdout)
    assert methods and set(methods) == {"tensorflow/serving/predict"}


def test_serving_default_equals_local_predict(bundle, rng):
    loaded = tf.saved_model.load(str(bundle["version"]))
    local = Predictor(bundle["model"], tile=128)
    stack = camera_image(rng, 150, 170)
    expected = local(stack.astype(np.float32))
    serve = loaded.signatures["serving_default"]
    got = serve(image=tf.constant(stack.astype(np.float32)))["sr_image"].numpy()
    np.testing.assert_allclose(
        got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
    )
    as_uint16 = loaded.signatures["predict_uint16"](image=tf.constant(stack))[
        "sr_image"
    ]
    np.testing.assert_allclose(as_uint16.numpy(), got, rtol=1e-6)
    batch = serve(image=tf.constant(np.stack([stack, stack]).astype(np.float32)))[
        "sr_image"
    ]
    assert batch.shape == (2, 300, 340, 1)
    np.testing.assert_allclose(batch[1].numpy(), got, rtol=1e-5, atol=1e-3)
    metadata = {k: v.numpy() for k, v in loaded.signatures["metadata"]().items()}
    assert metadata["scale"] == 2 and metadata["frames"] == 3
    assert list(metadata["frame_subset"]) == [0, 5, 10] and metadata["tile"] == 128
    assert metadata["test_time_transforms"] == b"half-turn"


def test_tf1_session_path_by_signature_tensor_names(bundle, rng):
    """How TF-Serving's C++ SavedModelBundle runs it: a Session fed by name."""
    stack = camera_image(rng, 64, 48).astype(np.float32)
    expected = Predictor(bundle["model"], tile=128)(stack)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], str(bundle["version"])
        )
        signature = meta.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        got = session.run(
            signature.outputs["sr_image"].name,
            {signature.inputs["image"].name: stack},
        )
    np.testing.assert_allclose(
        got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
    )


def test_warmup_file_parses_as_prediction_logs(bundle):
    records = list(
        tf.data.TFRecordDataset(
            str(bundle["version"] / "assets.extra" / "tf_serving_warmup_requests")
        ).as_numpy_iterator()
    )
    from tensorflow_serving.apis import prediction_log_pb2

    logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
    assert logs and all(log.HasField("predict_log") for log in logs)
    signatures = {log.predict_log.request.model_spec.signature_name for log in logs}
    assert signatures == {"serving_default", "predict_uint16"}
    shapes = {
        tuple(d.size for d in log.predict_log.request.inputs["image"].tensor_shape.dim)
        for log in logs
    }
    assert shapes == {(96, 80, 11)}  # the requested size, the frames the model reads


def test_export_never_overwrites_a_version(bundle):
    from keras_unet_sr.errors import UserError

    with pytest.raises(UserError, match="already exists"):
        export_bundle(bundle["model"], bundle["base"], version=1)


@pytest.mark.slow
def test_killed_export_leaves_no_visible_version(tmp_path, console_script, bundle):
    base = tmp_path / "base"
    command = [
        console_script,
        "export",
        str(bundle["model_path"]),
        "--out",
        str(base),
        "--warmup-sizes",
        "512x512",
    ]
    for delay in (0.0, 0.3, 0.8):
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while not any(p.name.startswith(".tmp-") for p in base.glob(".*")):
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.01)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert bundle_layout.list_versions(base) == []
    # A later export still works and picks version 1.
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    assert bundle_layout.list_versions(base) == [1]


@pytest.fixture(scope="module")
def server(bundle):
    handle = start_server(bundle["base"], port=0, poll_seconds=0.2)
    yield handle
    handle.stop()


def test_bad_requests_are_invalid_argument_and_the_server_keeps_answering(server, rng):
    client = ServingClient(server.address, "sim3")
    good = camera_image(rng, 40, 40).astype(np.float32)
    bad_requests = [
        ({"image": good}, "no_such_signature"),
        ({"picture": good}, "serving_default"),
        ({"image": good.astype(np.int32)}, "serving_default"),
        ({"image": good[None, None]}, "serving_default"),  # rank 5
        ({"image": np.full((8, 8, 15), np.nan, np.float32)}, "serving_default"),
        ({"image": good[..., :7]}, "serving_default"),  # wrong frame count
    ]
    for inputs, signature in bad_requests:
        with pytest.raises(ServingError) as caught:
            client.predict(inputs, signature_name=signature)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT, inputs.keys()
        assert client.predict({"image": good})["sr_image"].shape == (80, 80, 1)
    with pytest.raises(ServingError) as caught:
        ServingClient(server.address, "other").predict({"image": good})
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.slow
def test_export_serve_predict_server_round_trip_on_1024(
    tmp_path, bundle, console_script, rng
):
    """`keras-unet-sr serve` in its own process, `predict --server` against it."""
    stack = camera_image(rng, 1024, 1024)
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "cell.tif", np.moveaxis(stack, -1, 0))  # (frames, H, W)
    server = subprocess.Popen(
        [console_script, "serve", str(bundle["base"]), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"on (127\.0\.0\.1:\d+) \(gRPC\)", line)
        assert match, line
        remote = subprocess.run(
            [
                console_script,
                "predict",
                "sim3",
                str(inputs),
                "--out",
                str(tmp_path / "remote"),
                "--server",
                match.group(1),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert remote.returncode == 0, remote.stderr[-2000:]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    local = subprocess.run(
        [
            console_script,
            "predict",
            str(bundle["model_path"]),
            str(inputs / "cell.tif"),
            "--out",
            str(tmp_path / "local"),
            "--tile",
            "128",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr[-2000:]
    got = tifffile.imread(tmp_path / "remote" / "cell.tif")
    expected = tifffile.imread(tmp_path / "local" / "cell.tif")
    assert got.shape == (2048, 2048) and got.dtype == np.float32
    np.testing.assert_allclose(
        got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
    )


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="the C++ tensorflow_model_server is not installed (pip cannot install it)",
)
def test_real_tensorflow_model_server_serves_the_bundle(bundle, rng, tmp_path):
    port = 8600 + os.getpid() % 1000
    process = subprocess.Popen(
        [
            "tensorflow_model_server",
            f"--port={port}",
            f"--model_config_file={bundle['base'] / 'models.config'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = ServingClient(f"127.0.0.1:{port}", "sim3")
        client.wait_until_available(timeout=120)
        stack = camera_image(rng, 70, 90).astype(np.float32)
        got = client.predict({"image": stack})["sr_image"]
        expected = Predictor(bundle["model"], tile=128)(stack)
        np.testing.assert_allclose(
            got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
        )
    finally:
        process.terminate()
        process.wait()


def test_the_tiles_signature_averages_and_export_can_override(bundle, tmp_path, rng):
    from keras_unet_sr.inference.transforms import averaged_prediction

    model = bundle["model"]
    loaded = tf.saved_model.load(str(bundle["version"]))
    tiles = tf.constant(rng.random((2, 32, 48, 3)).astype(np.float32))
    got = loaded.signatures["tiles"](tiles=tiles)["sr_tiles"].numpy()
    averaged = averaged_prediction(model, tiles, "half-turn").numpy()
    np.testing.assert_allclose(got, averaged, rtol=1e-5, atol=1e-5)
    plain = model(tiles).numpy()
    assert np.abs(averaged - plain).max() > 1e-3  # the average is not the model

    version = export_bundle(
        model, tmp_path / "plain", test_time_transforms="none", warmup_sizes=()
    )
    loaded = tf.saved_model.load(str(version))
    metadata = {k: v.numpy() for k, v in loaded.signatures["metadata"]().items()}
    assert metadata["test_time_transforms"] == b"none"
    info = json.loads(
        (version / "assets.extra" / bundle_layout.METADATA_FILE).read_text()
    )
    assert info["model_config"]["test_time_transforms"] == "none"
    stack = camera_image(rng, 40, 36).astype(np.float32)
    served = loaded.signatures["serving_default"](image=tf.constant(stack))
    expected = Predictor(model, test_time_transforms="none")(stack)
    np.testing.assert_allclose(
        served["sr_image"].numpy(), expected, rtol=1e-5, atol=1e-4
    )
