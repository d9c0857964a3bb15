"""TFDS dataset builders, installed as `keras_unet_sr.datasets`.

Importing this package registers the `microscopy_sr` builder with TFDS.
"""

if __name__ == "datasets":
    # Reached as a top-level `datasets` because Python started in the project
    # root. Never shadow HuggingFace's `datasets` (TFDS imports it): hand the
    # import over to the next `datasets` on sys.path, if there is one.
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec("datasets", _path)
    if _spec is None or _spec.loader is None:
        del sys.modules["datasets"]
        raise ModuleNotFoundError("No module named 'datasets'", name="datasets")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["datasets"] = _module
    _spec.loader.exec_module(_module)
else:
    from keras_unet_sr.datasets.microscopy_sr import MicroscopySR

    __all__ = ["MicroscopySR"]
