"""The served model's versions: loading, version polling and status, with the
observable behaviour of TF-Serving's "latest" version policy (see
`keras_unet_sr.export.grpc_server`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
)

from keras_unet_sr.export import bundle_layout
from keras_unet_sr.export.servable import (
    SIGNATURE_DEF_FIELD,
    RequestError,
    Servable,
    State,
    load_error,
    load_servable,
    replay_warmup,
)

logger = logging.getLogger(__name__)


class VersionState(NamedTuple):
    state: int
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""


def request_text(model_spec: Any) -> str:
    """TF-Serving's rendering of the servable a request asked for."""
    if model_spec.HasField("version"):
        return f"Specific({model_spec.name}, {model_spec.version.value})"
    return f"Latest({model_spec.name})"


class ModelManager:
    """Holds the served version of one model and the state of every version seen.

    The served `Servable` is swapped under `_cond`; readers take the
    reference once and use it unlocked, so a swap never waits for requests.
    """

    def __init__(
        self, base_dir: Path, model_name: str, max_message_bytes: int | None = None
    ):
        self.base_dir = base_dir
        self.model_name = model_name
        # The largest request or answer (`servable.check_sizes`).
        self.max_message_bytes = max_message_bytes
        self._cond = threading.Condition()
        self._servable: Servable | None = None
        self._states: dict[int, VersionState] = {}
        # Not retried until the directory disappears and comes back.
        self._failed: set[int] = set()
        self._last_warning = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Servable:
        with self._cond:
            assert self._servable is not None, "no version loaded"
            return self._servable

    def load_initial(self) -> None:
        """Loads the highest loadable version, or raises ValueError."""
        versions = bundle_layout.list_versions(self.base_dir)
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
            present = bundle_layout.list_versions(self.base_dir)
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
        self._set_state(version, VersionState(State.LOADING))
        logger.info(
            "Loading model '%s' version %d from %s", self.model_name, version, path
        )
        try:
            servable = load_servable(path, version)
            replay_warmup(servable)
        except Exception as exception:
            error = load_error(exception)
            logger.error(
                "Loading model '%s' version %d failed: %s",
                self.model_name,
                version,
                error.message,
                exc_info=True,
            )
            with self._cond:
                self._failed.add(version)
            self._set_state(version, VersionState(State.END, error.code, error.message))
            return False
        with self._cond:
            old, self._servable = self._servable, servable
            self._states[version] = VersionState(State.AVAILABLE)
            if old is not None:
                # Dropping the reference unloads it once in-flight requests end.
                self._states[old.version] = VersionState(State.END)
            self._cond.notify_all()
        logger.info("Serving model '%s' version %d", self.model_name, version)
        return True

    def _set_state(self, version: int, state: VersionState) -> None:
        with self._cond:
            self._states[version] = state
            self._cond.notify_all()

    def resolve(self, model_spec: Any) -> Servable:
        """Returns the version a request's ModelSpec names, or raises NOT_FOUND."""
        servable = self.current()
        if model_spec.name != self.model_name or (
            model_spec.HasField("version")
            and model_spec.version.value != servable.version
        ):
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {request_text(model_spec)}",
            )
        if model_spec.WhichOneof("version_choice") == "version_label":
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Unrecognized servable version label: {model_spec.version_label} "
                f"(this server has no version labels)",
            )
        return servable

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Answers GetModelMetadata (the signature_def field only, as TF-Serving)."""
        if not request.metadata_field:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Metadata field {field} is not supported",
                )
        servable = self.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_defs)
        return response

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
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {version} of model {spec.name}",
                )
            states = {version: states[version]}
        if not states:
            raise RequestError(
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
