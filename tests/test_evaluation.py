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
