"""Choosing the numeric precision of training and inference.

Measured on this project's 2-core AVX512-BF16 CPU (`benchmarks/run.py`, see
the README's Performance table): `mixed_bfloat16` trains ~2.0x the float32
tiles/s with the same quality, `mixed_float16` is far slower (no native fp16
arithmetic on CPUs), and XLA (`jit_compile`) does not compile the training
step on CPU. On an AVX2 CPU without BF16, bfloat16 is no faster than float32,
so `auto` keeps float32 there. On NVIDIA GPUs (tensor cores) `mixed_float16`
is the established fast choice; that is expected, not measured here.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_unet_sr.config import PRECISIONS
from keras_unet_sr.errors import UserError

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The first CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively."""
    return any(flag in cpu_flags() for flag in _NATIVE_BF16_FLAGS)


def resolve_precision(precision: str) -> str:
    """`auto` -> the fastest policy for this machine; others are checked."""
    if precision not in PRECISIONS:
        raise UserError(
            f"--precision {precision}: choose one of {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    if os.environ.get("KERAS_UNET_SR_NO_BF16") or not cpu_has_native_bf16():
        return "float32"
    return "mixed_bfloat16"
