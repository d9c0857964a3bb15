"""TensorFlow Serving's REST API, over the same model as the gRPC server.

The paths, JSON shapes and HTTP codes of `tensorflow_model_server
--rest_api_port` (see `tensorflow_serving/model_servers/http_rest_api_handler`
and `util/json_tensor`):

* `GET /v1/models/NAME[/versions/V]`: GetModelStatus as proto JSON.
* `GET /v1/models/NAME[/versions/V]/metadata`: the model spec and its
  SignatureDefMap as proto JSON.
* `POST /v1/models/NAME[/versions/V]:predict` with `{"signature_name"?,
  "instances": [...]}` (row format: one entry per example, stacked on a new
  first axis; answered `{"predictions": [...]}`) or `{"inputs": ...}`
  (columnar: the tensor itself, or an object keyed by input name; answered
  `{"outputs": ...}`).
* Failures: `{"error": message}` with TF-Serving's HTTP code for the gRPC
  status (INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, ...).

Requests go through the gRPC server's own checks (`servable.run_predict`),
so both APIs answer a request the same way. It runs on aiohttp in a thread of
its own; bodies are parsed with orjson (linear, ~10x faster than `json` on a
100 MB image) in worker threads, so the event loop keeps answering. A body
larger than the message limit is refused (413) before it is read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import orjson
from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from keras_unet_sr.export import serving_protocol
from keras_unet_sr.export.model_manager import ModelManager
from keras_unet_sr.export.servable import (
    SIGNATURE_DEF_FIELD,
    RequestError,
    find_signature,
    run_predict,
)

logger = logging.getLogger(__name__)

# TF-Serving's ToHTTPStatusCode (model_servers/http_server.cc).
HTTP_CODES = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_NAME = r"{name:[^/:]+}"
_VERSION = r"{version:\d+}"


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _model_spec(spec: Any, request: web.Request) -> None:
    spec.name = request.match_info["name"]
    if "version" in request.match_info:
        spec.version.value = int(request.match_info["version"])


def _proto_json(message: Any) -> bytes:
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    ).encode()


def _array(value: Any, dtype: np.dtype, key: str) -> np.ndarray:
    """A JSON value as an array of the signature's dtype; no silent casts."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged lists
        raise _invalid(f"input '{key}' is not a rectangular array: {error}") from None
    if array.dtype.kind not in "iuf" or (
        array.dtype.kind == "f" and dtype.kind in "iu"
    ):
        raise _invalid(
            f"input '{key}' holds {array.dtype.name} values but the signature "
            f"expects {dtype.name}"
        )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise _invalid(
                f"input '{key}' has values outside the {dtype.name} range "
                f"[{info.min}, {info.max}]"
            )
    return array.astype(dtype, copy=False)


def _inputs(body: dict, specs: dict) -> tuple[dict[str, np.ndarray], bool]:
    """Decode `instances` (row format) or `inputs` (columnar)."""
    if ("instances" in body) == ("inputs" in body):
        raise _invalid(
            "Missing 'inputs' or 'instances' key"
            if "instances" not in body
            else "Not both 'inputs' and 'instances' may be given"
        )
    keys = sorted(specs)
    dtypes = {key: np.dtype(spec.dtype.as_numpy_dtype) for key, spec in specs.items()}
    if "inputs" in body:
        value = body["inputs"]
        if len(keys) == 1 and not isinstance(value, dict):
            value = {keys[0]: value}
        if not isinstance(value, dict):
            raise _invalid(f"'inputs' must name the inputs {keys}")
        return {
            k: _array(v, dtypes.get(k, np.dtype(np.float32)), k)
            for k, v in value.items()
        }, False
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise _invalid("'instances' must be a non-empty list")
    named = all(isinstance(i, dict) for i in instances)
    if len(keys) == 1 and not named:
        return {keys[0]: _array(instances, dtypes[keys[0]], keys[0])}, True
    if not named:
        raise _invalid(f"each instance must be an object naming the inputs {keys}")
    columns = {key: [instance.get(key) for instance in instances] for key in keys}
    return {k: _array(v, dtypes[k], k) for k, v in columns.items()}, True


def _jsonable(value: np.ndarray) -> Any:
    """Numbers stay arrays (orjson writes them directly); strings are decoded;
    scalars become Python values (orjson writes no 0-d arrays)."""
    if value.ndim == 0:
        item = value.item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else item
    if value.dtype.kind not in "OSU":
        return value
    decode = np.vectorize(
        lambda item: (
            item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        ),
        otypes=[object],
    )
    return decode(value).tolist() if value.size else value.tolist()


def _outputs(outputs: dict[str, np.ndarray], rows: int | None) -> dict:
    """TF-Serving's `predictions` (per instance) or `outputs` (columnar)."""
    values = {key: _jsonable(value) for key, value in outputs.items()}
    if rows is None:
        if len(values) == 1:
            return {"outputs": next(iter(values.values()))}
        return {"outputs": values}
    for key, value in values.items():
        if np.ndim(value) == 0 or len(value) != rows:
            raise _invalid(
                f"output '{key}' has shape {list(value.shape)}, not one entry per "
                f"each of the {rows} instances (send the image as 'inputs')"
            )
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{k: v[i] for k, v in values.items()} for i in range(rows)]}


class RestApi:
    """The request handlers, over one `ModelManager`.

    Args:
        manager: The served model (shared with the gRPC server).
        max_message_bytes: Largest request body, and largest response
            tensor data (as the gRPC limit: an x2 output is 4x the input).
        max_workers: Threads that parse and run requests concurrently.
    """

    def __init__(self, manager: ModelManager, max_message_bytes: int, max_workers: int):
        self.manager = manager
        self.max_message_bytes = max_message_bytes
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="tf-serving-rest"
        )

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_message_bytes)
        base = f"/v1/models/{_NAME}"
        versioned = f"{base}/versions/{_VERSION}"
        for path in (base, versioned):
            app.router.add_get(path, self._status)
            app.router.add_get(f"{path}/metadata", self._metadata)
            app.router.add_post(path + r":{method:[A-Za-z]+}", self._predict)
        app.router.add_route("*", r"/v1/{tail:.*}", self._malformed)
        return app

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _answer(self, work: Callable[[], dict | bytes]) -> web.Response:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, work)
        except RequestError as error:
            return _error(error.code, error.message)
        except Exception as error:
            logger.exception("REST request failed")
            detail = serving_protocol.first_line(str(error))
            return _error(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {detail}")
        if isinstance(result, dict):
            result = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        return web.Response(body=result, content_type="application/json")

    async def _status(self, request: web.Request) -> web.Response:
        query = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(query.model_spec, request)
        return await self._answer(lambda: _proto_json(self.manager.status(query)))

    async def _metadata(self, request: web.Request) -> web.Response:
        query = get_model_metadata_pb2.GetModelMetadataRequest()
        _model_spec(query.model_spec, request)
        query.metadata_field.append(SIGNATURE_DEF_FIELD)

        def work() -> dict:
            response = self.manager.metadata(query)
            signature_defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
            return {
                "model_spec": json_format.MessageToDict(
                    response.model_spec, preserving_proto_field_name=True
                ),
                "metadata": {
                    SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                        signature_defs, preserving_proto_field_name=True
                    )
                },
            }

        return await self._answer(work)

    async def _predict(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        if method in ("classify", "regress"):
            return _error(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method.capitalize()} is not supported; use predict",
            )
        if method != "predict":
            return await self._malformed(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large(request.content_length, self.max_message_bytes)
        query = predict_pb2.PredictRequest()
        _model_spec(query.model_spec, request)
        return await self._answer(lambda: self._run(query, body))

    def _run(self, query: predict_pb2.PredictRequest, body: bytes) -> dict:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise _invalid(f"JSON Parse error: {error}") from None
        if not isinstance(parsed, dict):
            raise _invalid("the request body must be a JSON object")
        servable = self.manager.resolve(query.model_spec)
        name = parsed.get("signature_name") or serving_protocol.DEFAULT_SIGNATURE
        if not isinstance(name, str):
            raise _invalid("'signature_name' must be a string")
        query.model_spec.signature_name = name
        inputs, row_format = _inputs(parsed, find_signature(servable, name).inputs)
        del parsed  # the nested lists are several times the array's size
        for key, array in inputs.items():
            serving_protocol.fill_tensor_proto(query.inputs[key], array)
        response = run_predict(servable, query, self.max_message_bytes)
        outputs = {
            key: serving_protocol.tensor_proto_to_ndarray(proto)
            for key, proto in response.outputs.items()
        }
        size = sum(value.nbytes for value in outputs.values())
        if size > self.max_message_bytes:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"response of {size} bytes is larger than the limit of "
                f"{self.max_message_bytes}",
            )
        rows = next(iter(inputs.values())).shape[0] if row_format else None
        return _outputs(outputs, rows)

    async def _malformed(self, request: web.Request) -> web.Response:
        return _error(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Malformed request: {request.method} {request.path}",
        )


def _error(code: grpc.StatusCode, message: str) -> web.Response:
    return web.Response(
        status=HTTP_CODES.get(code, 500),
        body=orjson.dumps({"error": message}),
        content_type="application/json",
    )


def _too_large(declared: int | None, limit: int) -> web.Response:
    size = "" if declared is None else f" of {declared} bytes"
    return web.Response(
        status=413,
        body=orjson.dumps({"error": f"request body{size} is larger than {limit}"}),
        content_type="application/json",
    )


class RestServer:
    """A running REST endpoint; `stop()` ends it.

    Attributes:
        port: The bound port (the chosen one when 0 was asked for).
    """

    def __init__(self, api: RestApi, host: str, port: int):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.bind((host, port))  # OSError here, in the caller
        except OSError as error:
            self._socket.close()
            raise OSError(
                f"cannot bind REST server to {host}:{port}: {error}"
            ) from None
        self._socket.listen(128)
        self.port = self._socket.getsockname()[1]
        self._api = api
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(api.application(), access_log=None)
        ready = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="tf-serving-rest", daemon=True
        )
        self._thread.start()
        ready.result(timeout=30)

    def _run(self, ready: concurrent.futures.Future) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, self._socket)
            self._loop.run_until_complete(site.start())
        except BaseException as error:  # reported to the starting thread
            ready.set_exception(error)
            return
        ready.set_result(None)
        self._loop.run_forever()

    def stop(self, grace: float | None = None) -> None:
        """Stops answering; in-flight requests get `grace` seconds."""
        if not self._thread.is_alive():
            return
        cleanup = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        try:
            cleanup.result(timeout=None if grace is None else grace + 1)
        except (concurrent.futures.TimeoutError, RuntimeError):
            logger.warning("REST server did not stop in time")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._api.close()
        self._socket.close()
