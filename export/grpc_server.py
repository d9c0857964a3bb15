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
import dataclasses
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_unet_sr.export import serving_protocol

logger = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
# Seconds in-flight requests get to finish when serve_forever is stopped.
SHUTDOWN_GRACE_SECONDS = 5.0

_State = get_model_status_pb2.ModelVersionStatus.State

# tf.errors codes are the gRPC status codes, by number.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
# Lines TensorFlow wraps around an op's own error message in eager mode.
_TF_ERROR_NOISE = re.compile(
    r"^(\s|Graph execution error:|Detected at node|<stack traces unavailable>|Node: )"
)
_T = TypeVar("_T")


class _RequestError(Exception):
    """A request failure with the gRPC status it is answered with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _VersionState(NamedTuple):
    state: int
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""


@dataclasses.dataclass(frozen=True)
class _Signature:
    function: Callable[..., Mapping[str, tf.Tensor]]
    inputs: Mapping[str, tf.TensorSpec]
    outputs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Servable:
    """One loaded version; immutable, so requests may hold it across a swap."""

    version: int
    path: Path
    signatures: Mapping[str, _Signature]
    signature_defs: get_model_metadata_pb2.SignatureDefMap
    # Owns the variables the signature functions capture.
    model: Any


def _from_tf_error(error: tf.errors.OpError) -> _RequestError:
    """Keeps TF's status code and the op's own message, as the C++ server does."""
    code = _GRPC_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
    for line in error.message.splitlines():
        if line.strip() and not _TF_ERROR_NOISE.match(line):
            return _RequestError(code, re.sub(r"\s*\[Op:[^\]]*\]$", "", line.strip()))
    return _RequestError(code, serving_protocol.first_line(error.message))


def _load_servable(path: Path, version: int) -> _Servable:
    model = tf.saved_model.load(str(path))
    signatures = {
        name: _Signature(
            function=function,
            inputs=dict(function.structured_input_signature[1]),
            outputs=tuple(function.structured_outputs),
        )
        for name, function in model.signatures.items()
    }
    return _Servable(version, path, signatures, _read_signature_defs(path), model)


def _read_signature_defs(path: Path) -> get_model_metadata_pb2.SignatureDefMap:
    saved_model = saved_model_pb2.SavedModel()
    if (path / "saved_model.pb").is_file():
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(), saved_model)
    # TF-Serving loads the "serve" meta graph.
    meta_graph = next(
        (g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags),
        saved_model.meta_graphs[0],
    )
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in meta_graph.signature_def.items():
        signature_defs.signature_def[name].CopyFrom(signature_def)
    return signature_defs


def _run_predict(
    servable: _Servable, request: predict_pb2.PredictRequest
) -> predict_pb2.PredictResponse:
    """Runs one request on one version (real requests and warmup alike)."""
    name = request.model_spec.signature_name or serving_protocol.DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise _RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'Serving signature key "{name}" not found. Available signatures: '
            f"{', '.join(sorted(servable.signatures))}",
        )
    wanted = _output_keys(signature, request.output_filter)
    inputs = _input_tensors(name, signature, request.inputs)
    try:
        outputs = signature.function(**inputs)
    except tf.errors.OpError as error:
        raise _from_tf_error(error) from error
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = name
    for key in wanted:
        serving_protocol.fill_tensor_proto(response.outputs[key], outputs[key].numpy())
    return response


def _output_keys(signature: _Signature, output_filter: Sequence[str]) -> list[str]:
    for key in output_filter:
        if key not in signature.outputs:
            raise _RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {key} Outputs "
                f"expected to be in the set {{{','.join(sorted(signature.outputs))}}}.",
            )
    if len(set(output_filter)) != len(output_filter):
        raise _RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"duplicate output tensor alias in output_filter: {list(output_filter)}",
        )
    return list(output_filter) or list(signature.outputs)


def _input_tensors(
    signature_name: str, signature: _Signature, protos: Mapping[str, Any]
) -> dict[str, tf.Tensor]:
    sent, expected = set(protos), set(signature.inputs)
    if sent != expected:
        raise _RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'inputs do not match signature "{signature_name}": '
            f"sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
        )
    return {
        key: _input_tensor(key, signature.inputs[key], proto)
        for key, proto in protos.items()
    }


def _input_tensor(key: str, spec: tf.TensorSpec, proto: Any) -> tf.Tensor:
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise _RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' has dtype {serving_protocol.dtype_name(proto.dtype)} "
            f"but the signature expects {spec.dtype.name}",
        )
    try:
        array = serving_protocol.tensor_proto_to_ndarray(proto)
    except ValueError as error:
        raise _RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {key} ({error})"
        ) from error
    if not spec.shape.is_compatible_with(array.shape):
        raise _RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' has shape {array.shape}, incompatible with the "
            f"signature's {spec.shape}",
        )
    return tf.convert_to_tensor(array)


def _replay_warmup(servable: _Servable) -> None:
    logs = serving_protocol.read_warmup_requests(servable.path)
    requests = [log.predict_log.request for log in logs if log.HasField("predict_log")]
    for index, request in enumerate(requests, start=1):
        try:
            _run_predict(servable, request)
        except _RequestError as error:
            raise _RequestError(
                error.code,
                f"warmup request {index} of {len(requests)} failed: {error.message}",
            ) from error
    logger.info(
        "Replayed %d warmup requests on version %d", len(requests), servable.version
    )


def _load_error(error: Exception) -> _RequestError:
    if isinstance(error, _RequestError):
        return error
    if isinstance(error, tf.errors.OpError):
        return _from_tf_error(error)
    return _RequestError(
        grpc.StatusCode.UNKNOWN, serving_protocol.first_line(str(error)) or repr(error)
    )


def _request_text(model_spec: Any) -> str:
    """TF-Serving's rendering of the servable a request asked for."""
    if model_spec.HasField("version"):
        return f"Specific({model_spec.name}, {model_spec.version.value})"
    return f"Latest({model_spec.name})"


class _ModelManager:
    """Holds the served version of one model and the state of every version seen.

    The served `_Servable` is swapped under `_cond`; readers take the
    reference once and use it unlocked, so a swap never waits for requests.
    """

    def __init__(self, base_dir: Path, model_name: str):
        self.base_dir = base_dir
        self.model_name = model_name
        self._cond = threading.Condition()
        self._servable: _Servable | None = None
        self._states: dict[int, _VersionState] = {}
        # Not retried until the directory disappears and comes back.
        self._failed: set[int] = set()
        self._last_warning = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> _Servable:
        with self._cond:
            assert self._servable is not None, "no version loaded"
            return self._servable

    def load_initial(self) -> None:
        """Loads the highest loadable version, or raises ValueError."""
        versions = serving_protocol.list_versions(self.base_dir)
        if not versions:
            raise ValueError(
                f"no version directories (numeric names) in model base path "
                f"{self.base_dir}"
            )
        for version in reversed(versions):
            if self._try_load(version):
                return
        failures = "; ".join(
            f"version {v}: {self._states[v].message}" for v in reversed(versions)
        )
        raise ValueError(f"no loadable version in {self.base_dir}: {failures}")

    def poll_once(self) -> None:
        """Loads the highest new version, or falls back if the served one vanished."""
        try:
            present = serving_protocol.list_versions(self.base_dir)
        except OSError as error:
            self._warn(f"cannot list model base path {self.base_dir}: {error}")
            return
        with self._cond:
            self._failed &= set(present)
            candidates = [v for v in present if v not in self._failed]
        served = self.current().version
        if candidates and max(candidates) != served:
            self._try_load(max(candidates))
        elif served not in present:
            self._warn(
                f"version {served} of model '{self.model_name}' was removed and no "
                f"other loadable version exists; still serving it from memory"
            )
        else:
            self._last_warning = ""

    def _warn(self, message: str) -> None:
        # Once per distinct problem, not once per poll.
        if message != self._last_warning:
            logger.warning("%s", message)
            self._last_warning = message

    def _try_load(self, version: int) -> bool:
        path = self.base_dir / str(version)
        self._set_state(version, _VersionState(_State.LOADING))
        logger.info(
            "Loading model '%s' version %d from %s", self.model_name, version, path
        )
        try:
            servable = _load_servable(path, version)
            _replay_warmup(servable)
        except Exception as exception:
            error = _load_error(exception)
            logger.error(
                "Loading model '%s' version %d failed: %s",
                self.model_name,
                version,
                error.message,
                exc_info=True,
            )
            with self._cond:
                self._failed.add(version)
            self._set_state(
                version, _VersionState(_State.END, error.code, error.message)
            )
            return False
        with self._cond:
            old, self._servable = self._servable, servable
            self._states[version] = _VersionState(_State.AVAILABLE)
            if old is not None:
                # Dropping the reference unloads it once in-flight requests end.
                self._states[old.version] = _VersionState(_State.END)
            self._cond.notify_all()
        logger.info("Serving model '%s' version %d", self.model_name, version)
        return True

    def _set_state(self, version: int, state: _VersionState) -> None:
        with self._cond:
            self._states[version] = state
            self._cond.notify_all()

    def resolve(self, model_spec: Any) -> _Servable:
        """Returns the version a request's ModelSpec names, or raises NOT_FOUND."""
        servable = self.current()
        if model_spec.name != self.model_name or (
            model_spec.HasField("version")
            and model_spec.version.value != servable.version
        ):
            raise _RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {_request_text(model_spec)}",
            )
        if model_spec.WhichOneof("version_choice") == "version_label":
            raise _RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Unrecognized servable version label: {model_spec.version_label} "
                f"(this server has no version labels)",
            )
        return servable

    def status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Answers GetModelStatus like TF-Serving's ServableStateMonitor."""
        spec = request.model_spec
        with self._cond:
            states = dict(self._states) if spec.name == self.model_name else {}
        if spec.HasField("version"):
            version = spec.version.value
            if version not in states:
                raise _RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {version} of model {spec.name}",
                )
            states = {version: states[version]}
        if not states:
            raise _RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {spec.name}",
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):
            state = states[version]
            entry = response.model_version_status.add(
                version=version, state=state.state
            )
            entry.status.error_code = state.code.value[0]
            entry.status.error_message = state.message
        return response

    def wait_for_version(self, version: int, timeout: float) -> None:
        """Blocks until `version` is served.

        Raises:
            RuntimeError: If that version failed to load.
            TimeoutError: If it is not served within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._servable is None or self._servable.version != version:
                if version in self._failed:
                    raise RuntimeError(
                        f"model '{self.model_name}' version {version} failed to "
                        f"load: {self._states[version].message}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    served = self._servable.version if self._servable else None
                    raise TimeoutError(
                        f"model '{self.model_name}' version {version} not served "
                        f"after {timeout:g} s (serving version {served})"
                    )
                self._cond.wait(remaining)

    def start_polling(self, poll_seconds: float) -> None:
        # As TF-Serving: 0 or less means the directory is read once, at start.
        if poll_seconds <= 0:
            return
        self._thread = threading.Thread(
            target=self._poll_loop,
            args=(poll_seconds,),
            name=f"version-poller-{self.model_name}",
            daemon=True,
        )
        self._thread.start()

    def _poll_loop(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.poll_once()
            except Exception:
                logger.exception("Polling %s failed", self.base_dir)

    def stop_polling(self) -> None:
        """Stops the poller, waiting for a load in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _handle(context: grpc.ServicerContext, method: str, work: Callable[[], _T]) -> _T:
    """Runs `work`, answering failures with a status; never lets one escape."""
    try:
        return work()
    except _RequestError as error:
        failure = error
    except Exception as error:
        logger.exception("%s failed", method)
        detail = f"{type(error).__name__}: {serving_protocol.first_line(str(error))}"
        failure = _RequestError(
            grpc.StatusCode.INTERNAL, f"{method} internal error: {detail}"
        )
    logger.debug("%s rejected (%s): %s", method, failure.code.name, failure.message)
    context.abort(failure.code, failure.message)


def _require_model_spec(request: Any) -> None:
    if not request.HasField("model_spec"):
        raise _RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: _ModelManager):
        self._manager = manager

    def Predict(self, request, context):
        return _handle(context, "Predict", lambda: self._predict(request))

    def _predict(
        self, request: predict_pb2.PredictRequest
    ) -> predict_pb2.PredictResponse:
        _require_model_spec(request)
        return _run_predict(self._manager.resolve(request.model_spec), request)

    def GetModelMetadata(self, request, context):
        return _handle(context, "GetModelMetadata", lambda: self._metadata(request))

    def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        _require_model_spec(request)
        if not request.metadata_field:
            raise _RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise _RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Metadata field {field} is not supported",
                )
        servable = self._manager.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self._manager.model_name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_defs)
        return response

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
    def __init__(self, manager: _ModelManager):
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
    """

    def __init__(
        self, server: grpc.Server, manager: _ModelManager, host: str, port: int
    ):
        self._server = server
        self._manager = manager
        self.port = port
        self.address = f"{_bracketed(host)}:{port}"
        self.model_name = manager.model_name

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
) -> ServerHandle:
    """Loads the latest version of a model and serves it over gRPC (non-blocking).

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
    manager = _ModelManager(base, model_name or base.name)
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
    server.start()
    manager.start_polling(poll_seconds)
    handle = ServerHandle(server, manager, host, bound_port)
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
            f"from {handle.base_dir} on {handle.address} (gRPC)",
            flush=True,
        )
        stop.wait()
        logger.info("Stopping")
        handle.stop(SHUTDOWN_GRACE_SECONDS)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
