"""The peer comparison's scores, tables and goals (peers.py runs the systems)."""

from __future__ import annotations

import numpy as np

SYSTEMS = ("project", "care", "widefield")
LABELS = {"project": "project", "care": "CARE", "widefield": "widefield"}
INDENT = " " * 17


def score(prediction: np.ndarray, target: np.ndarray) -> dict:
    """Plain and registered scores, and the shift that registers them."""
    from error_bands import band_errors

    from keras_unet_sr.quality.evaluation import (
        evaluate_prediction,
        evaluate_registered,
    )

    prediction = prediction.reshape(target.shape)
    registered = evaluate_registered(prediction, target)
    shift = [registered.pop("dy"), registered.pop("dx")]
    return {
        "plain": evaluate_prediction(prediction, target),
        "registered": registered,
        "shift": shift,
        "bands": band_errors(prediction, target),
    }


def cell(scores: dict) -> str:
    """One system's plain, registered scores and shift, for the fold table."""
    p, r, (dy, dx) = scores["plain"], scores["registered"], scores["shift"]
    return (
        f"{p['psnr']:5.2f}/{p['ssim']:.3f} {r['psnr']:5.2f}/{r['ssim']:.3f} "
        f"({dy:+.1f},{dx:+.1f})"
    )


def average(values: list):
    """Element-wise mean of equally nested dicts/lists of numbers."""
    if isinstance(values[0], dict):
        return {key: average([v[key] for v in values]) for key in values[0]}
    if isinstance(values[0], list):
        return [average(list(column)) for column in zip(*values, strict=True)]
    return float(np.mean(values))


def _speed(timings: list[dict]) -> str:
    """Mean training seconds per model, and output Mpx/s over all predictions."""
    train_s = np.mean([t["train_s"] for t in timings])
    pixels = sum(t["output_px"] for t in timings)
    return f"{train_s:8.1f} {pixels / sum(t['predict_s'] for t in timings) / 1e6:7.2f}"


def print_summary(results: dict) -> None:
    """One line per fold and system: mean scores, training time and speed."""
    print(
        f"peers summary    {'fold':10s} {'system':10s} {'PSNR / SSIM':16s} "
        f"{'registered':16s} {'train s':>8s} {'Mpx/s':>7s}"
    )
    for fold, result in results.items():
        for system in SYSTEMS:
            p, r = (result["mean"][system][k] for k in ("plain", "registered"))
            timings = result["timings"].get(system)
            speed = _speed(timings) if timings else f"{'-':>8s} {'-':>7s}"
            print(
                f"{INDENT}{fold if system == 'project' else '':10s} "
                f"{LABELS[system]:10s} {p['psnr']:6.2f} / {p['ssim']:.3f}   "
                f"{r['psnr']:6.2f} / {r['ssim']:.3f}   {speed}"
            )


def goals(results: dict) -> list[dict]:
    """The pass/short goals of the folds that ran (plain mean scores)."""
    found = []

    def goal(fold: str, text: str, ok: bool | None) -> None:
        found.append({"fold": fold, "goal": text, "pass": ok})

    plain = {
        fold: {s: r["mean"][s]["plain"] for s in SYSTEMS} for fold, r in results.items()
    }
    for fold in ("dlsim15", "sim3", "sim9"):
        if fold not in plain:
            continue
        mine, care = plain[fold]["project"], plain[fold]["care"]
        text = f"PSNR {mine['psnr']:.2f} >= CARE {care['psnr']:.2f} + 1 dB"
        goal(fold, text, mine["psnr"] >= care["psnr"] + 1)
        if fold == "dlsim15":
            text = f"SSIM {mine['ssim']:.3f} >= CARE {care['ssim']:.3f}"
            goal(fold, text, mine["ssim"] >= care["ssim"])
        if fold == "sim3" and "dlsim15" in plain:
            own = plain["dlsim15"]["project"]["psnr"]
            text = f"PSNR {mine['psnr']:.2f} within 1 dB of 15 frames' {own:.2f}"
            goal(fold, text, mine["psnr"] >= own - 1)
        elif fold == "sim3":
            goal(fold, "within 1 dB of 15 frames: dlsim15 not run", None)
    return found
