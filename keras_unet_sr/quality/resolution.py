"""Image resolution from the image itself: decorrelation analysis (Descloux,
Grussmayer & Radenovic, Nature Methods 16, 918-924, 2019) for one image, and
Fourier ring correlation (1/7 threshold) for two independent images of the
same field.

Frequencies are normalized to the Nyquist frequency (1 = a period of two
pixels); a cutoff `k` is a resolution of `2 / k` pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Radii sampled per decorrelation curve, and high-pass filters per pass.
RADII = 50
FILTERS = 10
# Peaks lower than this carry no information (Descloux et al.).
MIN_PEAK = 0.05
# Cosine edge taper, in pixels: the image's borders are no frequencies.
EDGE = 20
FRC_THRESHOLD = 1.0 / 7.0
# A peak must stand this far above the curve after it.
PEAK_MARGIN = 1e-3


@dataclasses.dataclass(frozen=True)
class Resolution:
    """A resolution estimate.

    Attributes:
        cutoff: Highest frequency with signal, normalized to Nyquist (0 when
            none was found).
        pixels: Resolution in pixels, `2 / cutoff` (inf when none found).
    """

    cutoff: float

    @property
    def pixels(self) -> float:
        return 2.0 / self.cutoff if self.cutoff > 0 else float("inf")

    def nanometres(self, pixel_size_nm: float | None) -> float | None:
        """In nm for a pixel size, or None when it is unknown."""
        return self.pixels * pixel_size_nm if pixel_size_nm else None


def _apodize(image: np.ndarray, edge: int = EDGE) -> np.ndarray:
    """Mean-free image whose borders are tapered to zero with a cosine."""
    image = np.asarray(image, np.float64)
    image = image - image.mean()
    for axis, length in enumerate(image.shape):
        width = min(edge, length // 4)
        if width < 1:
            continue
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
        window = np.ones(length)
        window[:width], window[-width:] = ramp, ramp[::-1]
        shape = [1] * image.ndim
        shape[axis] = length
        image = image * window.reshape(shape)
    return image


def _radius(shape: tuple[int, int]) -> np.ndarray:
    """`|k|` / Nyquist on the unshifted FFT grid."""
    ky = np.fft.fftfreq(shape[0]) * 2.0
    kx = np.fft.fftfreq(shape[1]) * 2.0
    return np.sqrt(ky[:, np.newaxis] ** 2 + kx[np.newaxis, :] ** 2)


class _Curves:
    """Decorrelation curves of one image, for any high-pass filter."""

    def __init__(self, image: np.ndarray):
        spectrum = np.fft.fft2(_apodize(image))
        radius = _radius(spectrum.shape)
        inside = radius < 1.0
        order = np.argsort(radius[inside], kind="stable")
        self.radius = radius[inside][order]
        self.spectrum = spectrum[inside][order]
        magnitude = np.abs(self.spectrum)
        self.phase = np.divide(
            self.spectrum,
            magnitude,
            out=np.zeros_like(self.spectrum),
            where=magnitude > 0,
        )
        # |phase|^2 summed inside each radius: the normalized image's energy.
        self.phase_energy = np.cumsum(np.abs(self.phase) ** 2)

    def curve(self, radii: np.ndarray, sigma: float | None) -> np.ndarray:
        """d(r): correlation of the (high-passed) image with its normalized
        spectrum restricted to radius r."""
        spectrum = self.spectrum
        if sigma is not None:
            spectrum = spectrum * (1.0 - np.exp(-2.0 * sigma**2 * self.radius**2))
        energy = np.sqrt(np.sum(np.abs(spectrum) ** 2))
        cross = np.cumsum(np.real(spectrum * np.conj(self.phase)))
        index = np.searchsorted(self.radius, radii, side="left") - 1
        valid = index >= 0
        values = np.zeros(len(radii))
        denominator = energy * np.sqrt(self.phase_energy[index[valid]])
        values[valid] = np.divide(
            cross[index[valid]],
            denominator,
            out=np.zeros(int(valid.sum())),
            where=denominator > 0,
        )
        return values


def _peak(values: np.ndarray) -> tuple[int, float]:
    """The highest point of a curve that is a real peak: while the maximum is
    the last point, the tail is dropped, and a maximum that rises less than
    `PEAK_MARGIN` above the lowest point after it is flattened (Descloux et
    al.'s rule against numerical noise)."""
    values = np.nan_to_num(np.asarray(values, np.float64))
    kept = values.copy()
    index = int(np.argmax(kept))
    while index == len(kept) - 1:
        kept = kept[:-1]
        if not len(kept):
            return 0, 0.0
        index = int(np.argmax(kept))
        after = values[index:].min()
        if kept[index] - after > PEAK_MARGIN:
            break
        kept[index] = after
        index = len(kept) - 1
    return index, float(values[index])


def decorrelation_resolution(image: np.ndarray) -> Resolution:
    """Single-image resolution by decorrelation analysis.

    Args:
        image: A 2-D image (a `(H, W, 1)` image is squeezed).

    Returns:
        The estimate; `cutoff` is the highest frequency at which the image
        still correlates with its own normalized spectrum, after a set of
        Gaussian high-pass filters that take the low-frequency dominance out.
    """
    image = np.squeeze(np.asarray(image))
    if image.ndim != 2:
        raise ValueError(f"decorrelation analysis needs a 2-D image, got {image.shape}")
    curves = _Curves(image)
    radii = np.linspace(0.0, 1.0, RADII)
    index, amplitude0 = _peak(curves.curve(radii, None))
    r0 = radii[index]
    largest = max(image.shape) / 4.0
    g_max = 2.0 / r0 if r0 > 0 else largest
    sigmas = np.concatenate(
        [[largest], np.exp(np.linspace(np.log(g_max), np.log(0.15), FILTERS))]
    )
    found = [(r0, amplitude0)]
    for refine in range(2):
        peaks = [_peak(curves.curve(radii, sigma)) for sigma in sigmas]
        cutoffs = [radii[i] for i, _ in peaks]
        found += [(radii[i], a) for i, a in peaks]
        if refine == 0:
            # Zoom in between the filter before the highest-frequency peak
            # and that peak's, and on radii around it.
            best = len(cutoffs) - 1 - int(np.argmax(cutoffs[::-1]))
            first = min(max(best - 1, 0), len(sigmas) - 2)
            sigmas = np.exp(
                np.linspace(np.log(sigmas[first]), np.log(sigmas[first + 1]), FILTERS)
            )
            step = radii[1] - radii[0]
            low = max(cutoffs[best] - step, 0.0)
            radii = np.linspace(low, min(cutoffs[best] + 0.4, 1.0), RADII)
    cutoffs = [k for k, a in found if a >= MIN_PEAK]
    return Resolution(cutoff=float(max(cutoffs, default=0.0)))


def frc_resolution(
    first: np.ndarray, second: np.ndarray, rings: int | None = None
) -> Resolution:
    """Fourier ring correlation of two independent images of one field: where
    the correlation first drops below 1/7 (rings one frequency bin wide by
    default)."""
    first, second = np.squeeze(first), np.squeeze(second)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(
            f"FRC needs two 2-D images of one shape: {first.shape}, {second.shape}"
        )
    # A full Hann window: a taper at the edges only would leak a sharp
    # spectrum's signal over the 1/7 threshold where both images are clean.
    window = np.outer(np.hanning(first.shape[0]), np.hanning(first.shape[1]))
    a = np.fft.fft2((first - first.mean()) * window)
    b = np.fft.fft2((second - second.mean()) * window)
    rings = rings or min(a.shape) // 2
    ring = np.minimum((_radius(a.shape) * rings).astype(int), rings)
    cross = np.bincount(ring.ravel(), np.real(a * np.conj(b)).ravel(), rings + 1)
    power_a = np.bincount(ring.ravel(), (np.abs(a) ** 2).ravel(), rings + 1)
    power_b = np.bincount(ring.ravel(), (np.abs(b) ** 2).ravel(), rings + 1)
    denominator = np.sqrt(power_a * power_b)[:rings]
    frc = np.divide(
        cross[:rings], denominator, out=np.zeros(rings), where=denominator > 0
    )
    below = np.nonzero(frc[1:] < FRC_THRESHOLD)[0]
    if not len(below):
        return Resolution(cutoff=1.0)
    i = below[0] + 1  # crossing between ring i-1 and ring i (linear)
    f0, f1 = frc[i - 1], frc[i]
    fraction = (f0 - FRC_THRESHOLD) / (f0 - f1) if f0 != f1 else 0.0
    return Resolution(cutoff=float((i - 0.5 + fraction) / rings))
