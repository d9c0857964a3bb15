"""Prepared data is keyed on file contents: rewritten files, linked folders
and another --manual-dir never bring back an old prepared set, and a run
folder does not resume on other data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from keras_unet_sr.cli import main
from keras_unet_sr.datasets.build import build_dataset
from keras_unet_sr.datasets.microscopy_sr.microscopy_sr_dataset_builder import (
    paired_tiff_config,
)


@pytest.fixture(autouse=True)
def digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def pairs(folder: Path, rng, count=3, frames=3) -> Path:
    for side in ("low", "high"):
        (folder / side).mkdir(parents=True)
    for i in range(count):
        low = rng.integers(100, 900, (frames, 24, 24)).astype(np.uint16)
        tifffile.imwrite(folder / "low" / f"im{i}.tif", low)
        high = rng.random((48, 48)).astype(np.float32)
        tifffile.imwrite(folder / "high" / f"im{i}.tif", high)
    return folder


def rewrite_keeping_size_and_times(path: Path, rng) -> None:
    """New pixels, same size, same modification time (as `touch -r` would)."""
    before = path.stat()
    old = tifffile.imread(path)
    tifffile.imwrite(path, rng.permutation(old.ravel()).reshape(old.shape))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_the_name_follows_the_content(tmp_path, rng):
    folder = pairs(tmp_path / "data", rng)
    first = paired_tiff_config(folder).name
    assert paired_tiff_config(folder).name == first  # cached, unchanged
    rewrite_keeping_size_and_times(folder / "low" / "im1.tif", rng)
    assert paired_tiff_config(folder).name != first


def test_linked_folders_are_followed(tmp_path, rng):
    real = pairs(tmp_path / "real", rng)
    linked = tmp_path / "linked"
    linked.mkdir()
    for side in ("low", "high"):
        (linked / side).symlink_to(real / side, target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)  # ends
    first = paired_tiff_config(linked).name
    rewrite_keeping_size_and_times(real / "high" / "im0.tif", rng)
    assert paired_tiff_config(linked).name != first


def test_build_dataset_never_shares_a_prepared_set(tmp_path, rng):
    data_dir = tmp_path / "tfds"
    names = set()
    for name in ("one", "two"):
        folder = pairs(tmp_path / name, rng, count=8)
        builder = build_dataset(
            "microscopy_sr", config="paired_tiff", data_dir=data_dir, manual_dir=folder
        )
        names.add(builder.info.full_name)
        assert builder.info.full_name.startswith("microscopy_sr/paired_tiff_")
    assert len(names) == 2


@pytest.mark.slow
def test_a_run_does_not_resume_on_other_data(tmp_path, rng, tfds_dir, capsys):
    folder = pairs(tmp_path / "data", rng)
    command = ["fit", "--smoke", "--data", str(folder), "--data-dir", tfds_dir]
    command += ["--out", str(tmp_path / "run")]
    assert main(command) == 0
    metrics = (tmp_path / "run" / "metrics.json").read_bytes()
    rewrite_keeping_size_and_times(folder / "low" / "im2.tif", rng)
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "holds a run trained on other data" in err
    assert (tmp_path / "run" / "metrics.json").read_bytes() == metrics
