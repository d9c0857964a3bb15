"""Validation regions: with few images, every image trains and validates.

A folder of 3 fields split by image trains on 2 and validates on 1 (and a
leave-one-out fold of 3 trains on 1). Below `MIN_IMAGES_TO_SPLIT` images the
data is instead split *within* each image: a border strip of
`STRIP_FRACTION` of the image (the side with the most target signal) is held
out for validation, and the training example is the rest of the image, so a
training tile can never overlap a validation pixel (tiles are cut, and
mirrored at borders, inside the training crop only).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# With this many images or more, whole images validate (the usual split).
MIN_IMAGES_TO_SPLIT = 8
STRIP_FRACTION = 0.15
MIN_STRIP = 8  # low-resolution pixels


@dataclasses.dataclass(frozen=True)
class Strip:
    """A validation strip of an image, in low-resolution pixels.

    Attributes:
        axis: 0 for a strip of rows, 1 for a strip of columns.
        start: First row/column of the strip.
        stop: One past its last row/column.
    """

    axis: int
    start: int
    stop: int

    def split(self, image: np.ndarray, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """`(training part, validation part)` of an image on a grid `scale`
        times the low one (the strip's coordinates are multiplied by it)."""
        start, stop = self.start * scale, self.stop * scale
        strip = np.take(image, np.arange(start, stop), axis=self.axis)
        if start == 0:  # the strip is at one border, the rest is contiguous
            rest = np.take(image, np.arange(stop, image.shape[self.axis]), self.axis)
        else:
            rest = np.take(image, np.arange(0, start), axis=self.axis)
        return rest, strip


def choose_strip(high: np.ndarray, scale: int, low_shape: tuple[int, int]) -> Strip:
    """The border strip (top, bottom, left or right) with the most target
    signal, `STRIP_FRACTION` of the image's side thick (at least `MIN_STRIP`).

    Raises:
        ValueError: the image is too small to leave a training part at least
            as thick as the strip.
    """
    best, best_signal = None, -math.inf
    for axis in (0, 1):
        side = low_shape[axis]
        thick = max(MIN_STRIP, math.ceil(STRIP_FRACTION * side))
        if side - thick < thick:
            continue
        for start in (0, side - thick):
            strip = Strip(axis, start, start + thick)
            _, values = strip.split(high, scale)
            signal = float(np.mean(values, dtype=np.float64))
            if best is None or signal > best_signal:  # NaN never wins
                best, best_signal = strip, signal
    if best is None:
        raise ValueError(
            f"image {low_shape[0]}x{low_shape[1]} is too small for a validation "
            f"strip (needs at least {2 * MIN_STRIP} px per side)"
        )
    return best
