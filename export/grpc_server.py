"""A Python stand-in for TensorFlow Serving's gRPC API, serving one model.

It implements `PredictionService` (Predict, GetModelMetadata) and
`ModelService` (GetModelStatus) over one model's base directory with the
observable behaviour of `tensorflow_model_server --model_base_path=BASE`
under the default "latest" version policy:

* The highest numeric version directory is served. A background thread polls
  the base directory every `poll_seconds`; a newer version is loaded, its
  warmup requests are replayed through the normal Predict path, and only then
  does it replace the served one (in-flight requests finish on the old one).
  A version that fails to load or warm up is reported as END with its error
  and the old version keeps serving. If the served version's directory
  disappears, the highest remaining version takes over.
* Errors use TF-Serving's status codes and, where it has one, its message.

Deliberate differences from the C++ server:

* An unknown signature is INVALID_ARGUMENT (C++: FAILED_PRECONDITION) and
  the message lists the available ones; any version label is NOT_FOUND
  (C++: INVALID_ARGUMENT "Unrecognized servable version label" unless the
  label is configured). Input dtypes and shapes are checked against the
  signature before the model runs, with messages naming the input.
* Outputs travel as `tensor_content` (C++: the repeated `*_val` fields),
  which is far cheaper to encode and decode in Python.
* A version that fails to load is not retried until its directory is
  removed and re-created (C++: `--max_num_load_retries`). If every version
  directory disappears, the last loaded version keeps serving from memory.

Use `start_server` from Python (tests, notebooks); `keras-unet-sr serve`
runs `serve_forever` as a process.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_unet_sr.export import serving_protocol
from keras_unet_sr.export.model_manager import ModelManager
from keras_unet_sr.export.rest_server import RestApi, RestServer
from keras_unet_sr.export.servable import RequestError, run_predict

logger = logging.getLogger(__name__)

# Seconds in-flight requests get to finish when serve_forever is stopped.
SHUTDOWN_GRACE_SECONDS = 5.0


_T = TypeVar("_T")


def _handle(context: grpc.ServicerContext, method: str, work: Callable[[], _T]) -> _T:
    """Runs `work`, answering failures with a status; never lets one escape."""
    try:
        return work()
    except RequestError as error:
        failure = error
    except Exception as error:
        logger.exception("%s failed", method)
        detail = f"{type(error).__name__}: {serving_protocol.first_line(str(error))}"
        failure = RequestError(
            grpc.StatusCode.INTERNAL, f"{method} internal error: {detail}"
        )
    logger.debug("%s rejected (%s): %s", method, failure.code.name, failure.message)
    context.abort(failure.code, failure.message)


def _require_model_spec(request: Any) -> None:
    if not request.HasField("model_spec"):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager):
        self._manager = manager

    def Predict(self, request, context):
        return _handle(context, "Predict", lambda: self._predict(request))

    def _predict(
        self, request: predict_pb2.PredictRequest
    ) -> predict_pb2.PredictResponse:
        _require_model_spec(request)
        servable = self._manager.resolve(request.model_spec)
        return run_predict(servable, request, self._manager.max_message_bytes)

    def GetModelMetadata(self, request, context):
        return _handle(context, "GetModelMetadata", lambda: self._metadata(request))

    def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        _require_model_spec(request)
        return self._manager.metadata(request)

    def Classify(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "Classify is not supported; use Predict"
        )

    def Regress(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "Regress is not supported; use Predict"
        )

    def MultiInference(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "MultiInference is not supported; use Predict",
        )


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self._manager = manager

    def GetModelStatus(self, request, context):
        return _handle(context, "GetModelStatus", lambda: self._status(request))

    def _status(self, request):
        _require_model_spec(request)
        return self._manager.status(request)

    def HandleReloadConfigRequest(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "HandleReloadConfigRequest is not supported: this server serves one "
            "model base path",
        )


class ServerHandle:
    """A running server, as returned by `start_server`.

    Attributes:
        port: The bound port (the chosen one when 0 was asked for).
        address: "host:port" to give a client.
        model_name: The name requests must use.
        rest_port: The REST API's bound port (None without one).
        rest_url: "http://host:port" of the REST API (None without one).
    """

    def __init__(
        self,
        server: grpc.Server,
        manager: ModelManager,
        host: str,
        port: int,
        rest: RestServer | None = None,
    ):
        self._server = server
        self._manager = manager
        self._rest = rest
        self.port = port
        self.address = f"{_bracketed(host)}:{port}"
        self.model_name = manager.model_name
        self.rest_port = rest.port if rest else None
        self.rest_url = f"http://{_bracketed(host)}:{rest.port}" if rest else None

    @property
    def base_dir(self) -> Path:
        """The model base path, absolute."""
        return self._manager.base_dir

    @property
    def served_version(self) -> int:
        """The version answering requests now."""
        return self._manager.current().version

    def wait_for_version(self, version: int, timeout: float = 30.0) -> None:
        """Blocks until `version` is served.

        Args:
            version: The version to wait for.
            timeout: Seconds to wait.

        Raises:
            RuntimeError: If that version failed to load.
            TimeoutError: If it is not served in time.
        """
        self._manager.wait_for_version(version, timeout)

    def stop(self, grace: float | None = None) -> None:
        """Stops polling and serving; idempotent.

        Args:
            grace: Seconds in-flight RPCs may take to finish; None aborts them.
        """
        self._manager.stop_polling()
        if self._rest is not None:
            self._rest.stop(grace)
        self._server.stop(grace).wait()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def start_server(
    base_dir: str | os.PathLike,
    *,
    model_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8500,
    poll_seconds: float = 1.0,
    max_workers: int = 8,
    max_message_bytes: int = 1 << 30,
    rest_port: int | None = None,
) -> ServerHandle:
    """Loads the latest version of a model and serves it over gRPC, and over
    TF-Serving's REST API when `rest_port` is given (non-blocking).

    Args:
        base_dir: The model base path, holding numeric version directories.
        model_name: The served name; default the base directory's name.
        host: Interface to bind; loopback unless asked otherwise.
        port: Port to bind; 0 picks a free one (see `ServerHandle.port`).
        poll_seconds: Seconds between scans for new versions; 0 or less scans
            only at start.
        max_workers: Threads answering RPCs concurrently.
        max_message_bytes: Largest request or response (x2 super-resolution
            returns 4x the input; gRPC's own default is 4 MiB).
        rest_port: Port of the REST API on the same host and model (see
            `keras_unet_sr.export.rest_server`); 0 picks a free one; None
            serves gRPC only.

    Returns:
        The running server's handle.

    Raises:
        FileNotFoundError: If `base_dir` is not a directory.
        ValueError: If it holds no loadable version.
        OSError: If the address cannot be bound.
    """
    base = Path(os.path.abspath(os.path.expanduser(base_dir)))
    if not base.is_dir():
        raise FileNotFoundError(
            f"model base path {base} does not exist or is not a directory"
        )
    manager = ModelManager(base, model_name or base.name, max_message_bytes)
    manager.load_initial()
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="tf-serving-grpc"
        ),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Without this a second server could silently share the port.
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionServicer(manager), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        _ModelServicer(manager), server
    )
    address = f"{_bracketed(host)}:{port}"
    try:
        bound_port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(
            f"cannot bind gRPC server to {address}: address in use or not local"
        ) from error
    rest = None
    if rest_port is not None:
        rest = RestServer(
            RestApi(manager, max_message_bytes, max_workers), host, rest_port
        )
    server.start()
    manager.start_polling(poll_seconds)
    handle = ServerHandle(server, manager, host, bound_port, rest)
    logger.info(
        "Serving model '%s' version %d on %s",
        handle.model_name,
        handle.served_version,
        handle.address,
    )
    return handle


def serve_forever(base_dir: str | os.PathLike, **options: Any) -> None:
    """Serves until SIGINT or SIGTERM, then stops cleanly.

    Must run in the main thread (signal handlers). `options` and errors are
    those of `start_server`.
    """
    stop = threading.Event()
    handlers = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        handle = start_server(base_dir, **options)
        print(
            f"Serving model '{handle.model_name}' version {handle.served_version} "
            f"from {handle.base_dir} on {handle.address} (gRPC)"
            + (f" and {handle.rest_url} (REST)" if handle.rest_url else ""),
            flush=True,
        )
        stop.wait()
        logger.info("Stopping")
        handle.stop(SHUTDOWN_GRACE_SECONDS)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
