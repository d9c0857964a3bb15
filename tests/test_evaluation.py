"""CARE-style evaluation: percentile-normalized reference, affine-fitted prediction."""

from __future__ import annotations

import numpy as np
import pytest

from keras_unet_sr import evaluate_prediction


@pytest.fixture
def pair(rng):
    reference = np.zeros((64, 48), np.float32)
    reference[10:20, 5:40] = 500.0
    reference[30:50, 20:25] = 800.0
    reference += 100.0
    prediction = reference + rng.normal(0, 40, reference.shape).astype(np.float32)
    return prediction, reference


@pytest.mark.parametrize(("scale", "offset"), [(3.0, -50.0), (0.001, 7.0), (1.0, 1e4)])
def test_scores_are_invariant_to_an_affine_change_of_the_prediction(
    pair, scale, offset
):
    prediction, reference = pair
    base = evaluate_prediction(prediction, reference)
    changed = evaluate_prediction(prediction * scale + offset, reference)
    for name in ("psnr", "ssim", "nrmse"):
        assert changed[name] == pytest.approx(base[name], rel=1e-4, abs=1e-5)


def test_perfect_prediction_scores_perfectly(pair):
    _, reference = pair
    scores = evaluate_prediction(reference * 2 + 1, reference)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert scores["nrmse"] == pytest.approx(0.0, abs=1e-5)
    assert scores["psnr"] > 60


def test_more_noise_scores_worse(pair, rng):
    prediction, reference = pair
    noisier = prediction + rng.normal(0, 80, reference.shape).astype(np.float32)
    good, bad = (
        evaluate_prediction(prediction, reference),
        evaluate_prediction(noisier, reference),
    )
    assert bad["psnr"] < good["psnr"]
    assert bad["ssim"] < good["ssim"]
    assert bad["nrmse"] > good["nrmse"]


def test_multichannel_and_shape_mismatch(rng):
    reference = rng.random((32, 32, 2)).astype(np.float32)
    assert evaluate_prediction(reference, reference)["ssim"] == pytest.approx(
        1.0, abs=1e-5
    )
    with pytest.raises(ValueError, match="shape"):
        evaluate_prediction(reference[:16], reference)


def test_constant_prediction_does_not_divide_by_zero(pair):
    _, reference = pair
    scores = evaluate_prediction(np.full_like(reference, 5.0), reference)
    assert all(np.isfinite(list(scores.values())))


@pytest.fixture(scope="module")
def calibrated_pairs(tmp_path_factory):
    """A 1-frame x2 model and two pairs whose low images state 65 nm pixels."""
    import tifffile

    from keras_unet_sr import SuperResolutionUNet

    root = tmp_path_factory.mktemp("calibrated")
    (root / "data" / "low").mkdir(parents=True)
    (root / "data" / "high").mkdir()
    rng = np.random.default_rng(5)
    ky = np.fft.fftfreq(96)[:, np.newaxis] * 2
    kx = np.fft.fftfreq(96)[np.newaxis, :] * 2
    for name in ("a", "b"):
        spectrum = np.fft.fft2(rng.standard_normal((96, 96)))
        spectrum[np.hypot(ky, kx) > 0.6] = 0  # a band-limited target
        high = np.real(np.fft.ifft2(spectrum)).astype(np.float32) + 5
        low = high.reshape(48, 2, 48, 2).mean((1, 3)) * 1000
        tifffile.imwrite(
            root / "data" / "low" / f"{name}.tif",
            low.astype(np.uint16),
            imagej=True,
            metadata={"unit": "um"},
            resolution=(1 / 0.065, 1 / 0.065),
        )
        tifffile.imwrite(root / "data" / "high" / f"{name}.tif", high)
    SuperResolutionUNet(frames=1, scale=2, depth=1, filters=4).save(
        root / "model.keras"
    )
    return root


def test_evaluate_reports_resolution_in_nm_from_the_files(calibrated_pairs, capsys):
    import csv
    import json

    from keras_unet_sr.cli import main

    root = calibrated_pairs
    report, table = root / "scores.json", root / "scores.csv"
    argv = ["evaluate", str(root / "model.keras"), "--data", str(root / "data")]
    assert main([*argv, "--out", str(report), "--out", str(table)]) == 0
    out = capsys.readouterr().out
    assert "Resolution, decorrelation analysis (nm" in out
    rows = json.loads(report.read_text())["images"]
    for row in rows:
        assert row["output_pixel_nm"] == 32.5
        # the target's band limit (0.6 of Nyquist) is 2 / 0.6 output pixels
        assert row["resolution"]["target"]["pixels"] == pytest.approx(2 / 0.6, rel=0.1)
        for kind in ("model", "target", "bicubic"):
            found = row["resolution"][kind]
            if found["pixels"] is None:
                continue
            # nm = output pixels x (65 nm / scale 2)
            assert found["nm"] == pytest.approx(found["pixels"] * 32.5)
    with open(table, newline="") as stream:
        first = next(csv.DictReader(stream))
    assert float(first["target_resolution_nm"]) == pytest.approx(
        rows[0]["resolution"]["target"]["nm"], rel=1e-5
    )
    assert main([*argv, "--pixel-size", "100nm"]) == 0  # the flag overrides
    assert "Resolution, decorrelation analysis (nm" in capsys.readouterr().out


def test_evaluate_without_a_pixel_size_reports_pixels(tmp_path, capsys):
    from keras_unet_sr.quality.evaluation import format_resolution_table

    row = {"model": {"pixels": 3.0, "nm": None}, "target": {"pixels": 2.5, "nm": None}}
    row["bicubic"] = {"pixels": None, "nm": None}  # no peak found
    table = format_resolution_table(
        [{"name": "x", "resolution": row, "output_pixel_nm": None}]
    )
    assert "(output pixels" in table and "3.0" in table and "-" in table
