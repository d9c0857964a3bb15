"""Client for TensorFlow Serving's gRPC API.

Works against the C++ `tensorflow_model_server` and against
`keras_unet_sr.export.grpc_server`: it only uses the official protos. Every
gRPC failure is raised as a `ServingError` with a one-line message naming the
server and the model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from keras_unet_sr.errors import UserError
from keras_unet_sr.export import serving_protocol

METADATA_SIGNATURE = "metadata"
# Exported with every TF2 SavedModel; not callable through Predict.
_INIT_OP_SIGNATURE = "__saved_model_init_op"
_REJECTED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
)
# A server still starting up answers these; wait_until_available retries them.
_NOT_YET = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)
_RETRY_SECONDS = 0.2


class ServingError(Exception):
    """A failed call to the model server.

    Attributes:
        code: The gRPC status code.
    """

    def __init__(self, message: str, code: grpc.StatusCode):
        super().__init__(message)
        self.code = code


class ServingClient:
    """Calls one model on a TF-Serving gRPC endpoint.

    Args:
        target: "host:port" of the server.
        model_name: The model's name on the server.
        timeout: Seconds allowed per call.
        max_message_bytes: Largest request or response accepted (gRPC's
            default of 4 MiB is too small for microscopy images).
    """

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        timeout: float = 600,
        max_message_bytes: int = 1 << 30,
    ):
        self.target = target
        self.model_name = model_name
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # Reconnect to a server that comes up late within ~2 s rather
                # than after gRPC's default backoff of up to 2 minutes.
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(
            self._channel
        )
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def predict(
        self,
        inputs: Mapping[str, npt.ArrayLike],
        signature_name: str = serving_protocol.DEFAULT_SIGNATURE,
        version: int | None = None,
        output_filter: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Calls a signature.

        Args:
            inputs: Input key to array; dtypes are sent unchanged, so they must
                match the signature's.
            signature_name: The signature to call.
            version: A specific version, or None for the served one.
            output_filter: Output keys to return; None for all.

        Returns:
            Output key to array: a read-only view of the received bytes
            (`np.array(out)` for a writable copy).

        Raises:
            ServingError: If the call fails.
        """
        request = serving_protocol.make_predict_request(
            self.model_name,
            inputs,
            signature_name=signature_name,
            version=version,
            output_filter=output_filter,
        )
        response = self._call(
            "Predict", self._prediction.Predict, request, version=version
        )
        return {
            key: serving_protocol.tensor_proto_to_ndarray(proto)
            for key, proto in response.outputs.items()
        }

    def metadata(self) -> dict[str, dict[str, dict[str, tuple[str, tuple | None]]]]:
        """Describes the served version's signatures.

        Returns:
            `{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}}`
            with dtype names such as "float32" and shapes as tuples with None
            for unknown dimensions, or None for unknown rank.

        Raises:
            ServingError: If the call fails.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"]
        )
        request.model_spec.name = self.model_name
        response = self._call(
            "GetModelMetadata", self._prediction.GetModelMetadata, request
        )
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        packed = response.metadata.get("signature_def")
        if packed is None or not packed.Unpack(signature_defs):
            raise ServingError(
                f"GetModelMetadata for model '{self.model_name}' on {self.target} "
                f"returned no SignatureDefMap",
                grpc.StatusCode.UNKNOWN,
            )
        return {
            name: {
                "inputs": _describe_tensors(signature.inputs),
                "outputs": _describe_tensors(signature.outputs),
            }
            for name, signature in sorted(signature_defs.signature_def.items())
            if name != _INIT_OP_SIGNATURE
        }

    def model_info(self) -> dict[str, Any]:
        """Calls the bundle's no-input `metadata` signature.

        Returns:
            Output key to Python scalar (or nested list), strings decoded.

        Raises:
            ServingError: If the call fails, e.g. the bundle has no such
                signature.
        """
        outputs = self.predict({}, signature_name=METADATA_SIGNATURE)
        return {key: _to_python(value) for key, value in sorted(outputs.items())}

    def status(self) -> list[dict[str, Any]]:
        """Lists the model's versions known to the server, newest first.

        Returns:
            `[{"version": int, "state": "AVAILABLE" | "LOADING" | "END" | ...,
            "error": error message or ""}]`.

        Raises:
            ServingError: If the call fails (NOT_FOUND before any version of
                the model has been seen).
        """
        return self._status(self.timeout, wait_for_ready=False)

    def _status(self, timeout: float, wait_for_ready: bool) -> list[dict[str, Any]]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        response = self._call(
            "GetModelStatus",
            self._models.GetModelStatus,
            request,
            timeout=timeout,
            wait_for_ready=wait_for_ready,
        )
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            {
                "version": entry.version,
                "state": state_name(entry.state),
                "error": entry.status.error_message,
            }
            for entry in response.model_version_status
        ]

    def wait_until_available(self, timeout: float = 60.0) -> int:
        """Waits until a version of the model is AVAILABLE.

        Args:
            timeout: Seconds to wait, including for the server to come up.

        Returns:
            The highest available version.

        Raises:
            ServingError: DEADLINE_EXCEEDED if none is available in time, or
                the error of a call that cannot succeed by waiting.
        """
        deadline = time.monotonic() + timeout
        last_problem = "no version AVAILABLE"
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                statuses = self._status(remaining, wait_for_ready=True)
            except ServingError as error:
                if error.code not in _NOT_YET:
                    raise
                last_problem = str(error)
            else:
                available = [
                    s["version"] for s in statuses if s["state"] == "AVAILABLE"
                ]
                if available:
                    return max(available)
                last_problem = f"versions: {statuses}"
            time.sleep(min(_RETRY_SECONDS, max(deadline - time.monotonic(), 0)))
        raise ServingError(
            f"model '{self.model_name}' not available on {self.target} after "
            f"{timeout:g} s: {last_problem}",
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        stub_method: Any,
        request: Any,
        *,
        version: int | None = None,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> Any:
        timeout = self.timeout if timeout is None else timeout
        try:
            return stub_method(request, timeout=timeout, wait_for_ready=wait_for_ready)
        except grpc.RpcError as error:
            code = error.code()
            message = self._error_message(
                method, code, error.details(), timeout, version
            )
            raise ServingError(message, code) from None

    def _error_message(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str | None,
        timeout: float,
        version: int | None,
    ) -> str:
        detail = serving_protocol.first_line(details)
        model = f"model '{self.model_name}'"
        where = f"on {self.target}"
        if code == grpc.StatusCode.UNAVAILABLE:
            return (
                f"cannot reach TF-Serving at {self.target} (UNAVAILABLE) for {model}: "
                f"{detail}"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"deadline exceeded after {timeout:g} s: {method} of {model} {where}"
        if code == grpc.StatusCode.NOT_FOUND:
            which = model if version is None else f"{model} version {version}"
            return f"{which} not found {where}: {detail}"
        if code in _REJECTED:
            return f"request rejected ({code.name}) by {model} {where}: {detail}"
        return f"{method} of {model} {where} failed ({code.name}): {detail}"


def _describe_tensors(infos: Mapping[str, Any]) -> dict[str, tuple[str, tuple | None]]:
    return {
        key: (serving_protocol.dtype_name(info.dtype), _shape(info.tensor_shape))
        for key, info in sorted(infos.items())
    }


def _shape(shape: Any) -> tuple[int | None, ...] | None:
    if shape.unknown_rank:
        return None
    return tuple(dim.size if dim.size >= 0 else None for dim in shape.dim)


def _to_python(array: np.ndarray) -> Any:
    return _decode(array.tolist())


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


class ServerBackend:
    """Sends each image to TF-Serving over gRPC (the bundle's signatures)."""

    def __init__(self, target: str, model_name: str):
        self.client = ServingClient(target, model_name)
        try:
            info = self.client.model_info()
        except ServingError as error:
            raise UserError(str(error)) from error
        self.frames = int(info["frames"])
        self.frame_subset = tuple(info["frame_subset"]) or None
        self.description = f"model '{model_name}' on {target}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        signature, image = serving_protocol.bundle_signature(image)
        try:
            return self.client.predict({"image": image}, signature_name=signature)[
                "sr_image"
            ]
        except ServingError as error:
            raise UserError(str(error)) from error
