"""Axes of raw stacks come from the file (ImageJ, OME, TIFF samples) or from
--axes, never from a guess that writes a wrong-shaped image."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.cli import main
from keras_unet_sr.files.tiff_io import read_frames

H, W, FRAMES = 40, 32, 15


@pytest.fixture(scope="module")
def sim3_model(tmp_path_factory):
    """A SIM3 model: it reads frames 0, 5, 10 of a 15-frame stack."""
    path = tmp_path_factory.mktemp("axes") / "sim3.keras"
    model = SuperResolutionUNet(
        frames=3, scale=2, depth=1, filters=4, frame_subset=(0, 5, 10)
    )
    model.save(path)
    return path


@pytest.fixture()
def stack(rng):
    return (rng.random((FRAMES, H, W)) * 1000).astype(np.uint16)  # (C, Y, X)


def predict(model, path, out, *extra):
    code = main(["predict", str(model), str(path), "--out", str(out), *extra])
    result = out / f"{path.stem}.tif"
    return code, tifffile.imread(result) if result.exists() else None


def test_metadata_and_axes_flag_read_the_same_image(sim3_model, stack, tmp_path):
    tifffile.imwrite(tmp_path / "cyx.tif", stack)  # no metadata: frames first
    channel_last = np.moveaxis(stack, 0, -1)
    tifffile.imwrite(tmp_path / "ome.tif", stack, ome=True, metadata={"axes": "CYX"})
    tifffile.imwrite(  # 15 samples per pixel: the TIFF tags say channel-last
        tmp_path / "samples.tif",
        channel_last,
        photometric="minisblack",
        planarconfig="contig",
    )
    tifffile.imwrite(tmp_path / "plain_yxc.tif", channel_last)
    for name in ("cyx", "ome", "samples"):
        frames = read_frames(tmp_path / f"{name}.tif")
        np.testing.assert_array_equal(frames, channel_last, err_msg=name)
    flagged = read_frames(tmp_path / "plain_yxc.tif", axes="YXC")
    np.testing.assert_array_equal(flagged, channel_last)

    code, expected = predict(sim3_model, tmp_path / "cyx.tif", tmp_path / "a")
    assert code == 0 and expected.shape == (2 * H, 2 * W)
    for name, extra in (("samples", ()), ("plain_yxc", ("--axes", "YXC"))):
        code, result = predict(
            sim3_model, tmp_path / f"{name}.tif", tmp_path / name, *extra
        )
        assert code == 0
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_an_ambiguous_channel_last_stack_is_one_line_and_no_output(
    sim3_model, stack, tmp_path, capsys
):
    tifffile.imwrite(tmp_path / "yxc.tif", np.moveaxis(stack, 0, -1))  # (40, 32, 15)
    code, result = predict(sim3_model, tmp_path / "yxc.tif", tmp_path / "out")
    assert code == 2 and result is None
    err = capsys.readouterr().err
    assert "yxc.tif: shape (40, 32, 15) and no axes metadata" in err
    assert "give --axes" in err


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (  # an RGB photo: 3 samples, not raw frames
            lambda p, rng: tifffile.imwrite(
                p, (rng.random((H, W, 3)) * 255).astype(np.uint8), photometric="rgb"
            ),
            "bad.tif: is an RGB colour image, not raw frames",
        ),
        (  # ImageJ time series of 3-channel stacks: two frame axes
            lambda p, rng: tifffile.imwrite(
                p,
                rng.random((4, 3, H, W)).astype(np.float32),
                imagej=True,
                metadata={"axes": "TCYX"},
            ),
            "axes TCYX (from its metadata) of shape (4, 3, 40, 32) hold 2 frame axes",
        ),
    ],
    ids=["rgb-photo", "imagej-two-frame-axes"],
)
def test_files_the_model_cannot_read_are_refused(
    sim3_model, tmp_path, capsys, rng, write, expected
):
    write(tmp_path / "bad.tif", rng)
    code, result = predict(sim3_model, tmp_path / "bad.tif", tmp_path / "out")
    assert code == 2 and result is None
    assert expected in capsys.readouterr().err


def test_axes_flag_with_the_wrong_letters_is_refused(
    sim3_model, stack, tmp_path, capsys
):
    tifffile.imwrite(tmp_path / "s.tif", stack)
    code, _ = predict(sim3_model, tmp_path / "s.tif", tmp_path / "o", "--axes", "YX")
    assert code == 2
    assert "--axes YX has 2 letters but the image has shape (15, 40, 32)" in (
        capsys.readouterr().err
    )


def test_an_image_larger_than_memory_is_named_and_the_rest_predicted(
    sim3_model, stack, tmp_path, capsys, monkeypatch
):
    """Checked from the header: a 4 KB compressed file that decodes to
    128 MiB, against a machine with 64 MiB free (the only stand-in: the free
    memory figure; reading, predicting and writing are real)."""
    from keras_unet_sr.files import tiff_io

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a_ok.tif", stack)
    tifffile.imwrite(
        folder / "b_huge.tif", np.zeros((2, 4096, 4096), np.float32), compression="zlib"
    )
    assert (folder / "b_huge.tif").stat().st_size < 1 << 20
    monkeypatch.setattr(tiff_io, "available_memory", lambda: 64 << 20)
    code = main(["predict", str(sim3_model), str(folder), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "b_huge.tif: decodes to 128 MiB, more than the 64 MiB of memory" in err
    assert (tmp_path / "o" / "a_ok.tif").exists()
    assert not (tmp_path / "o" / "b_huge.tif").exists()


def test_outputs_get_the_users_umask_not_the_temporary_files_mode(tmp_path):
    from keras_unet_sr.files.atomic import write_json
    from keras_unet_sr.files.tiff_io import write_tiff_atomic

    old = os.umask(0o027)
    try:
        write_tiff_atomic(tmp_path / "out.tif", np.ones((4, 4), np.float32))
        write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("out.tif", "report.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


def test_a_multi_series_file_says_which_series_it_reads(tmp_path, stack, caplog):
    path = tmp_path / "two_series.tif"
    tifffile.imwrite(path, stack)
    tifffile.imwrite(path, stack[:2], append=True)
    with caplog.at_level("INFO", logger="keras_unet_sr"):
        frames = read_frames(path)
    assert frames.shape == (H, W, FRAMES)
    assert "two_series.tif: 2 image series; reading the first" in caplog.text


def test_axes_and_pixel_size_round_trip_and_reach_the_output(
    sim3_model, stack, tmp_path
):
    from keras_unet_sr.files.tiff_io import pixel_size_nm, write_tiff_atomic

    write_tiff_atomic(tmp_path / "cyx.tif", stack.astype(np.float32), pixel_size_nm=65)
    with tifffile.TiffFile(tmp_path / "cyx.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "CYX"
    assert pixel_size_nm(tmp_path / "cyx.tif") == pytest.approx(65, rel=1e-6)
    np.testing.assert_array_equal(
        read_frames(tmp_path / "cyx.tif"), np.moveaxis(stack, 0, -1)
    )
    tifffile.imwrite(  # OME states it in micrometres
        tmp_path / "ome.tif",
        stack,
        ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 0.08, "PhysicalSizeY": 0.08},
    )
    assert pixel_size_nm(tmp_path / "ome.tif") == pytest.approx(80)

    code, _ = predict(sim3_model, tmp_path / "cyx.tif", tmp_path / "a")
    assert code == 0
    with tifffile.TiffFile(tmp_path / "a" / "cyx.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
    assert pixel_size_nm(tmp_path / "a" / "cyx.tif") == pytest.approx(32.5, rel=1e-6)

    tifffile.imwrite(tmp_path / "bare.tif", stack)  # states none: the flag
    code, _ = predict(
        sim3_model, tmp_path / "bare.tif", tmp_path / "b", "--pixel-size", "0.1um"
    )
    assert code == 0
    assert pixel_size_nm(tmp_path / "b" / "bare.tif") == pytest.approx(50, rel=1e-6)
    code, _ = predict(sim3_model, tmp_path / "bare.tif", tmp_path / "c")
    assert code == 0 and pixel_size_nm(tmp_path / "c" / "bare.tif") is None
