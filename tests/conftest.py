"""Shared pytest setup: quiet TensorFlow, deterministic seeds, small helpers."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras
import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
DLSIM = os.path.join(SHARED_DATA, "dlsim-microtubules")


@pytest.fixture(autouse=True)
def _seed_and_reset():
    """Each test starts from the same seeds and a float32 policy."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
    """One TFDS data dir per test session: synthetic data is generated once."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture(scope="session")
def console_script() -> str:
    """The installed `keras-unet-sr` entry point of this environment."""
    import shutil
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "keras-unet-sr")
    return script if os.path.exists(script) else shutil.which("keras-unet-sr")


@pytest.fixture(scope="session")
def read_events():
    """The event-file reader below (test modules cannot import conftest)."""
    return _read_events


def _read_events(log_dir) -> dict[str, dict[str, list[int]]]:
    """`{tag: {"plugin": name, "steps": [...]}}` from all event files under log_dir."""
    import glob

    import tensorflow as tf

    found: dict = {}
    for path in glob.glob(
        os.path.join(str(log_dir), "**", "events.out.tfevents.*"), recursive=True
    ):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                entry = found.setdefault(
                    value.tag,
                    {"plugin": value.metadata.plugin_data.plugin_name, "steps": []},
                )
                entry["steps"].append(int(event.step))
    return found
