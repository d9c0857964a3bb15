"""The files of a TF-Serving model base folder: numbered versions, the warmup
requests replayed before a version serves, and `models.config`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from keras_unet_sr.files.atomic import write_text

WARMUP_DIR = "assets.extra"


WARMUP_FILE = "tf_serving_warmup_requests"
#: What a client (and the server's size checks) need to know about a bundle.
METADATA_FILE = "keras_unet_sr.json"


# TF-Serving refuses to load a version whose warmup file holds more records.
MAX_WARMUP_RECORDS = 1000


# Canonical decimal names only, so "7" and "007" can never both be version 7.
_VERSION_NAME = re.compile(r"0|[1-9][0-9]*")


def warmup_file(version_dir: str | os.PathLike) -> Path:
    """Returns where TF-Serving looks for a version's warmup requests."""
    return Path(version_dir) / WARMUP_DIR / WARMUP_FILE


def read_bundle_info(version_dir: str | os.PathLike) -> dict:
    """The bundle's `keras_unet_sr.json` ({} for a bundle without one, e.g.
    one exported by another tool)."""
    path = Path(version_dir) / WARMUP_DIR / METADATA_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_warmup_requests(
    version_dir: str | os.PathLike, requests: Iterable[predict_pb2.PredictRequest]
) -> Path:
    """Writes the warmup file TF-Serving replays before serving a version.

    Write it before the version directory is renamed into place: a server may
    load the version as soon as the directory appears.

    Args:
        version_dir: The SavedModel directory of one version.
        requests: Requests to replay, each wrapped in a `PredictionLog`.

    Returns:
        The path of the written file.

    Raises:
        ValueError: If there are more than `MAX_WARMUP_RECORDS` requests.
    """
    requests = list(requests)
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"{len(requests)} warmup requests; TF-Serving accepts at most "
            f"{MAX_WARMUP_RECORDS}"
        )
    path = warmup_file(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(
    version_dir: str | os.PathLike,
) -> list[prediction_log_pb2.PredictionLog]:
    """Reads a version's warmup file.

    Args:
        version_dir: The SavedModel directory of one version.

    Returns:
        The records, of any log type; empty when the version has no file.

    Raises:
        ValueError: If a record is not a `PredictionLog` or there are more than
            `MAX_WARMUP_RECORDS` records.
        tf.errors.DataLossError: If the file is not a TFRecord file.
    """
    path = warmup_file(version_dir)
    if not path.is_file():
        return []
    logs = []
    for index, record in enumerate(tf.data.TFRecordDataset(str(path))):
        if index == MAX_WARMUP_RECORDS:
            raise ValueError(f"more than {MAX_WARMUP_RECORDS} warmup records in {path}")
        try:
            logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
        except message.DecodeError as error:
            raise ValueError(
                f"warmup record {index} in {path} is not a PredictionLog"
            ) from error
    return logs


def list_versions(base_dir: str | os.PathLike) -> list[int]:
    """Lists the versions of a model, ascending.

    Only subdirectories with canonical decimal names count: hidden temporary
    directories (`.tmp-*`), a `models.config` file and anything else are
    ignored, as TF-Serving ignores them.

    Args:
        base_dir: The model's base path.

    Returns:
        The version numbers.

    Raises:
        OSError: If `base_dir` cannot be listed.
    """
    with os.scandir(base_dir) as entries:
        return sorted(
            int(entry.name)
            for entry in entries
            if _VERSION_NAME.fullmatch(entry.name) and entry.is_dir()
        )


def write_models_config(
    path: str | os.PathLike, models: Mapping[str, str | os.PathLike]
) -> Path:
    """Writes a TF-Serving `--model_config_file` (text `ModelServerConfig`).

    Args:
        path: The file to write.
        models: Model name to base path, as the server will see it (inside a
            container that is the mounted path, so it is written unchanged).

    Returns:
        The path written.
    """
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        config.model_config_list.config.add(
            name=name, base_path=os.fspath(base_path), model_platform="tensorflow"
        )
    path = Path(path)
    # A server polling the file (--model_config_file_poll_wait_seconds) must
    # never read it half-written.
    write_text(path, text_format.MessageToString(config))
    return path
