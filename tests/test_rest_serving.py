"""TF-Serving's REST API: real aiohttp server, real HTTP on loopback, real
TensorFlow, the same bundle answered over gRPC and REST."""

from __future__ import annotations

import re
import signal
import subprocess
import threading

import numpy as np
import orjson
import pytest
import requests
import tensorflow as tf
import tifffile

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.export.grpc_client import ServingClient
from keras_unet_sr.export.grpc_server import start_server
from keras_unet_sr.export.rest_client import RestClient, RestError
from keras_unet_sr.export.saved_model_bundle import export_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    base = tmp_path_factory.mktemp("rest") / "tiny"
    model = SuperResolutionUNet(frames=2, scale=2, depth=1, filters=4)
    head = model.get_layer("head").kernel  # zero at init: make it matter
    head.assign(tf.random.normal(head.shape, stddev=0.1, seed=1))
    export_bundle(model, base, warmup_sizes=((32, 32),))
    return base


@pytest.fixture(scope="module")
def server(bundle):
    handle = start_server(
        bundle, port=0, rest_port=0, poll_seconds=0, max_message_bytes=4 << 20
    )
    yield handle
    handle.stop()


def post(server, path, body, **kwargs):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return requests.post(f"{server.rest_url}/v1/models/{path}", data=data, timeout=60)


def test_rest_predict_equals_grpc_predict(server, rng):
    image = (rng.random((300, 200, 2)) * 1000).astype(np.float32)
    grpc_out = ServingClient(server.address, "tiny").predict({"image": image})
    rest_out = RestClient(server.rest_url, "tiny").predict({"image": image})
    assert rest_out["sr_image"].shape == (600, 400, 1)
    np.testing.assert_allclose(rest_out["sr_image"], grpc_out["sr_image"], atol=1e-5)
    raw = (rng.random((40, 24, 2)) * 4000).astype(np.uint16)
    grpc_u16 = ServingClient(server.address, "tiny").predict(
        {"image": raw}, signature_name="predict_uint16"
    )
    rest_u16 = RestClient(server.rest_url, "tiny").predict(
        {"image": raw}, signature_name="predict_uint16"
    )
    np.testing.assert_allclose(rest_u16["sr_image"], grpc_u16["sr_image"], atol=1e-5)


def test_row_format_stacks_instances_and_answers_predictions(server, rng):
    images = (rng.random((2, 16, 16, 2)) * 100).astype(np.float32)
    answer = post(server, "tiny:predict", {"instances": images.tolist()})
    assert answer.status_code == 200, answer.text
    predictions = np.asarray(answer.json()["predictions"], np.float32)
    columnar = post(server, "tiny/versions/1:predict", {"inputs": images.tolist()})
    expected = np.asarray(columnar.json()["outputs"], np.float32)
    assert predictions.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(predictions, expected, atol=1e-6)
    named = post(server, "tiny:predict", {"instances": [{"image": images[0].tolist()}]})
    np.testing.assert_allclose(named.json()["predictions"][0], expected[0], atol=1e-6)


def test_status_and_metadata_have_tf_servings_json_shape(server):
    status = requests.get(f"{server.rest_url}/v1/models/tiny", timeout=30).json()
    assert status == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    one = requests.get(f"{server.rest_url}/v1/models/tiny/versions/1", timeout=30)
    assert one.json() == status
    meta = requests.get(f"{server.rest_url}/v1/models/tiny/metadata", timeout=30).json()
    assert meta["model_spec"] == {"name": "tiny", "version": "1"}
    default = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert set(default["outputs"]) == {"sr_image"}


BAD_REQUESTS = [
    ("tiny:predict", b"{not json", 400, "JSON Parse error"),
    ("tiny:predict", {"instance": [1]}, 400, "Missing 'inputs' or 'instances'"),
    ("tiny:predict", {"inputs": [1], "instances": [1]}, 400, "Not both"),
    ("tiny:predict", {"inputs": [[1, 2], [3]]}, 400, "not a rectangular array"),
    ("tiny:predict", {"inputs": [[["a", "b"]]]}, 400, "expects float32"),
    ("tiny:predict", {"inputs": np.ones((8, 8, 3)).tolist()}, 400, ""),
    ("tiny:predict", {"inputs": {"picture": [[1.0]]}}, 400, "sent extra"),
    ("tiny:predict", {"signature_name": "nope", "inputs": [[1.0]]}, 400, "nope"),
    (
        "tiny:predict",
        {"signature_name": "predict_uint16", "inputs": [[[70000, 1]]]},
        400,
        "outside the uint16 range",
    ),
    ("other:predict", {"inputs": [[[1.0, 2.0]]]}, 404, "Servable not found"),
    ("tiny/versions/7:predict", {"inputs": [[[1.0, 2.0]]]}, 404, "Servable not found"),
    ("tiny:classify", {"examples": []}, 501, "not supported"),
    ("tiny:explode", {}, 400, "Malformed request"),
]


@pytest.mark.parametrize(("path", "body", "code", "message"), BAD_REQUESTS)
def test_bad_requests_get_tf_servings_http_codes(server, path, body, code, message):
    answer = post(server, path, body)
    assert answer.status_code == code, answer.text
    assert message in answer.json()["error"]


def test_unknown_model_status_and_oversized_bodies(server):
    missing = requests.get(f"{server.rest_url}/v1/models/other", timeout=30)
    assert missing.status_code == 404
    assert "Could not find any versions of model other" in missing.json()["error"]
    big = np.ones((700, 700, 2), np.float32)  # ~5 MB of JSON > the 4 MiB limit
    answer = post(server, "tiny:predict", {"inputs": big.tolist()})
    assert answer.status_code == 413
    assert "larger than" in answer.json()["error"]
    with pytest.raises(RestError) as caught:  # fits, but its x2 answer does not
        RestClient(server.rest_url, "tiny").predict({"image": np.ones((600, 600, 2))})
    assert caught.value.status == 429
    assert requests.get(f"{server.rest_url}/v1/models/tiny", timeout=30).ok


def test_eight_clients_by_twenty_requests_with_bad_ones_in_between(server, rng):
    images = [(rng.random((24, 24, 2)) * 500).astype(np.float32) for _ in range(8)]
    grpc_client = ServingClient(server.address, "tiny")
    expected = [grpc_client.predict({"image": i})["sr_image"] for i in images]
    results: list[bool] = []
    bad_codes: list[int] = []

    def run(index):
        client = RestClient(server.rest_url, "tiny")
        for step in range(20):
            if step % 5 == 4:  # a bad one in between
                bad_codes.append(post(server, "tiny:predict", b"[").status_code)
                continue
            out = client.predict({"image": images[index]})["sr_image"]
            results.append(bool(np.allclose(out, expected[index], atol=1e-5)))
        client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert results == [True] * 8 * 16
    assert bad_codes == [400] * 8 * 4


@pytest.mark.slow
def test_serve_rest_port_and_predict_over_http(bundle, tmp_path, console_script, rng):
    server = subprocess.Popen(
        [console_script, "serve", str(bundle), "--port", "0", "--rest-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"on (\S+):(\d+) \(gRPC\) and (http://\S+) \(REST\)", line)
        assert match, line
        grpc_address, url = f"{match.group(1)}:{match.group(2)}", match.group(3)
        assert url.startswith("http://127.0.0.1:")
        image = (rng.random((48, 40, 2)) * 3000).astype(np.uint16)
        (tmp_path / "in").mkdir()
        tifffile.imwrite(tmp_path / "in" / "cell.tif", np.moveaxis(image, -1, 0))
        outputs = {}
        predict = [console_script, "predict", str(bundle), str(tmp_path / "in")]
        for kind, address in (("rest", url), ("grpc", grpc_address)):
            done = subprocess.run(
                [*predict, "--out", str(tmp_path / kind), "--server", address],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            assert ("(REST)" in done.stdout) == (kind == "rest"), done.stdout
            outputs[kind] = tifffile.imread(tmp_path / kind / "cell.tif")
        np.testing.assert_allclose(outputs["rest"], outputs["grpc"], atol=1e-5)
        gone = subprocess.run(
            [*predict, "--out", str(tmp_path / "x"), "--server", "http://127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert gone.returncode == 2
        assert "cannot reach TF-Serving REST at http://127.0.0.1:9" in gone.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.parametrize("api", ["grpc", "rest"])
def test_a_server_gone_mid_folder_names_each_file(bundle, tmp_path, rng, api):
    from keras_unet_sr.export.grpc_client import ServerBackend
    from keras_unet_sr.export.rest_client import RestBackend
    from keras_unet_sr.inference.file_prediction import predict_files

    handle = start_server(bundle, port=0, rest_port=0, poll_seconds=0)
    backend = (
        ServerBackend(handle.address, "tiny")
        if api == "grpc"
        else RestBackend(handle.rest_url, "tiny")
    )
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        image = (rng.random((2, 16, 16)) * 100).astype(np.float32)
        tifffile.imwrite(tmp_path / "in" / f"{name}.tif", image)
    first = predict_files(backend, [str(tmp_path / "in" / "a.tif")], tmp_path / "out")
    assert len(first.written) == 1 and not first.failed
    handle.stop()
    report = predict_files(backend, [str(tmp_path / "in")], tmp_path / "out2")
    assert report.written == []
    assert [line.split(": ")[0] for line in report.failed] == [
        str(tmp_path / "in" / "a.tif"),
        str(tmp_path / "in" / "b.tif"),
    ]
    assert all("cannot reach TF-Serving" in line for line in report.failed)
