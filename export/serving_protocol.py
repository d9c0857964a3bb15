"""TF-Serving wire helpers shared by the gRPC server, the client and the exporter.

* Tensors: `ndarray_to_tensor_proto` / `fill_tensor_proto` /
  `tensor_proto_to_ndarray`. Numeric arrays travel as raw `tensor_content`
  bytes: whole-buffer copies, no per-element Python work. Decoding also reads
  the repeated `*_val` fields the C++ `tensorflow_model_server` answers with,
  in ~1 ms for a 2048x2048 float32 image where `tf.make_ndarray` takes ~100 ms.
* Requests: `make_predict_request`.
* Warmup: `write_warmup_requests` / `read_warmup_requests`, a TFRecord of
  `PredictionLog` records at `<version>/assets.extra/tf_serving_warmup_requests`.
* Layout: `list_versions` (the numeric version subdirectories of a model's
  base path) and `write_models_config` (a `--model_config_file`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


# Repeated field that holds the values of each numeric dtype when
# `tensor_content` is empty (TensorFlow's `Tensor::AsProtoField` layout).
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
}


def dtype_name(dtype: int) -> str:
    """Returns the TensorFlow name of a `DataType` enum value, e.g. "float32".

    Args:
        dtype: A `tensorflow.DataType` enum value.

    Returns:
        The dtype's name, or the enum's own name (e.g. "DT_INVALID") for
        values TensorFlow has no Python dtype for.
    """
    try:
        return tf.dtypes.as_dtype(dtype).name
    except TypeError:
        return (
            types_pb2.DataType.Name(dtype)
            if dtype in types_pb2.DataType.values()
            else str(dtype)
        )


def bundle_signature(image: np.ndarray) -> tuple[str, np.ndarray]:
    """The bundle signature an image goes to, and the image as it travels:
    uint16 camera counts as they are (half the bytes), anything else as
    float32."""
    if image.dtype == np.uint16:
        return "predict_uint16", image
    return DEFAULT_SIGNATURE, image.astype(np.float32, copy=False)


def first_line(text: str | None) -> str:
    """Returns the first non-blank line of `text`, stripped ("" if none)."""
    lines = (line.strip() for line in (text or "").splitlines())
    return next((line for line in lines if line), "")


def ndarray_to_tensor_proto(array: npt.ArrayLike) -> tensor_pb2.TensorProto:
    """Converts an array to a `TensorProto`, keeping its dtype.

    Args:
        array: Anything `np.asarray` accepts. Strings and bytes become
            `DT_STRING`.

    Returns:
        The tensor; numeric data is stored as `tensor_content` bytes.

    Raises:
        TypeError: If the dtype has no TensorFlow equivalent.
    """
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    return proto


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: npt.ArrayLike) -> None:
    """Writes an array into an empty `TensorProto` in place.

    Filling the map entry of a request or response directly saves copying a
    multi-megabyte message with `CopyFrom`.

    Args:
        proto: The tensor to fill, e.g. `response.outputs[key]`.
        array: As for `ndarray_to_tensor_proto`.

    Raises:
        TypeError: If the dtype has no TensorFlow equivalent.
    """
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        # Strings have no fixed-width layout; they travel in `string_val`.
        proto.CopyFrom(tf.make_tensor_proto(array))
        return
    if not array.dtype.isnative:
        # TensorFlow reads `tensor_content` in host (little-endian) order.
        array = array.astype(array.dtype.newbyteorder("="))
    proto.dtype = tf.dtypes.as_dtype(array.dtype).as_datatype_enum
    proto.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape
    )
    proto.tensor_content = array.tobytes(order="C")


def tensor_proto_to_ndarray(
    proto: tensor_pb2.TensorProto, writable: bool = False
) -> np.ndarray:
    """Converts a `TensorProto` to an array of its dtype.

    Args:
        proto: A tensor with a fully known shape, its values in
            `tensor_content` or in the dtype's repeated `*_val` field (where,
            as in TensorFlow, fewer values than elements repeat the last one).
        writable: Copy `tensor_content` into a writable array. By default
            the array is a read-only view of the received bytes: a copy of a
            2048 x 2048 x 9 float32 image costs ~0.1 s, and TensorFlow copies
            its inputs anyway.

    Returns:
        The array.

    Raises:
        ValueError: If the tensor is malformed: unknown rank, negative
            dimensions, unsupported dtype, or a value count or byte size
            that does not match the shape.
    """
    shape = _shape(proto.tensor_shape)
    count = math.prod(shape)
    try:
        np_dtype = np.dtype(tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype)
    except TypeError as error:
        raise ValueError(f"unsupported dtype {dtype_name(proto.dtype)}") from error
    # Each read of a bytes field copies it: read the content once.
    content = proto.tensor_content
    if content:
        array = _from_content(content, np_dtype, shape, proto.dtype)
        return array.copy() if writable else array
    field = _VALUE_FIELDS.get(proto.dtype)
    if field is None:
        return _from_generic(proto)
    try:
        values = np.array(getattr(proto, field), dtype=np_dtype)
    except (OverflowError, ValueError) as error:
        raise ValueError(f"bad {field} values: {error}") from error
    return _fill(values, shape, count, field)


def _shape(shape: tensor_shape_pb2.TensorShapeProto) -> tuple[int, ...]:
    if shape.unknown_rank:
        raise ValueError("tensor shape has unknown rank")
    dims = tuple(dim.size for dim in shape.dim)
    if any(size < 0 for size in dims):
        raise ValueError(f"tensor shape {list(dims)} has negative dimensions")
    return dims


def _from_content(
    content: bytes, np_dtype: np.dtype, shape: tuple[int, ...], dtype: int
) -> np.ndarray:
    if np_dtype.kind == "O":
        raise ValueError(f"tensor_content cannot hold {dtype_name(dtype)} values")
    expected = math.prod(shape) * np_dtype.itemsize
    if len(content) != expected:
        raise ValueError(
            f"tensor_content has {len(content)} bytes but shape {list(shape)} of "
            f"{dtype_name(dtype)} needs {expected}"
        )
    # A read-only view of the immutable bytes.
    return np.frombuffer(content, dtype=np_dtype).reshape(shape)


def _fill(
    values: np.ndarray, shape: tuple[int, ...], count: int, field: str
) -> np.ndarray:
    if values.size == count:
        return values.reshape(shape)
    if values.size == 0:
        return np.zeros(shape, dtype=values.dtype)
    if values.size > count:
        raise ValueError(
            f"{field} has {values.size} values but shape {list(shape)} holds {count}"
        )
    padded = np.full(count, values[-1], dtype=values.dtype)
    padded[: values.size] = values
    return padded.reshape(shape)


def _from_generic(proto: tensor_pb2.TensorProto) -> np.ndarray:
    # Strings, half, bfloat16, complex: rare here, so TF's slow path is fine.
    try:
        return np.array(tf.make_ndarray(proto))
    except Exception as error:  # TF raises assorted types for bad protos.
        raise ValueError(
            f"cannot parse {dtype_name(proto.dtype)} tensor: {error}"
        ) from error


def make_predict_request(
    model_name: str,
    inputs: Mapping[str, npt.ArrayLike],
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    output_filter: Sequence[str] | None = None,
) -> predict_pb2.PredictRequest:
    """Builds a `PredictRequest`.

    Args:
        model_name: The model's name on the server.
        inputs: Input key to array (dtype kept as is).
        signature_name: The signature to call.
        version: A specific version, or None for the latest.
        output_filter: Output keys to return; None or empty for all.

    Returns:
        The request.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        fill_tensor_proto(request.inputs[key], value)
    request.output_filter.extend(output_filter or ())
    return request


# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc_for_large_messages() -> bool:
    """Keep freed memory for reuse instead of returning it to the kernel.

    Each request allocates several fresh ~100 MB buffers (proto bytes,
    arrays, tensors); glibc hands big blocks back to the OS on free, so
    the next request page-faults them in again. Measured on a 2-core VM
    (benchmarks/run.py): a 2048 x 2048 x 9 round trip went from 1.27-1.42x
    to 1.10x the in-process time. Process-wide, so called by the `serve`
    and `predict --server` commands, not by the library. Returns False
    where glibc's mallopt is unavailable.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        settings = (
            (_M_MMAP_THRESHOLD, 32 << 20),  # the largest glibc allows
            (_M_TRIM_THRESHOLD, 4 << 30),
            (_M_TOP_PAD, 256 << 20),
        )
        return all(libc.mallopt(param, value) == 1 for param, value in settings)
    except (OSError, AttributeError):
        return False
