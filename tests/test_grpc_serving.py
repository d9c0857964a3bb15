"""gRPC serving: the Python TF-Serving stand-in and the client, end to end.

Real gRPC on loopback and real TensorFlow, no mocks. The served bundle is a
tiny stand-in with our bundles' signatures: "2x super-resolution" is pixel
repetition of `2 * image`, and every `serving_default` call increments a
variable that the no-input `metadata` signature reports, which makes warmup
replay observable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from keras_unet_sr.export import bundle_layout, serving_protocol
from keras_unet_sr.export.grpc_client import ServingClient, ServingError
from keras_unet_sr.export.grpc_server import ServerHandle, start_server

MODEL = "sr"
METADATA = {"scale": 2, "frames": 1, "tile": 256}
WAIT_SECONDS = 30.0
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _upsample(image: tf.Tensor) -> tf.Tensor:
    """2x pixel repetition along the (H, W) axes of (..., H, W, F), any rank."""
    shape = tf.shape(image)
    height, width, features = shape[-3], shape[-2], shape[-1]
    pixels = tf.reshape(image * 2.0, [-1, height, 1, width, 1, features])
    repeated = tf.tile(pixels, [1, 1, 2, 1, 2, 1])
    return tf.reshape(
        repeated, tf.concat([shape[:-3], [2 * height, 2 * width, features]], 0)
    )


def _expected(image: np.ndarray) -> np.ndarray:
    doubled = image.astype(np.float32) * 2
    return np.repeat(np.repeat(doubled, 2, axis=-3), 2, axis=-2)


class _StandIn(tf.Module):
    def __init__(self):
        super().__init__()
        self.calls = tf.Variable(0, dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def serve(self, image):
        self.calls.assign_add(1)
        return {"sr_image": _upsample(image)}

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint16)])
    def serve_uint16(self, image):
        return {"sr_image": _upsample(tf.cast(image, tf.float32))}

    @tf.function(input_signature=[])
    def metadata(self):
        outputs = {key: tf.constant(value) for key, value in METADATA.items()}
        return {**outputs, "calls": self.calls.read_value()}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
    def tile(self, tiles):
        return {"sr_tiles": _upsample(tiles)}


def _request(image: np.ndarray, signature: str = "serving_default", **kwargs):
    key = "tiles" if signature == "tile" else "image"
    return serving_protocol.make_predict_request(
        MODEL, {key: image}, signature_name=signature, **kwargs
    )


def _add_version(base: Path, version: int, template: Path, warmup=()) -> Path:
    """Writes a version the way exporters must: hidden temp dir, then rename."""
    partial = base / f".tmp-{version}"
    shutil.copytree(template, partial)
    if warmup:
        bundle_layout.write_warmup_requests(partial, warmup)
    return partial.rename(base / str(version))


def _small(seed: float) -> np.ndarray:
    return np.full((1, 4, 4, 1), seed, dtype=np.float32)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "saved_model"
    module = _StandIn()
    signatures = {
        "serving_default": module.serve,
        "predict_uint16": module.serve_uint16,
        "metadata": module.metadata,
        "tile": module.tile,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.fixture(scope="module")
def server(template, tmp_path_factory) -> Iterator[ServerHandle]:
    base = tmp_path_factory.mktemp("models") / MODEL
    base.mkdir()
    _add_version(base, 1, template, warmup=[_request(_small(1.0))])
    with start_server(base, port=0, poll_seconds=0.2) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(server) -> Iterator[ServingClient]:
    with ServingClient(server.address, MODEL, timeout=60) as serving_client:
        yield serving_client


@pytest.fixture(scope="module")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as raw_channel:
        yield raw_channel


def _assert_still_serving(client: ServingClient) -> None:
    image = _small(3.0)
    np.testing.assert_array_equal(
        client.predict({"image": image})["sr_image"], _expected(image)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestRoundTrip:
    def test_1024_float32_image_comes_back_2048(self, client):
        image = np.random.default_rng(0).random((1024, 1024, 1), dtype=np.float32)
        output = client.predict({"image": image})["sr_image"]
        assert output.shape == (2048, 2048, 1) and output.dtype == np.float32
        assert output.nbytes > 4 << 20  # over gRPC's default message limit
        np.testing.assert_array_equal(output, _expected(image))
        # Read-only views of the received bytes: no extra copy of big outputs.
        assert not output.flags.writeable

    def test_uint16_signature(self, client):
        image = (np.arange(128, dtype=np.uint16) * 500).reshape(1, 8, 16, 1)
        output = client.predict({"image": image}, signature_name="predict_uint16")
        np.testing.assert_array_equal(output["sr_image"], _expected(image))

    def test_output_filter_and_pinned_version(self, client, server):
        outputs = client.predict(
            {"image": _small(1.0)},
            version=server.served_version,
            output_filter=["sr_image"],
        )
        assert list(outputs) == ["sr_image"]

    def test_response_model_spec(self, channel, server):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = _request(_small(1.0), signature="")
        response = stub.Predict(request, timeout=WAIT_SECONDS)
        assert response.model_spec.name == MODEL
        assert response.model_spec.version.value == server.served_version
        assert response.model_spec.signature_name == "serving_default"

    def test_concurrent_requests(self, client):
        def worker(thread: int) -> list[str]:
            errors = []
            for index in range(25):
                image = _small(thread * 100 + index)
                output = client.predict({"image": image})["sr_image"]
                if not np.array_equal(output, _expected(image)):
                    errors.append(f"thread {thread} request {index}: wrong output")
            return errors

        results: list[list[str]] = [[] for _ in range(8)]

        def run(thread: int) -> None:
            try:
                results[thread] = worker(thread)
            except Exception as error:
                results[thread] = [repr(error)]

        threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [error for errors in results for error in errors] == []


class TestMetadataAndStatus:
    def test_metadata(self, client):
        signatures = client.metadata()
        assert set(signatures) == {
            "serving_default",
            "predict_uint16",
            "metadata",
            "tile",
        }
        assert signatures["serving_default"] == {
            "inputs": {"image": ("float32", None)},
            "outputs": {"sr_image": ("float32", None)},
        }
        assert signatures["predict_uint16"]["inputs"] == {"image": ("uint16", None)}
        assert signatures["tile"]["inputs"] == {
            "tiles": ("float32", (None, None, None, 1))
        }
        assert signatures["metadata"]["inputs"] == {}
        assert signatures["metadata"]["outputs"]["scale"] == ("int32", ())

    def test_metadata_is_a_packed_signature_def_map(self, channel, server):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"]
        )
        request.model_spec.name = MODEL
        response = stub.GetModelMetadata(request, timeout=WAIT_SECONDS)
        assert response.model_spec.name == MODEL
        assert response.model_spec.version.value == server.served_version
        packed = response.metadata["signature_def"]
        assert (
            packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        assert packed.Unpack(signature_defs)
        default = signature_defs.signature_def["serving_default"]
        assert default.method_name == serving_protocol.PREDICT_METHOD
        assert default.inputs["image"].dtype == types_pb2.DT_FLOAT

    @pytest.mark.parametrize("fields", [[], ["signature_def", "nonsense"]])
    def test_metadata_needs_signature_def_field(self, channel, fields):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
        request.model_spec.name = MODEL
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetModelMetadata(request, timeout=WAIT_SECONDS)
        assert raised.value.code() == INVALID

    def test_model_info_calls_the_no_input_signature(self, client):
        info = client.model_info()
        assert {key: info[key] for key in METADATA} == METADATA
        assert all(isinstance(value, int) for value in info.values())

    def test_status(self, client, server):
        expected = [
            {"version": server.served_version, "state": "AVAILABLE", "error": ""}
        ]
        assert client.status() == expected

    def test_status_not_found(self, channel, server):
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        for name, version in [("nope", None), (MODEL, 99)]:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = version
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetModelStatus(request, timeout=WAIT_SECONDS)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    def test_unimplemented_methods(self, channel):
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        calls = [
            (predictions.Classify, classification_pb2.ClassificationRequest()),
            (
                models.HandleReloadConfigRequest,
                model_management_pb2.ReloadConfigRequest(),
            ),
        ]
        for method, request in calls:
            with pytest.raises(grpc.RpcError) as raised:
                method(request, timeout=WAIT_SECONDS)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


class TestBadRequests:
    def test_unknown_model(self, server):
        with (
            ServingClient(server.address, "nope") as other,
            pytest.raises(ServingError) as raised,
        ):
            other.predict({"image": _small(1.0)})
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
        message = str(raised.value)
        assert f"model 'nope' not found on {server.address}" in message
        assert "Latest(nope)" in message

    def test_unknown_version(self, client):
        with pytest.raises(ServingError) as raised:
            client.predict({"image": _small(1.0)}, version=99)
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
        assert f"Specific({MODEL}, 99)" in str(raised.value)
        _assert_still_serving(client)

    def test_version_label(self, channel):
        request = _request(_small(1.0))
        request.model_spec.version_label = "stable"
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=WAIT_SECONDS)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "stable" in raised.value.details()

    @pytest.mark.parametrize(
        ("inputs", "signature", "output_filter", "words"),
        [
            ({"image": _small(1.0)}, "nope", None, ['"nope"', "serving_default, tile"]),
            ({"imag": _small(1.0)}, "serving_default", None, ["{imag}", "{image}"]),
            (
                {"image": _small(1.0).astype(np.float64)},
                None,
                None,
                ["float64", "float32"],
            ),
            ({"tiles": np.zeros((4, 4, 1), np.float32)}, "tile", None, ["(4, 4, 1)"]),
            (
                {"tiles": np.zeros((1, 4, 4, 2), np.float32)},
                "tile",
                None,
                ["(1, 4, 4, 2)"],
            ),
            ({"image": np.zeros((4, 4), np.float32)}, None, None, ["out of bounds"]),
            ({"image": _small(1.0)}, None, ["nope"], ["nope", "{sr_image}"]),
        ],
        ids=[
            "signature",
            "input-key",
            "dtype",
            "rank",
            "static-dim",
            "model-error",
            "output-filter",
        ],
    )
    def test_invalid_argument(self, client, inputs, signature, output_filter, words):
        with pytest.raises(ServingError) as raised:
            client.predict(
                inputs,
                signature_name=signature or "serving_default",
                output_filter=output_filter,
            )
        assert raised.value.code == INVALID
        message = str(raised.value)
        assert "\n" not in message
        assert message.startswith(
            f"request rejected (INVALID_ARGUMENT) by model '{MODEL}'"
        )
        for word in words:
            assert word in message
        _assert_still_serving(client)

    @pytest.mark.parametrize(
        "tensor",
        [
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 10),
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0] * 17),
        ],
        ids=["content-size", "too-many-values"],
    )
    def test_malformed_tensor(self, channel, client, tensor):
        malformed = tensor_pb2.TensorProto()
        malformed.CopyFrom(tensor)
        for size in (1, 4, 4, 1):
            malformed.tensor_shape.dim.add(size=size)
        request = _request(_small(1.0))
        request.inputs["image"].CopyFrom(malformed)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=WAIT_SECONDS)
        assert raised.value.code() == INVALID
        assert "tensor parsing error: image" in raised.value.details()
        _assert_still_serving(client)


class TestServer:
    def test_binds_loopback_by_default(self, server):
        assert server.address == f"127.0.0.1:{server.port}"
        tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
        if not tables[0].exists():
            pytest.skip("no /proc/net/tcp")
        listening = [
            fields[1].split(":")[0]
            for table in tables
            if table.exists()
            for fields in (line.split() for line in table.read_text().splitlines()[1:])
            if fields[3] == "0A" and fields[1].endswith(f":{server.port:04X}")
        ]
        # 127.0.0.1, possibly as an IPv4-mapped IPv6 address; never a wildcard.
        loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
        assert listening and set(listening) <= loopback

    def test_port_in_use_fails(self, server):
        with pytest.raises(OSError, match=f"127.0.0.1:{server.port}"):
            start_server(server.base_dir, port=server.port)

    def test_start_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            start_server(tmp_path / "missing", port=0)
        (tmp_path / ".tmp-1").mkdir()
        with pytest.raises(ValueError, match="no version directories") as raised:
            start_server(tmp_path, port=0)
        assert str(tmp_path) in str(raised.value)
        (tmp_path / "1").mkdir()
        with pytest.raises(ValueError, match="no loadable version") as raised:
            start_server(tmp_path, port=0)
        assert f"{tmp_path}: version 1: " in str(raised.value)

    def test_version_polling(self, template, tmp_path):
        base = tmp_path / MODEL
        base.mkdir()
        _add_version(base, 1, template, warmup=[_request(_small(1.0))] * 2)
        with (
            start_server(base, port=0, poll_seconds=0.05) as handle,
            ServingClient(handle.address, MODEL, timeout=60) as client,
        ):
            self._check_version_lifecycle(base, template, handle, client)

    def _check_version_lifecycle(self, base, template, handle, client):
        assert client.model_info()["calls"] == 2  # both warmup requests replayed

        # Ignored: a half-written hidden version, a config file, a stray folder.
        half_written = base / ".tmp-7"
        half_written.mkdir()
        (half_written / "saved_model.pb").write_bytes(b"\x08")
        bundle_layout.write_models_config(base / "models.config", {MODEL: base})
        (base / "notes").mkdir()

        stop = threading.Event()
        failures: list[str] = []
        hammer = threading.Thread(target=self._hammer, args=(client, stop, failures))
        hammer.start()
        try:
            _add_version(base, 2, template, warmup=[_request(_small(1.0))] * 3)
            handle.wait_for_version(2, WAIT_SECONDS)
        finally:
            stop.set()
            hammer.join()
        assert failures == []
        assert client.status()[:2] == [
            {"version": 2, "state": "AVAILABLE", "error": ""},
            {"version": 1, "state": "END", "error": ""},
        ]
        with pytest.raises(ServingError) as raised:
            client.predict({"image": _small(1.0)}, version=1)
        assert raised.value.code == grpc.StatusCode.NOT_FOUND

        # A version whose warmup fails never serves; version 2 carries on.
        bad_warmup = [_request(_small(1.0).astype(np.float16))]
        _add_version(base, 3, template, warmup=bad_warmup)
        with pytest.raises(RuntimeError, match="warmup request 1 of 1 failed"):
            handle.wait_for_version(3, WAIT_SECONDS)
        version_3 = client.status()[0]
        assert version_3["version"] == 3 and version_3["state"] == "END"
        assert "float16" in version_3["error"]
        assert handle.served_version == 2
        _assert_still_serving(client)
        # Only version 2's own warmup has run on it: 3 calls, then this test's.
        assert client.model_info()["calls"] == 3 + 1

        # The served version disappears: the highest remaining one takes over.
        shutil.rmtree(base / "2")
        handle.wait_for_version(1, WAIT_SECONDS)
        _assert_still_serving(client)
        assert {s["version"] for s in client.status()} == {1, 2, 3}

    @staticmethod
    def _hammer(client, stop, failures):
        # predict_uint16 leaves the call counter alone.
        image = np.ones((1, 4, 4, 1), np.uint16)
        while not stop.is_set():
            try:
                output = client.predict(
                    {"image": image}, signature_name="predict_uint16"
                )
                if not np.array_equal(output["sr_image"], _expected(image)):
                    failures.append("wrong output")
            except Exception as error:
                failures.append(repr(error))

    def test_serve_command_line(self, server, tmp_path, console_script):
        command = [
            console_script,
            "serve",
            str(server.base_dir),
            "--model-name=cli",
            "--port=0",
            "--poll-seconds=0",
        ]
        # Not from the project root, whose datasets/ would shadow HF datasets.
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=tmp_path
        )
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("Serving model 'cli' version 1 from ")
            assert line.endswith(" (gRPC)") and " on 127.0.0.1:" in line
            address = line.split(" on ")[-1].removesuffix(" (gRPC)")
            with ServingClient(address, "cli") as client:
                _assert_still_serving(client)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=WAIT_SECONDS) == 0
        finally:
            process.kill()
            process.wait()


class TestClientErrors:
    def test_unreachable_server(self):
        target = f"127.0.0.1:{_free_port()}"
        with (
            ServingClient(target, MODEL, timeout=5) as client,
            pytest.raises(ServingError) as raised,
        ):
            client.status()
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        message = str(raised.value)
        assert message.startswith(f"cannot reach TF-Serving at {target} (UNAVAILABLE)")
        assert "\n" not in message

    def test_wait_until_available_times_out(self):
        with (
            ServingClient(f"127.0.0.1:{_free_port()}", MODEL) as client,
            pytest.raises(ServingError) as raised,
        ):
            client.wait_until_available(0.5)
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert f"model '{MODEL}' not available" in str(raised.value)

    def test_wait_until_available(self, client, server):
        assert client.wait_until_available(WAIT_SECONDS) == server.served_version


class TestProtocol:
    def test_warmup_file_holds_prediction_logs(self, tmp_path):
        requests = [_request(_small(1.0)), _request(_small(2.0), signature="tile")]
        path = bundle_layout.write_warmup_requests(tmp_path, requests)
        assert path == tmp_path / "assets.extra" / "tf_serving_warmup_requests"
        records = [
            prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))
        ]
        assert [log.predict_log.request for log in records] == requests
        assert bundle_layout.read_warmup_requests(tmp_path) == records

    def test_list_versions_ignores_everything_else(self, tmp_path):
        for name in ("1", "2", "10", ".tmp-3", "007", "abc"):
            (tmp_path / name).mkdir()
        (tmp_path / "5").write_text("a file, not a version")
        bundle_layout.write_models_config(tmp_path / "models.config", {MODEL: "/m"})
        assert bundle_layout.list_versions(tmp_path) == [1, 2, 10]

    def test_models_config(self, tmp_path):
        path = bundle_layout.write_models_config(
            tmp_path / "models.config",
            {MODEL: "/models/sr", "other": Path("/models/o")},
        )
        config = text_format.Parse(
            path.read_text(), model_server_config_pb2.ModelServerConfig()
        )
        entries = [
            (c.name, c.base_path, c.model_platform)
            for c in config.model_config_list.config
        ]
        assert entries == [
            (MODEL, "/models/sr", "tensorflow"),
            ("other", "/models/o", "tensorflow"),
        ]

    @pytest.mark.parametrize(
        "array",
        [
            np.arange(6, dtype=np.float32).reshape(2, 3),
            np.arange(6, dtype=">u2").reshape(3, 2),
            np.array(7, dtype=np.int32),
            np.array([True, False]),
            np.array([b"a", b"bc"], dtype=object),
            np.zeros((0, 3), np.float64),
        ],
        ids=["float32", "big-endian-uint16", "scalar", "bool", "string", "empty"],
    )
    def test_tensor_round_trip(self, array):
        back = serving_protocol.tensor_proto_to_ndarray(
            serving_protocol.ndarray_to_tensor_proto(array)
        )
        np.testing.assert_array_equal(back, array)
        assert back.shape == array.shape

    def test_value_fields_as_the_cpp_server_sends_them(self):
        values = np.arange(6, dtype=np.float32).reshape(2, 3)
        proto = tf.make_tensor_proto(values)
        proto.ClearField("tensor_content")
        proto.float_val.extend(values.ravel())
        np.testing.assert_array_equal(
            serving_protocol.tensor_proto_to_ndarray(proto), values
        )
        filled = tf.make_tensor_proto(5, shape=[2, 2])  # one value: repeated
        np.testing.assert_array_equal(
            serving_protocol.tensor_proto_to_ndarray(filled), np.full((2, 2), 5)
        )


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="tensorflow_model_server is not on PATH",
)
class TestRealTensorFlowServing:
    """The same round trips against the C++ server, with the same client."""

    @pytest.fixture(scope="class")
    def real_client(self, server) -> Iterator[ServingClient]:
        port = _free_port()
        process = subprocess.Popen(
            [
                "tensorflow_model_server",
                f"--port={port}",
                f"--model_name={MODEL}",
                f"--model_base_path={server.base_dir}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            with ServingClient(f"127.0.0.1:{port}", MODEL, timeout=60) as real:
                real.wait_until_available(60)
                yield real
        finally:
            process.terminate()
            process.wait(timeout=WAIT_SECONDS)

    def test_round_trip_1024(self, real_client):
        image = np.random.default_rng(1).random((1024, 1024, 1), dtype=np.float32)
        output = real_client.predict({"image": image})["sr_image"]
        np.testing.assert_array_equal(output, _expected(image))

    def test_uint16(self, real_client):
        image = (np.arange(64, dtype=np.uint16) * 900).reshape(1, 8, 8, 1)
        output = real_client.predict({"image": image}, signature_name="predict_uint16")
        np.testing.assert_array_equal(output["sr_image"], _expected(image))

    def test_metadata_status_and_info(self, real_client, client):
        assert real_client.metadata() == client.metadata()
        assert real_client.status() == [
            {"version": 1, "state": "AVAILABLE", "error": ""}
        ]
        info = real_client.model_info()
        assert {key: info[key] for key in METADATA} == METADATA

    def test_unknown_model(self, real_client):
        with (
            ServingClient(real_client.target, "nope") as other,
            pytest.raises(ServingError) as raised,
        ):
            other.predict({"image": _small(1.0)})
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
