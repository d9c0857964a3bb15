"""Client for TensorFlow Serving's REST API (`http://HOST:8501`).

Works against the C++ `tensorflow_model_server --rest_api_port` and against
`keras_unet_sr.export.rest_server`. Requests use the columnar `inputs` form
(one tensor, no per-example split); bodies are encoded and decoded with
orjson. Every failure is raised as a `RestError` with a one-line message
naming the server and the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import requests

from keras_unet_sr.errors import UserError
from keras_unet_sr.export import serving_protocol


class RestError(Exception):
    """A failed REST call.

    Attributes:
        status: The HTTP status (None when the server could not be reached).
    """

    def __init__(self, message: str, status: int | None):
        super().__init__(message)
        self.status = status


class RestClient:
    """Calls one model on a TF-Serving REST endpoint.

    Args:
        url: "http://host:port" of the server.
        model_name: The model's name on the server.
        timeout: Seconds allowed per call.
    """

    def __init__(self, url: str, model_name: str, *, timeout: float = 600):
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.timeout = timeout
        self._session = requests.Session()
        self._output_names: dict[str, list[str]] = {}

    def _path(self, version: int | None) -> str:
        path = f"{self.url}/v1/models/{self.model_name}"
        return path if version is None else f"{path}/versions/{version}"

    def _call(self, method: str, url: str, body: bytes | None = None) -> Any:
        what = f"{method} {url}"
        try:
            response = self._session.request(
                method,
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.ConnectionError as error:
            raise RestError(
                f"cannot reach TF-Serving REST at {self.url} for model "
                f"'{self.model_name}': {serving_protocol.first_line(str(error))}",
                None,
            ) from None
        except requests.Timeout:
            raise RestError(
                f"no answer after {self.timeout:g} s: {what}", None
            ) from None
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = {"error": serving_protocol.first_line(response.text)}
        if response.status_code != 200:
            detail = answer.get("error") if isinstance(answer, dict) else None
            raise RestError(
                f"model '{self.model_name}' on {self.url} answered HTTP "
                f"{response.status_code}: {detail or response.reason}",
                response.status_code,
            )
        return answer

    def predict(
        self,
        inputs: Mapping[str, npt.ArrayLike],
        signature_name: str = serving_protocol.DEFAULT_SIGNATURE,
        version: int | None = None,
    ) -> dict[str, Any]:
        """Calls a signature with columnar `inputs`.

        Returns:
            Output key to array (numbers) or nested list (strings).

        Raises:
            RestError: If the call fails.
        """
        body = orjson.dumps(
            {
                "signature_name": signature_name,
                "inputs": {
                    key: np.ascontiguousarray(value) for key, value in inputs.items()
                },
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        answer = self._call("POST", f"{self._path(version)}:predict", body)
        outputs = answer.get("outputs")
        names = self._outputs_of(signature_name, version)
        if len(names) == 1:  # TF-Serving answers a lone output bare
            outputs = {names[0]: outputs}
        return {key: _from_json(value) for key, value in outputs.items()}

    def _outputs_of(self, signature_name: str, version: int | None) -> list[str]:
        if signature_name not in self._output_names:
            signatures = self.metadata(version)["metadata"]["signature_def"]
            signature = signatures["signature_def"].get(signature_name, {})
            self._output_names[signature_name] = sorted(signature.get("outputs", {}))
        return self._output_names[signature_name]

    def status(self, version: int | None = None) -> list[dict[str, Any]]:
        """The model's versions, as GetModelStatus's `model_version_status`."""
        return self._call("GET", self._path(version))["model_version_status"]

    def metadata(self, version: int | None = None) -> dict[str, Any]:
        """The model spec and the signature definitions, as proto JSON."""
        return self._call("GET", f"{self._path(version)}/metadata")

    def close(self) -> None:
        self._session.close()


def _from_json(value: Any) -> Any:
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


class RestBackend:
    """Sends each image to TF-Serving over REST (the bundle's signatures)."""

    def __init__(self, url: str, model_name: str):
        self.client = RestClient(url, model_name)
        try:
            info = self.client.predict({}, signature_name="metadata")
        except RestError as error:
            raise UserError(str(error)) from error
        self.frames = int(info["frames"])
        self.frame_subset = tuple(int(f) for f in info["frame_subset"]) or None
        self.description = f"model '{model_name}' on {url} (REST)"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        signature, image = serving_protocol.bundle_signature(image)
        try:
            output = self.client.predict({"image": image}, signature_name=signature)
        except RestError as error:
            raise UserError(str(error)) from error
        return output["sr_image"]
