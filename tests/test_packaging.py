"""Packaging: subpackages live inside keras_unet_sr, nothing shadows
HuggingFace's `datasets`, the wheel ships the TFDS metadata, the console
script and the folder-style TFDS build work."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, cwd, pythonpath: str | None = None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def fake_huggingface(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "datasets").mkdir()
    (root / "datasets" / "__init__.py").write_text("FAKE_HUGGINGFACE = True\n")
    return root


# Dropping the editable-install finder makes an editable venv behave like a
# `pip install .` one, where a `python -c` at the repository root imports the
# checkout's `keras_unet_sr/` (whose subpackages are siblings) instead.
DROP_EDITABLE_FINDER = (
    "import sys\n"
    "sys.meta_path[:] = [\n"
    "    f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
)


@pytest.mark.parametrize("where", ["elsewhere", "repo_root", "repo_root_no_finder"])
def test_top_level_datasets_is_never_ours(fake_huggingface, tmp_path, where):
    cwd = tmp_path if where == "elsewhere" else REPO_ROOT
    code = DROP_EDITABLE_FINDER if where == "repo_root_no_finder" else ""
    code += (
        "import keras_unet_sr.datasets as ours, datasets, tensorflow_datasets\n"
        "assert ours.__name__ == 'keras_unet_sr.datasets'\n"
        "assert datasets.FAKE_HUGGINGFACE, datasets.__file__\n"
        "import keras_unet_sr.tuning, keras_unet_sr.export\n"
        "print(datasets.__file__)"
    )
    result = run_python(code, cwd, pythonpath=str(fake_huggingface))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(fake_huggingface))


def test_without_huggingface_the_project_folder_is_not_importable_as_datasets(tmp_path):
    code = (
        "try:\n    import datasets\nexcept ModuleNotFoundError:\n    print('absent')\n"
        "else:\n    print(datasets.__file__)"
    )
    result = run_python(code, REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not result.stdout.strip().startswith(str(REPO_ROOT / "datasets"))


def test_wheel_holds_one_package_with_the_tfds_metadata(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("keras_unet_sr-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"keras_unet_sr", next(t for t in tops if t.endswith(".dist-info"))}
    builder = "keras_unet_sr/datasets/microscopy_sr/"
    for expected in (
        "keras_unet_sr/datasets/__init__.py",
        "keras_unet_sr/tuning/__init__.py",
        "keras_unet_sr/export/__init__.py",
        builder + "microscopy_sr_dataset_builder.py",
        builder + "microscopy_sr_dataset_builder_test.py",
        builder + "README.md",
        builder + "CITATIONS.bib",
        builder + "TAGS.txt",
        builder + "dummy_data/low/cell_0.tif",
    ):
        assert expected in names, expected
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "keras-unet-sr = keras_unet_sr.cli:main" in entry_points


def test_console_script_answers_help(console_script):
    result = subprocess.run([console_script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("fit", "build-dataset"):
        assert command in result.stdout


def test_builder_is_registered_on_import_and_buildable_as_a_folder(tmp_path):
    """The package registers `microscopy_sr`; the folder builds like `tfds build
    datasets/microscopy_sr`, but with download_and_prepare (no apache-beam)."""
    folder = REPO_ROOT / "datasets" / "microscopy_sr"
    code = (
        "import tensorflow_datasets as tfds, keras_unet_sr.datasets\n"
        "assert 'microscopy_sr' in tfds.list_builders(with_community_datasets=False)\n"
        "from keras_unet_sr.datasets.build import build_dataset\n"
        f"b = build_dataset({str(folder)!r}, "
        f"config='paired_tiff', data_dir={str(tmp_path)!r}, "
        f"manual_dir={str(folder / 'dummy_data')!r})\n"
        "print(type(b).__module__, dict(b.info.metadata), "
        "{k: v.num_examples for k, v in b.info.splits.items()})"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("microscopy_sr.microscopy_sr_dataset_builder")
    assert (
        "'frames': 5" in last
        and "'scale': 2" in last
        and "'train': 6" in last
        and "'validation': 6" in last
    )
