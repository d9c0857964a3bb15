"""The bad-input catalog: every command, every kind of bad input.

Each case must exit non-zero with one clear line that names the file (or
option) and the problem, print no traceback, and leave what was already
written intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.cli import main
from keras_unet_sr.errors import UserError

FRAMES, SCALE = 9, 2


def _stack(rng, frames=FRAMES, size=24):
    return rng.integers(100, 900, (frames, size, size)).astype(np.uint16)


def _pair_folder(root: Path, name: str, rng, count: int = 3) -> Path:
    folder = root / name
    (folder / "low").mkdir(parents=True)
    (folder / "high").mkdir()
    for i in range(count):
        tifffile.imwrite(folder / "low" / f"im{i}.tif", _stack(rng))
        tifffile.imwrite(
            folder / "high" / f"im{i}.tif",
            rng.random((24 * SCALE, 24 * SCALE)).astype(np.float32),
        )
    return folder


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Good and bad data, models and outputs, built once."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    w = {"root": root}
    w["good"] = _pair_folder(root, "good", rng)
    w["empty"] = root / "empty"
    w["empty"].mkdir()
    w["no_tiffs"] = root / "no_tiffs"
    (w["no_tiffs"] / "low").mkdir(parents=True)
    (w["no_tiffs"] / "high").mkdir()

    def variant(name, change):
        folder = _pair_folder(root, name, rng)
        change(folder)
        w[name] = folder

    variant("orphan_low", lambda f: (f / "high" / "im1.tif").unlink())
    variant(
        "broken_link",
        lambda f: (f / "low" / "im9.tif").symlink_to(f / "low" / "gone.tif"),
    )
    variant("orphan_high", lambda f: (f / "low" / "im2.tif").unlink())
    variant(
        "not_multiple",
        lambda f: tifffile.imwrite(
            f / "high" / "im1.tif", np.ones((50, 48), np.float32)
        ),
    )
    variant(
        "scale3",
        lambda f: [
            tifffile.imwrite(f / "high" / f"im{i}.tif", np.ones((72, 72), np.float32))
            for i in range(3)
        ],
    )
    variant(
        "scale1",
        lambda f: [
            tifffile.imwrite(f / "high" / f"im{i}.tif", np.ones((24, 24), np.float32))
            for i in range(3)
        ],
    )
    non_utf8 = os.fsdecode(os.fsencode(str(root)) + b"/caf\xe9")  # Latin-1 bytes
    shutil.copytree(w["good"], non_utf8)
    w["non_utf8"] = non_utf8
    (root / "empty_list.json").write_text('{"depth": []}')
    variant("fake_tif", lambda f: (f / "low" / "im0.tif").write_text("not a tiff"))
    variant("truncated", lambda f: _truncate(f / "low" / "im0.tif"))
    variant(
        "nan",
        lambda f: tifffile.imwrite(
            f / "high" / "im0.tif", np.full((48, 48), np.nan, np.float32)
        ),
    )
    variant(
        "mixed_frames",
        lambda f: tifffile.imwrite(f / "low" / "im1.tif", _stack(rng)[0]),
    )
    variant(
        "stack_as_target",
        lambda f: tifffile.imwrite(
            f / "high" / "im0.tif", np.ones((3, 48, 48), np.float32)
        ),
    )
    variant(
        "five_d",
        lambda f: tifffile.imwrite(
            f / "low" / "im0.tif", np.ones((2, 3, 9, 24, 24), np.uint16)
        ),
    )
    w["five_frames"] = root / "five_frames"
    (w["five_frames"] / "low").mkdir(parents=True)
    (w["five_frames"] / "high").mkdir()
    tifffile.imwrite(w["five_frames"] / "low" / "a.tif", _stack(rng, frames=5))
    tifffile.imwrite(w["five_frames"] / "high" / "a.tif", np.ones((48, 48), np.float32))

    images = root / "images"
    images.mkdir()
    tifffile.imwrite(images / "ok.tif", _stack(rng, size=40))
    tifffile.imwrite(images / "constant.tif", np.full((FRAMES, 40, 40), 7, np.uint16))
    tifffile.imwrite(images / "one_pixel.tif", _stack(rng, size=1))
    tifffile.imwrite(images / "smaller_than_a_tile.tif", _stack(rng, size=5))
    tifffile.imwrite(images / "five_frames.tif", _stack(rng, frames=5))
    tifffile.imwrite(images / "two_d.tif", _stack(rng)[0])
    tifffile.imwrite(images / "nan.tif", np.full((FRAMES, 8, 8), np.inf, np.float32))
    tifffile.imwrite(images / "five_d.tif", np.ones((2, 3, 9, 8, 8), np.uint16))
    extreme = rng.choice([-3e38, 3e38], (FRAMES, 16, 16)).astype(np.float32)
    tifffile.imwrite(images / "extreme.tif", extreme)
    (images / "fake.tif").write_text("not a tiff")
    shutil.copy(images / "ok.tif", images / "truncated.tif")
    _truncate(images / "truncated.tif")
    (images / "dangling.tif").symlink_to(images / "gone.tif")
    (images / "loop.tif").symlink_to(images / "loop.tif")
    (images / "folder.tif").mkdir()
    w["images"] = images
    w["linked_out"] = root / "linked_out"  # an output folder whose ok.tif is
    w["linked_out"].mkdir()  # a link to the input of that name
    (w["linked_out"] / "ok.tif").symlink_to(images / "ok.tif")

    model = SuperResolutionUNet(frames=FRAMES, scale=SCALE, depth=1, filters=4)
    w["model"] = root / "model.keras"
    model.save(w["model"])
    single = SuperResolutionUNet(frames=1, scale=SCALE, depth=1, filters=4)
    w["single_frame_model"] = root / "single.keras"
    single.save(w["single_frame_model"])
    w["corrupt_model"] = root / "corrupt.keras"
    w["corrupt_model"].write_bytes(os.urandom(3000))
    w["foreign_model"] = root / "foreign.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(
        w["foreign_model"]
    )
    w["corrupt_config"] = root / "corrupt.json"
    w["corrupt_config"].write_text('{"data": {"source": ')
    w["foreign_config"] = root / "foreign.json"
    w["foreign_config"].write_text(json.dumps({"name": "x", "layers": []}))
    for name, section, values in (
        ("string_tile", "train", {"tile": "big"}),
        ("zero_tiles", "train", {"tiles_per_image": 0}),
        ("zero_filters", "model", {"filters": 0}),
        ("half_depth", "model", {"depth": 2.5}),
        ("odd_normalization", "model", {"normalization": "group"}),
    ):
        w[f"{name}_config"] = root / f"{name}.json"
        w[f"{name}_config"].write_text(json.dumps({section: values}))
    w["a_file"] = root / "a_file"
    w["a_file"].write_text("already here")
    w["corrupt_bundle"] = root / "corrupt_bundle"
    (w["corrupt_bundle"] / "1").mkdir(parents=True)
    (w["corrupt_bundle"] / "1" / "saved_model.pb").write_bytes(b"junk")
    w["tfds"] = str(root / "tfds")
    return w


def fit_args(w, data, *extra):
    return ["fit", "--smoke", "--data", str(data), "--data-dir", w["tfds"], *extra]


def out(w, name):
    return ["--out", str(w["root"] / "outputs" / name)]


# (case id, argv from the world, substrings the error line must contain)
CATALOG = [
    # --- fit: data ---
    (
        "fit-missing",
        lambda w: fit_args(w, w["root"] / "missing") + out(w, "f1"),
        ["missing: no such folder"],
    ),
    (
        "fit-empty-folder",
        lambda w: fit_args(w, w["empty"]) + out(w, "f2"),
        ["empty: expected subfolders low/ and high/"],
    ),
    (
        "fit-no-tiffs",
        lambda w: fit_args(w, w["no_tiffs"]) + out(w, "f3"),
        ["no_tiffs: low/ and high/ contain no .tif/.tiff files"],
    ),
    (
        "fit-not-a-tiff",
        lambda w: fit_args(w, w["fake_tif"]) + out(w, "f4"),
        ["fake_tif/low/im0.tif: not a TIFF file"],
    ),
    (
        "fit-truncated",
        lambda w: fit_args(w, w["truncated"]) + out(w, "f5"),
        ["truncated/low/im0.tif: unreadable TIFF, truncated or corrupt"],
    ),
    (
        "fit-broken-link",
        lambda w: fit_args(w, w["broken_link"]) + out(w, "f6b"),
        ["broken_link/low/im9.tif: cannot be read: a broken link (to "],
    ),
    (
        "fit-low-without-high",
        lambda w: fit_args(w, w["orphan_low"]) + out(w, "f6"),
        ["orphan_low/low/im1.tif: has no high/ partner"],
    ),
    (
        "fit-high-without-low",
        lambda w: fit_args(w, w["orphan_high"]) + out(w, "f7"),
        ["orphan_high/high/im2.tif: has no low/ partner"],
    ),
    (
        "fit-not-a-multiple",
        lambda w: fit_args(w, w["not_multiple"]) + out(w, "f8"),
        ["not_multiple/high/im1.tif: high image 50x48 is not an integer multiple"],
    ),
    (
        "fit-nan",
        lambda w: fit_args(w, w["nan"]) + out(w, "f9"),
        ["nan/high/im0.tif: contains 2304 NaN/Inf pixels"],
    ),
    (
        "fit-2d-among-stacks",
        lambda w: fit_args(w, w["mixed_frames"]) + out(w, "f10"),
        ["mixed_frames/low/im", "frame(s), but", "all low images need the same"],
    ),
    (
        "fit-stack-as-target",
        lambda w: fit_args(w, w["stack_as_target"]) + out(w, "f11"),
        ["stack_as_target/high/im0.tif: a high (target) image must be 2-D"],
    ),
    (
        "fit-5d-stack",
        lambda w: fit_args(w, w["five_d"]) + out(w, "f12"),
        ["five_d/low/im0.tif: expected an image (H, W) or a stack of frames"],
    ),
    (
        "fit-frame-count",
        lambda w: fit_args(w, w["good"], "--frames", "3") + out(w, "f13"),
        ["--frames 3:", "has 9 frame(s); pick 3 of them with e.g. --frames 0,3,6"],
    ),
    (
        "fit-frame-subset",
        lambda w: fit_args(w, w["good"], "--frames", "0,5,12") + out(w, "f14"),
        ["frame(s) [12] do not exist"],
    ),
    # --- fit: config and output ---
    (
        "fit-corrupt-config",
        lambda w: ["fit", "--config", str(w["corrupt_config"]), *out(w, "f15")],
        ["corrupt.json: not a JSON config"],
    ),
    (
        "fit-foreign-config",
        lambda w: ["fit", "--config", str(w["foreign_config"]), *out(w, "f16")],
        ["foreign.json: unknown section(s)"],
    ),
    # Every value is checked on load, by the rules declared once in the config.
    *[
        (
            f"fit-config-{name}",
            lambda w, name=name: [
                "fit",
                "--config",
                str(w[f"{name}_config"]),
                *out(w, f"c-{name}"),
            ],
            [f"{name}.json: {key}: {problem}"],
        )
        for name, key, problem in (
            ("string_tile", "train.tile", "'big' is not an integer (>= 1)"),
            ("zero_tiles", "train.tiles_per_image", "0 is out of range (>= 1)"),
            ("zero_filters", "model.filters", "0 is out of range (>= 1)"),
            ("half_depth", "model.depth", "2.5 is not an integer (0..6)"),
            (
                "odd_normalization",
                "model.normalization",
                "'group' is not one of none, batch, layer",
            ),
        )
    ],
    *[
        (
            f"fit-flag{flag}",
            lambda w, flag=flag, value=value: (
                fit_args(w, w["good"], flag, value) + out(w, f"flag{flag}")
            ),
            [f"{flag}: {problem}"],
        )
        for flag, value, problem in (
            ("--depth", "-1", "-1 is out of range (0..6)"),
            ("--filters", "-3", "-3 is out of range (>= 1)"),
            ("--dropout", "2", "2.0 is out of range (in [0, 1))"),
            ("--tile", "0", "0 is out of range (>= 1)"),
            ("--lr", "0", "0.0 is out of range (> 0)"),
            ("--percentiles", "99,1", "[99.0, 1.0] must be increasing"),
        )
    ],
    (
        "fit-out-is-a-file",
        lambda w: fit_args(w, w["good"], "--out", str(w["a_file"])),
        ["a_file: --out exists and is not a folder"],
    ),
    (
        "fit-out-unwritable",
        lambda w: fit_args(w, w["good"], "--out", "/proc/kus/run"),
        ["/proc/kus/run"],
    ),
    (
        "fit-scale-3",
        lambda w: fit_args(w, w["scale3"]) + out(w, "f3x"),
        ["scale3/high/im0.tif: high image 72x72 is 3x the low image 24x24"],
    ),
    (
        "fit-non-utf8-folder",
        lambda w: fit_args(w, w["non_utf8"]) + out(w, "fu"),
        ["caf\\xe9'", "not valid UTF-8"],
    ),
    # --- tune ---
    (
        "tune-empty-choice-list",
        lambda w: [
            "tune",
            *fit_args(w, w["good"])[1:],
            "--space-file",
            str(w["root"] / "empty_list.json"),
            *out(w, "t0"),
        ],
        ["empty_list.json: depth: an empty list of values"],
    ),
    (
        "tune-high-without-low",
        lambda w: (
            [
                "tune",
                "--smoke",
                "--data",
                str(w["orphan_high"]),
                "--data-dir",
                w["tfds"],
                *out(w, "t1"),
            ]
        ),
        ["orphan_high/high/im2.tif: has no low/"],
    ),
    (
        "tune-out-is-a-file",
        lambda w: [
            "tune",
            "--smoke",
            "--data-dir",
            w["tfds"],
            "--out",
            str(w["a_file"]),
        ],
        ["a_file"],
    ),
    # --- predict ---
    (
        "predict-missing-model",
        lambda w: (
            [
                "predict",
                str(w["root"] / "no.keras"),
                str(w["images"] / "ok.tif"),
                *out(w, "p1"),
            ]
        ),
        ["no.keras: no such model file"],
    ),
    (
        "predict-corrupt-model",
        lambda w: (
            [
                "predict",
                str(w["corrupt_model"]),
                str(w["images"] / "ok.tif"),
                *out(w, "p2"),
            ]
        ),
        ["corrupt.keras: not a .keras model"],
    ),
    (
        "predict-foreign-model",
        lambda w: (
            [
                "predict",
                str(w["foreign_model"]),
                str(w["images"] / "ok.tif"),
                *out(w, "p3"),
            ]
        ),
        ["foreign.keras: is a Sequential, not a keras-unet-sr"],
    ),
    (
        "predict-missing-input",
        lambda w: (
            ["predict", str(w["model"]), str(w["root"] / "nope.tif"), *out(w, "p4")]
        ),
        ["nope.tif: no such file or folder"],
    ),
    (
        "predict-empty-folder",
        lambda w: ["predict", str(w["model"]), str(w["empty"]), *out(w, "p5")],
        ["empty: folder has no .tif/.tiff files"],
    ),
    (
        "predict-no-glob-match",
        lambda w: (
            ["predict", str(w["model"]), str(w["root"] / "*.tiff"), *out(w, "p6")]
        ),
        ["*.tiff: no file matches this pattern"],
    ),
    (
        "predict-out-is-a-file",
        lambda w: [
            "predict",
            str(w["model"]),
            str(w["images"] / "ok.tif"),
            "--out",
            str(w["a_file"]),
        ],
        ["a_file: --out exists and is not a folder"],
    ),
    (
        "predict-out-unwritable",
        lambda w: [
            "predict",
            str(w["model"]),
            str(w["images"] / "ok.tif"),
            "--out",
            "/proc/kus/out",
        ],
        ["/proc/kus/out: cannot create output folder"],
    ),
    (
        "predict-2d-for-a-stack-model",
        lambda w: (
            ["predict", str(w["model"]), str(w["images"] / "two_d.tif"), *out(w, "p7")]
        ),
        ["two_d.tif: is a 2-D image (1 frame); the model takes 9 frame(s)"],
    ),
    (
        "predict-stack-for-a-2d-model",
        lambda w: (
            [
                "predict",
                str(w["single_frame_model"]),
                str(w["images"] / "ok.tif"),
                *out(w, "p8"),
            ]
        ),
        ["ok.tif: is 9 frames; the model takes 1 frame(s)"],
    ),
    (
        "predict-tile-below-halo",
        lambda w: (
            [
                "predict",
                str(w["model"]),
                str(w["images"] / "ok.tif"),
                "--overlap",
                "2",
                *out(w, "p9"),
            ]
        ),
        ["tiling: overlap 2 is smaller than the model's halo"],
    ),
    # --- evaluate ---
    (
        "evaluate-truncated",
        lambda w: ["evaluate", str(w["model"]), "--data", str(w["truncated"])],
        ["truncated/low/im0.tif: unreadable TIFF"],
    ),
    (
        "evaluate-not-a-multiple",
        lambda w: ["evaluate", str(w["model"]), "--data", str(w["not_multiple"])],
        ["not_multiple/high/im1.tif: high image 50x48"],
    ),
    (
        "evaluate-low-without-high",
        lambda w: ["evaluate", str(w["model"]), "--data", str(w["orphan_low"])],
        ["orphan_low/low/im1.tif: has no high/ partner"],
    ),
    (
        "evaluate-frame-count",
        lambda w: ["evaluate", str(w["model"]), "--data", str(w["five_frames"])],
        ["a: is 5 frames; the model takes 9 frame(s)"],
    ),
    (
        "evaluate-missing-data",
        lambda w: ["evaluate", str(w["model"]), "--data", str(w["root"] / "gone")],
        ["gone: no such folder"],
    ),
    (
        "evaluate-foreign-model",
        lambda w: ["evaluate", str(w["foreign_model"]), "--data", str(w["good"])],
        ["foreign.keras: is a Sequential"],
    ),
    (
        "evaluate-scale-2-model-on-scale-1-data",
        lambda w: ["evaluate", str(w["model"]), "--data", str(w["scale1"])],
        ["im0: target 24x24 is not 2x the input 24x24"],
    ),
    (
        "evaluate-report-in-missing-folder",
        lambda w: [
            "evaluate",
            str(w["model"]),
            "--data",
            str(w["good"]),
            "--out",
            str(w["a_file"] / "r.json"),
        ],
        ["does not exist"],
    ),
    (
        "evaluate-report-type",
        lambda w: [
            "evaluate",
            str(w["model"]),
            "--data",
            str(w["good"]),
            "--out",
            str(w["root"] / "r.txt"),
        ],
        ["must be a .json or .csv"],
    ),
    # --- export ---
    (
        "export-corrupt-model",
        lambda w: ["export", str(w["corrupt_model"]), *out(w, "e1")],
        ["corrupt.keras: not a .keras model"],
    ),
    (
        "export-foreign-model",
        lambda w: ["export", str(w["foreign_model"]), *out(w, "e2")],
        ["foreign.keras: is a Sequential"],
    ),
    (
        "export-out-is-a-file",
        lambda w: ["export", str(w["model"]), "--out", str(w["a_file"])],
        ["a_file: --out exists and is not a folder"],
    ),
    # export --version 0: refused by the flag (the numeric-flag test below)
    (
        "export-bad-warmup-size",
        lambda w: ["export", str(w["model"]), "--warmup-sizes", "12xq", *out(w, "e4")],
        ["--warmup-sizes 12xq: expected HxW"],
    ),
    # --- serve ---
    (
        "serve-missing",
        lambda w: ["serve", str(w["root"] / "nobundle"), "--port", "0"],
        ["nobundle: no such bundle folder"],
    ),
    (
        "serve-a-file",
        lambda w: ["serve", str(w["a_file"]), "--port", "0"],
        ["a_file: is a file; expected a bundle folder"],
    ),
    (
        "serve-no-versions",
        lambda w: ["serve", str(w["empty"]), "--port", "0"],
        ["no version directories"],
    ),
    (
        "serve-corrupt-version",
        lambda w: ["serve", str(w["corrupt_bundle"]), "--port", "0"],
        ["corrupt_bundle", "version 1", "Cannot parse"],
    ),
    (
        "predict-bad-pixel-size",
        lambda w: [
            "predict",
            str(w["model"]),
            str(w["images"] / "ok.tif"),
            "--pixel-size",
            "65 parsecs",
            *out(w, "px"),
        ],
        ["--pixel-size 65 parsecs: expected a size such as 65nm"],
    ),
    # --- predict: outputs that are inputs ---
    (
        "predict-out-is-the-input-folder",
        lambda w: [
            "predict",
            str(w["model"]),
            str(w["images"] / "ok.tif"),
            "--out",
            str(w["images"]),
        ],
        ["images/ok.tif: is the input", "would overwrite it"],
    ),
    (
        "predict-out-links-to-an-input",
        lambda w: [
            "predict",
            str(w["model"]),
            str(w["images"]),
            "--out",
            str(w["linked_out"]),
        ],
        ["linked_out/ok.tif: is the input", "images/ok.tif"],
    ),
    # --- predict --server ---
    (
        "predict-server-unreachable",
        lambda w: (
            [
                "predict",
                "m",
                str(w["images"] / "ok.tif"),
                "--server",
                "127.0.0.1:1",
                *out(w, "s1"),
            ]
        ),
        ["cannot reach TF-Serving at 127.0.0.1:1"],
    ),
]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "tfds" not in p.parts and "outputs" not in p.parts
    }


@pytest.mark.parametrize(
    ("argv", "expected"), [c[1:] for c in CATALOG], ids=[c[0] for c in CATALOG]
)
def test_bad_input_is_one_clear_line_and_damages_nothing(world, argv, expected, capsys):
    before = _digest(world["root"])
    command = argv(world)
    code = main(command)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    problem = [line for line in lines if all(text in line for text in expected)]
    assert problem, f"no line with {expected!r} in:\n{err}"
    assert _digest(world["root"]) == before  # inputs and earlier outputs intact


def test_predicting_a_folder_of_good_and_bad_files(world, capsys, tmp_path):
    """Bad files are skipped and listed, the good ones are written, earlier
    results stay, and the exit code says something failed."""
    out_dir = tmp_path / "predictions"
    out_dir.mkdir()
    (out_dir / "earlier.tif").write_bytes(b"an earlier result")
    code = main(
        ["predict", str(world["model"]), str(world["images"]), "--out", str(out_dir)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    for name, problem in {
        "fake.tif": "not a TIFF file",
        "truncated.tif": "unreadable TIFF, truncated or corrupt",
        "nan.tif": "NaN/Inf pixels",
        "five_d.tif": "got a 5-D array",
        "five_frames.tif": "is 5 frames; the model takes 9 frame(s)",
        "two_d.tif": "is a 2-D image (1 frame)",
        "extreme.tif": "prediction has NaN/Inf values",
        "dangling.tif": "skipped, a broken link (to ",
        "loop.tif": "skipped, a link loop",
        "folder.tif": "skipped, a folder named like a TIFF",
    }.items():
        assert any(name in line and problem in line for line in err.splitlines()), name
    written = {p.name for p in out_dir.glob("*.tif")}
    assert written == {
        "earlier.tif",
        "ok.tif",
        "constant.tif",
        "one_pixel.tif",
        "smaller_than_a_tile.tif",
    }
    assert (out_dir / "earlier.tif").read_bytes() == b"an earlier result"
    for name, shape in {
        "constant.tif": (80, 80),
        "one_pixel.tif": (2, 2),
        "smaller_than_a_tile.tif": (10, 10),
    }.items():
        result = tifffile.imread(out_dir / name)
        assert result.shape == shape and result.dtype == np.float32
        assert np.all(np.isfinite(result))
    assert np.allclose(tifffile.imread(out_dir / "constant.tif"), 7.0)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files


def test_a_failed_fit_does_not_touch_an_existing_run(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(fit_args(world, world["good"], "--out", str(run))) == 0
    before = _digest(run)
    assert (
        main(fit_args(world, world["good"], "--loss-alpha", "0.3", "--out", str(run)))
        == 2
    )
    assert "holds a run with a different config" in capsys.readouterr().err
    assert main(fit_args(world, world["truncated"], "--out", str(run))) == 2
    assert _digest(run) == before


def test_debug_shows_the_traceback(world, capsys):
    with pytest.raises(UserError, match="no such"):
        main(
            [
                "--debug",
                "fit",
                "--smoke",
                "--data",
                str(world["root"] / "missing"),
                "--data-dir",
                world["tfds"],
                "--out",
                str(world["root"] / "outputs" / "d"),
            ]
        )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "b", "--port", "70000"], "--port: 70000 is out of range (from 0"),
        (["serve", "b", "--rest-port", "-1"], "--rest-port: -1 is out of range"),
        (["serve", "b", "--max-message-mb", "0"], "--max-message-mb: 0 is out of"),
        (["serve", "b", "--max-message-mb", "4096"], "(from 1 to 2047)"),
        (["serve", "b", "--workers", "0"], "--workers: 0 is out of range (>= 1)"),
        (["predict", "m", "x.tif", "--out", "o", "--tile", "0"], "--tile: 0 is out"),
        (["predict", "m", "x.tif", "--out", "o", "--batch", "-2"], "--batch: -2"),
        (["export", "m", "--out", "o", "--version", "0"], "--version: 0 is out"),
        (["serve", "b", "--port", "8e3"], "--port: '8e3' is not an integer"),
        (["serve", "b", "--poll-seconds", "nan"], "nan is not a finite number"),
        (["fit", "--cpu-replicas", "0"], "--cpu-replicas: 0 is out of range"),
    ],
)
def test_numeric_flags_out_of_range_are_refused_before_anything_runs(
    argv, expected, capsys
):
    """Ports never wrap around, limits are never zero or negative."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err
