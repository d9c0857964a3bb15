"""One loaded model version as TF-Serving sees it: its signatures, Predict on
it with TF-Serving's checks and status codes, and its warmup replay.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from keras_unet_sr.export import bundle_layout, serving_protocol

logger = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"


State = get_model_status_pb2.ModelVersionStatus.State


# tf.errors codes are the gRPC status codes, by number.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


# Lines TensorFlow wraps around an op's own error message in eager mode.
_TF_ERROR_NOISE = re.compile(
    r"^(\s|Graph execution error:|Detected at node|<stack traces unavailable>|Node: )"
)


class RequestError(Exception):
    """A request failure with the gRPC status it is answered with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Signature:
    function: Callable[..., Mapping[str, tf.Tensor]]
    inputs: Mapping[str, tf.TensorSpec]
    outputs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Servable:
    """One loaded version; immutable, so requests may hold it across a swap."""

    version: int
    path: Path
    signatures: Mapping[str, Signature]
    signature_defs: get_model_metadata_pb2.SignatureDefMap
    # Owns the variables the signature functions capture.
    model: Any
    # Output pixels per input pixel and output channels (from the bundle's
    # keras_unet_sr.json; 1 and 1 for other bundles): sizes the answer.
    scale: int = 1
    out_channels: int = 1


def from_tf_error(error: tf.errors.OpError) -> RequestError:
    """Keeps TF's status code and the op's own message, as the C++ server does."""
    code = _GRPC_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
    for line in error.message.splitlines():
        if line.strip() and not _TF_ERROR_NOISE.match(line):
            return RequestError(code, re.sub(r"\s*\[Op:[^\]]*\]$", "", line.strip()))
    return RequestError(code, serving_protocol.first_line(error.message))


def load_servable(path: Path, version: int) -> Servable:
    model = tf.saved_model.load(str(path))
    signatures = {
        name: Signature(
            function=function,
            inputs=dict(function.structured_input_signature[1]),
            outputs=tuple(function.structured_outputs),
        )
        for name, function in model.signatures.items()
    }
    info = bundle_layout.read_bundle_info(path)
    return Servable(
        version,
        path,
        signatures,
        read_signature_defs(path),
        model,
        scale=int(info.get("scale", 1)),
        out_channels=int(info.get("out_channels", 1)),
    )


def read_signature_defs(path: Path) -> get_model_metadata_pb2.SignatureDefMap:
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


def find_signature(servable: Servable, name: str) -> Signature:
    """The signature called `name`, or INVALID_ARGUMENT listing the others."""
    signature = servable.signatures.get(name)
    if signature is None:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'Serving signature key "{name}" not found. Available signatures: '
            f"{', '.join(sorted(servable.signatures))}",
        )
    return signature


def check_sizes(
    servable: Servable, protos: Mapping[str, Any], max_bytes: int | None
) -> None:
    """RESOURCE_EXHAUSTED before any work when a request's declared shapes
    (not its bytes: a 54-byte request can declare a gigapixel) or the answer
    they imply (an x2 image answer holds 4x the pixels) exceed the limit."""
    if max_bytes is None:
        return
    for key, proto in protos.items():
        dims = [max(dim.size, 0) for dim in proto.tensor_shape.dim]
        try:
            itemsize = tf.dtypes.as_dtype(proto.dtype).size
        except TypeError:
            continue  # an unknown dtype is the dtype check's to refuse
        declared = math.prod(dims) * itemsize
        answer = 0
        if key == "image" and len(dims) >= 2:
            spatial = dims[:2] if len(dims) <= 3 else dims[:3]
            answer = math.prod(spatial) * servable.scale**2 * servable.out_channels * 4
        for what, size in (("input", declared), ("answer", answer)):
            if size > max_bytes:
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{what} of '{key}' (shape {dims}) would be {size} bytes, more "
                    f"than the limit of {max_bytes}",
                )


def run_predict(
    servable: Servable,
    request: predict_pb2.PredictRequest,
    max_bytes: int | None = None,
) -> predict_pb2.PredictResponse:
    """Runs one request on one version (real requests and warmup alike),
    refusing one over `max_bytes` (see `check_sizes`) before any work."""
    name = request.model_spec.signature_name or serving_protocol.DEFAULT_SIGNATURE
    signature = find_signature(servable, name)
    check_sizes(servable, request.inputs, max_bytes)
    wanted = _output_keys(signature, request.output_filter)
    inputs = _input_tensors(name, signature, request.inputs)
    try:
        outputs = signature.function(**inputs)
    except tf.errors.OpError as error:
        raise from_tf_error(error) from error
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = name
    for key in wanted:
        serving_protocol.fill_tensor_proto(response.outputs[key], outputs[key].numpy())
    return response


def _output_keys(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    for key in output_filter:
        if key not in signature.outputs:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {key} Outputs "
                f"expected to be in the set {{{','.join(sorted(signature.outputs))}}}.",
            )
    if len(set(output_filter)) != len(output_filter):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"duplicate output tensor alias in output_filter: {list(output_filter)}",
        )
    return list(output_filter) or list(signature.outputs)


def _input_tensors(
    signature_name: str, signature: Signature, protos: Mapping[str, Any]
) -> dict[str, tf.Tensor]:
    sent, expected = set(protos), set(signature.inputs)
    if sent != expected:
        raise RequestError(
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
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' has dtype {serving_protocol.dtype_name(proto.dtype)} "
            f"but the signature expects {spec.dtype.name}",
        )
    try:
        array = serving_protocol.tensor_proto_to_ndarray(proto)
    except ValueError as error:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {key} ({error})"
        ) from error
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' has shape {array.shape}, incompatible with the "
            f"signature's {spec.shape}",
        )
    return tf.convert_to_tensor(array)


def replay_warmup(servable: Servable) -> None:
    logs = bundle_layout.read_warmup_requests(servable.path)
    requests = [log.predict_log.request for log in logs if log.HasField("predict_log")]
    for index, request in enumerate(requests, start=1):
        try:
            run_predict(servable, request)
        except RequestError as error:
            raise RequestError(
                error.code,
                f"warmup request {index} of {len(requests)} failed: {error.message}",
            ) from error
    logger.info(
        "Replayed %d warmup requests on version %d", len(requests), servable.version
    )


def load_error(error: Exception) -> RequestError:
    if isinstance(error, RequestError):
        return error
    if isinstance(error, tf.errors.OpError):
        return from_tf_error(error)
    return RequestError(
        grpc.StatusCode.UNKNOWN, serving_protocol.first_line(str(error)) or repr(error)
    )
