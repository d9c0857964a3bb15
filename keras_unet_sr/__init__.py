"""keras-unet-sr: U-Net super-resolution for fluorescence microscopy.

Public API: the model (`SuperResolutionUNet`), its loss (`SSIML1Loss`) and
metrics (`PSNR`, `SSIM`), CARE-style evaluation (`evaluate_prediction`), the
one normalization (`percentile_normalize`) and tiler (`tiled_predict`,
`Predictor`). Subpackages: `keras_unet_sr.datasets` (TFDS builder),
`keras_unet_sr.tuning` (keras-tuner), `keras_unet_sr.export` (TF-Serving
bundles and gRPC).

Attributes are imported on first use, so `keras-unet-sr --help` starts
without loading TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

# setup.cfg's package_dir installs these top-level folders as subpackages.
_SUBPACKAGE_FOLDERS = ("datasets", "tuning", "export")


class _CheckoutSubpackageFinder:
    """Maps `keras_unet_sr.<folder>` to `<checkout>/<folder>` in a source tree.

    Why: `python -c`/`python -m` from the repository root put the checkout's
    `keras_unet_sr/` ahead of the installed package on `sys.path`, and there
    the subpackages are siblings, not children. This is the same mapping
    `package_dir` makes at install time; only the three names are mapped, so
    `import datasets` still means HuggingFace's.
    """

    def __init__(self, checkout: Path):
        self.checkout = checkout

    def find_spec(self, fullname, path=None, target=None):
        parent, _, name = fullname.rpartition(".")
        if parent != __name__ or name not in _SUBPACKAGE_FOLDERS:
            return None
        init = self.checkout / name / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)]
        )


def _map_checkout_subpackages() -> None:
    checkout = Path(__file__).resolve().parent.parent
    # An installed copy sits in site-packages, which has no setup.cfg.
    if not (checkout / "setup.cfg").is_file():
        return
    if any(isinstance(f, _CheckoutSubpackageFinder) for f in sys.meta_path):
        return
    # First: an editable install of another checkout must not win over this one.
    sys.meta_path.insert(0, _CheckoutSubpackageFinder(checkout))


_map_checkout_subpackages()

# Modules whose import registers Keras serializables ("keras_unet_sr>...").
_SERIALIZABLES = (
    "keras_unet_sr.model.layers",
    "keras_unet_sr.model.unet",
    "keras_unet_sr.quality.losses",
    "keras_unet_sr.quality.metrics",
)


def _register_serializables() -> None:
    for name in _SERIALIZABLES:
        importlib.import_module(name)


class _RegisteringLoader:
    """Keras' own loader, plus our registration once Keras has executed."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name: str):  # resource readers and the like
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        sys.meta_path[:] = [
            f for f in sys.meta_path if type(f) is not _AfterKerasImport
        ]
        _register_serializables()


class _AfterKerasImport:
    """Registers our serializables as soon as `keras` is imported.

    Why: `keras.saving.load_model` finds "keras_unet_sr>SuperResolutionUNet"
    only in Keras' registry, which a class enters when its module runs. That
    must hold after a plain `import keras_unet_sr` (as with keras-hub), but
    importing Keras there would cost `keras-unet-sr --help` seconds. So the
    registration waits for whoever imports Keras first (at once if it already
    is): loading a model needs Keras imported anyway.
    """

    looking = False

    def find_spec(self, fullname, path=None, target=None):
        # `importlib.util.find_spec("keras")` (TensorFlow calls it) also gets
        # here without importing: stay until Keras actually executes.
        if fullname != "keras" or self.looking:
            return None
        self.looking = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self.looking = False
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


if "keras" in sys.modules:
    _register_serializables()
else:
    sys.meta_path.insert(0, _AfterKerasImport())

_EXPORTS = {
    "SuperResolutionUNet": "keras_unet_sr.model.unet",
    "PixelShuffle": "keras_unet_sr.model.layers",
    "InterpolatedFrameMean": "keras_unet_sr.model.layers",
    "SSIML1Loss": "keras_unet_sr.quality.losses",
    "PSNR": "keras_unet_sr.quality.metrics",
    "SSIM": "keras_unet_sr.quality.metrics",
    "evaluate_prediction": "keras_unet_sr.quality.evaluation",
    "percentile_normalize": "keras_unet_sr.data.normalization",
    "normalize": "keras_unet_sr.data.normalization",
    "denormalize": "keras_unet_sr.data.normalization",
    "TilingPlan": "keras_unet_sr.inference.tiling",
    "plan_tiling": "keras_unet_sr.inference.tiling",
    "plan_for_model": "keras_unet_sr.inference.tiling",
    "tiled_predict": "keras_unet_sr.inference.tiling",
    "Predictor": "keras_unet_sr.inference.predictor",
    "load_model": "keras_unet_sr.inference.predictor",
    "FitConfig": "keras_unet_sr.config",
    "fit": "keras_unet_sr.training.fit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    # Subpackages (e.g. `keras_unet_sr.quality`) stay reachable as attributes.
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
