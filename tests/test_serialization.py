"""Saved models keep loading: a `model.keras` written by keras-unet-sr 0.1.0
before the package was reorganized, the custom layers on their own, and
loading after a plain `import keras_unet_sr`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_unet_sr import InterpolatedFrameMean, PixelShuffle, SuperResolutionUNet
from keras_unet_sr.inference.predictor import Predictor, load_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_MODEL = FIXTURES / "unet_v0_1_0.keras"


def test_a_model_saved_before_the_reorganization_predicts_identically():
    """The fixture was saved by the 0.1.0 layout (`keras_unet_sr.unet`) with
    random weights; its prediction on a fixed raw stack (made on an AVX-512
    machine) was saved with it."""
    model = load_model(str(OLD_MODEL))
    assert isinstance(model, SuperResolutionUNet)
    assert model.frame_subset == (0, 2, 4) and model.scale == 2
    image = np.load(FIXTURES / "unet_v0_1_0_input.npy")
    expected = np.load(FIXTURES / "unet_v0_1_0_output.npy")
    assert expected.std() > 1.0  # the weights do something
    # Identical up to float32 rounding: oneDNN's AVX2 and AVX-512 kernels sum
    # in different orders (measured 2e-7 relative between the two classes).
    np.testing.assert_allclose(Predictor(model)(image), expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "layer",
    [
        PixelShuffle(2, name="shuffle"),
        InterpolatedFrameMean(scale=2, interpolation="bicubic", name="mean"),
        InterpolatedFrameMean(scale=1, name="mean1"),
    ],
    ids=["pixel_shuffle", "frame_mean_x2", "frame_mean_x1"],
)
def test_custom_layers_round_trip(layer, tmp_path, rng):
    frames = 4 if isinstance(layer, PixelShuffle) else 3
    inputs = keras.Input((8, 6, frames))
    model = keras.Model(inputs, layer(inputs))
    x = rng.random((2, 8, 6, frames), dtype=np.float32)
    model.save(tmp_path / "layer.keras")
    loaded = keras.saving.load_model(tmp_path / "layer.keras", safe_mode=True)
    restored = loaded.layers[-1]
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))
    # from_config alone, as Keras' deserializer does it.
    clone = type(layer).from_config(layer.get_config())
    np.testing.assert_array_equal(clone(x), layer(x))


@pytest.mark.parametrize(
    "imports",
    [
        "import keras_unet_sr; import keras",
        "import keras; import keras_unet_sr",
        "import keras_unet_sr; import tensorflow; import keras",
    ],
)
def test_import_keras_unet_sr_registers_the_model(imports, tmp_path):
    """A fresh interpreter: `keras.saving.load_model` finds our classes after
    importing the package alone, whichever of the two is imported first."""
    code = (
        f"{imports}\n"
        f"model = keras.saving.load_model({str(OLD_MODEL)!r}, safe_mode=True)\n"
        "print(type(model).__name__)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("SuperResolutionUNet")


def test_the_cli_does_not_import_keras_to_start():
    code = (
        "import sys\n"
        "from keras_unet_sr.cli import build_parser\n"
        "build_parser()\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False"], result.stderr[-2000:]
