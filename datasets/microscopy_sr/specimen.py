"""Random fluorophore density for the synthetic microscopy data.

A wobbly cell outline holding filaments, vesicles and membrane-labelled
mitochondria, rendered on the fine grid by dense point sampling and bilinear
splatting. What is drawn, and why, is in ``README.md`` ("Physics of the
synthetic configs"); all lengths here are in fine pixels.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .optics import FINE_PIXEL_NM

__all__ = ["render_specimen"]

# Lengths in fine pixels; densities per fine pixel^2 of cell area.

#: Sample spacing along curves; <= 0.5 px keeps bilinear splats seamless.
_STEP = 0.5
#: Filament length range (px) and expected starts per px^2 of cell.
_FILAMENT_LENGTH = (100.0, 600.0)
_FILAMENT_DENSITY = 2.5e-4
#: Filament curvature: per-filament mean and smooth fluctuation, 1/px, with
#: control points every _FILAMENT_CONTROL px (radius of curvature ~ 2-10 um).
_FILAMENT_MEAN_CURVATURE_SD = 1.0 / 400.0
_FILAMENT_CURVATURE_SD = 1.0 / 120.0
_FILAMENT_CONTROL = 30.0
#: Relative rms of the slowly varying labelling density along a filament.
_FILAMENT_LABEL_SD = 0.2
#: Vesicle counts per px^2 and radii (px).
_VESICLE_DENSITY = 5.0e-4
_RING_RADIUS = (3.0, 10.0)
_SPOT_RADIUS = (1.5, 5.0)
#: Points per vesicle (rings: along the circle; spots: sunflower in the disk).
_VESICLE_POINTS = 128
#: Mitochondria counts per px^2, total length and width ranges (px).
_MITO_DENSITY = 2.0e-4
_MITO_LENGTH = (30.0, 100.0)
_MITO_WIDTH = (10.0, 20.0)
#: Largest total bend of a mitochondrion, radians.
_MITO_MAX_BEND = 1.2
#: Gaussian focal-section sigma (px, 200 nm) weighting the membrane by its
#: height above/below focus: the top and bottom membranes of wide mitochondria
#: fade and the outline reads hollow, as in sectioned SIM/ISM images.
_MITO_SECTION_SIGMA = 200.0 / FINE_PIXEL_NM
#: Brightness per unit length (filaments, rings), per unit area times radius
#: (spots: small puncta are denser) and per unit membrane area (mitochondria);
#: balanced so that after the widefield blur all classes peak within ~2x.
_BRIGHTNESS = {"filament": 1.0, "ring": 1.0, "spot": 2.0, "mito": 0.07}
#: Lognormal sigma of the per-structure brightness.
_BRIGHTNESS_SD = 0.35
#: Probability that a class is absent from an image (filaments or mitochondria
#: always remain); class density multipliers are lognormal with this sigma.
_CLASS_ABSENT = {"filament": 0.25, "vesicle": 0.25, "mito": 0.4}
_CLASS_DENSITY_SD = 0.5
#: Cell semi-axes as a fraction of the field width.
_CELL_SEMI_AXIS = (0.45, 1.0)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class _Cell(NamedTuple):
    """Wobbly ellipse (canvas coordinates, fine pixels)."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float
    wobble: np.ndarray  # (3, 2): amplitude, phase of harmonics 2..4

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - self.cx, y - self.cy
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = (c * dx + s * dy) / self.a, (-s * dx + c * dy) / self.b
        theta = np.arctan2(v, u)
        edge = 1.0
        for n, (amp, phase) in enumerate(self.wobble, start=2):
            edge = edge + amp * np.cos(n * theta + phase)
        return u * u + v * v < edge * edge


def _random_cell(rng: np.random.Generator, field: int, margin: int) -> _Cell:
    # Centre inside the field so every field has some cell in it.
    cx, cy = margin + field * rng.uniform(0.15, 0.85, size=2)
    a, b = field * rng.uniform(*_CELL_SEMI_AXIS, size=2)
    wobble = np.stack(
        [rng.uniform(0.0, 0.08, 3), rng.uniform(0.0, 2 * np.pi, 3)], axis=1
    )
    return _Cell(cx, cy, a, b, rng.uniform(0.0, np.pi), wobble)


def _poisson_points(
    rng: np.random.Generator, density: float, cell: _Cell, canvas: int
) -> np.ndarray:
    """Homogeneous Poisson points (n, 2) on the canvas, kept inside the cell."""
    n = rng.poisson(density * canvas * canvas)
    xy = rng.uniform(0.0, canvas - 1.0, size=(n, 2))
    return xy[cell.contains(xy[:, 0], xy[:, 1])]


def _brightness(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    return _BRIGHTNESS[kind] * rng.lognormal(0.0, _BRIGHTNESS_SD, n)


def _smooth_random(
    rng: np.random.Generator, n_curves: int, n_steps: int, spacing: float, sd: float
) -> np.ndarray:
    """(n_curves, n_steps) random curves, linear between control points."""
    n_ctrl = int(n_steps * _STEP / spacing) + 2
    ctrl = rng.normal(0.0, sd, size=(n_curves, n_ctrl))
    pos = np.arange(n_steps) * (_STEP / spacing)
    i0 = pos.astype(np.intp)
    frac = pos - i0
    return ctrl[:, i0] * (1.0 - frac) + ctrl[:, i0 + 1] * frac


def _filaments(
    rng: np.random.Generator, density: float, cell: _Cell, canvas: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persistent random walks from random starts, truncated at the cell edge."""
    starts = _poisson_points(rng, density, cell, canvas)
    n = len(starts)
    lengths = rng.uniform(*_FILAMENT_LENGTH, size=n)
    heading0 = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    mean_curv = rng.normal(0.0, _FILAMENT_MEAN_CURVATURE_SD, size=(n, 1))
    weight = _brightness(rng, "filament", n)[:, None] * _STEP
    steps = int(_FILAMENT_LENGTH[1] / _STEP)
    curv = mean_curv + _smooth_random(
        rng, n, steps, _FILAMENT_CONTROL, _FILAMENT_CURVATURE_SD
    )
    label = 1.0 + _smooth_random(rng, n, steps, _FILAMENT_CONTROL, _FILAMENT_LABEL_SD)
    heading = heading0 + np.cumsum(curv, axis=1) * _STEP
    x = starts[:, :1] + np.cumsum(np.cos(heading), axis=1) * _STEP
    y = starts[:, 1:] + np.cumsum(np.sin(heading), axis=1) * _STEP
    # Keep each walk up to its length and until it first leaves the cell.
    alive = np.arange(steps)[None, :] * _STEP < lengths[:, None]
    alive &= np.cumprod(cell.contains(x, y), axis=1, dtype=bool)
    w = weight * np.maximum(label, 0.0)
    return x[alive], y[alive], w[alive]


def _vesicles(
    rng: np.random.Generator, density: float, cell: _Cell, canvas: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rings (hollow circles) and filled disks, half and half on average."""
    centres = _poisson_points(rng, density, cell, canvas)
    n = len(centres)
    is_ring = rng.random(n) < 0.5
    radius = np.where(
        is_ring, rng.uniform(*_RING_RADIUS, size=n), rng.uniform(*_SPOT_RADIUS, size=n)
    )[:, None]
    ring_b = _brightness(rng, "ring", n)[:, None]
    spot_b = _brightness(rng, "spot", n)[:, None]
    j = np.arange(_VESICLE_POINTS)[None, :]
    # Rings: equally spaced on the circle; spots: sunflower (uniform in area).
    ring_angle = 2 * np.pi * (j + rng.random((n, 1))) / _VESICLE_POINTS
    spot_angle = 2 * np.pi * _GOLDEN * j + rng.uniform(0, 2 * np.pi, (n, 1))
    spot_r = np.sqrt((j + 0.5) / _VESICLE_POINTS)
    angle = np.where(is_ring[:, None], ring_angle, spot_angle)
    r = radius * np.where(is_ring[:, None], 1.0, spot_r)
    w = np.where(
        is_ring[:, None],
        ring_b * 2 * np.pi * radius / _VESICLE_POINTS,
        spot_b * np.pi * radius / _VESICLE_POINTS,
    )
    x = centres[:, :1] + r * np.cos(angle)
    y = centres[:, 1:] + r * np.sin(angle)
    return x.ravel(), y.ravel(), np.broadcast_to(w, x.shape).ravel()


def _mitochondrion(
    rng: np.random.Generator, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected membrane of a gently bent capsule (tube with hemispherical caps).

    Uses Archimedes' hat-box theorem: for a tube *and* its hemispherical caps the
    membrane area element is ``R d(alpha) dt`` with ``t`` the axial coordinate, so
    a uniform (t, alpha) grid samples the surface uniformly. Projecting the
    lateral offset ``r(t) cos(alpha)`` gives the edge-bright, hollow look.
    """
    radius = 0.5 * rng.uniform(*_MITO_WIDTH)
    length = max(rng.uniform(*_MITO_LENGTH) - 2 * radius, 0.0)  # straight part
    bend = rng.uniform(-_MITO_MAX_BEND, _MITO_MAX_BEND)
    curvature = bend / max(length, 1.0)
    heading0 = rng.uniform(0.0, 2 * np.pi)
    brightness = _brightness(rng, "mito", 1)[0]
    t = np.arange(-radius + _STEP / 2, length + radius, _STEP)
    heading = heading0 + curvature * (np.clip(t, 0.0, length) - length / 2)
    cx = np.cumsum(np.cos(heading)) * _STEP
    cy = np.cumsum(np.sin(heading)) * _STEP
    mid = len(t) // 2
    cx += centre[0] - cx[mid]
    cy += centre[1] - cy[mid]
    over = np.maximum(np.maximum(-t, t - length), 0.0)  # distance into a cap
    ring = np.sqrt(np.maximum(radius * radius - over * over, 0.0))
    n_alpha = max(8, math.ceil(2 * np.pi * radius / _STEP))
    # Golden-ratio row offsets avoid a regular (t, alpha) lattice.
    row = (np.arange(len(t)) * _GOLDEN)[:, None]
    alpha = 2 * np.pi * (np.arange(n_alpha)[None, :] + row) / n_alpha
    offset = ring[:, None] * np.cos(alpha)
    height = ring[:, None] * np.sin(alpha)
    section = np.exp(-0.5 * (height / _MITO_SECTION_SIGMA) ** 2)
    x = cx[:, None] - np.sin(heading)[:, None] * offset
    y = cy[:, None] + np.cos(heading)[:, None] * offset
    w = brightness * radius * (2 * np.pi / n_alpha) * _STEP * section
    return x.ravel(), y.ravel(), w.ravel()


def _splat(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray, canvas: int) -> np.ndarray:
    """Bilinear splatting of weighted points (pixel centres at integers)."""
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    ix, iy = x0.astype(np.intp), y0.astype(np.intp)
    keep = (ix >= 0) & (ix < canvas - 1) & (iy >= 0) & (iy < canvas - 1)
    ix, iy, fx, fy, ws = ix[keep], iy[keep], fx[keep], fy[keep], ws[keep]
    idx = iy * canvas + ix
    gx = 1.0 - fx
    gy = 1.0 - fy
    flat = np.bincount(
        np.concatenate([idx, idx + 1, idx + canvas, idx + canvas + 1]),
        weights=np.concatenate(
            [ws * gx * gy, ws * fx * gy, ws * gx * fy, ws * fx * fy]
        ),
        minlength=canvas * canvas,
    )
    # bincount returns int64 when there are no points at all.
    return flat.astype(np.float64, copy=False).reshape(canvas, canvas)


def render_specimen(rng: np.random.Generator, field: int, canvas: int) -> np.ndarray:
    """Random fluorophore density of one cell on the canvas.

    Args:
        rng: Specimen stream; the same stream gives the same specimen.
        field: Side of the field of view, fine pixels; the cell is centred in it.
        canvas: Side of the square canvas (field plus margins), fine pixels.

    Returns:
        ``(canvas, canvas)`` float64 density (arbitrary units); the central
        ``field x field`` view is never all zero.
    """
    margin = (canvas - field) // 2
    cell = _random_cell(rng, field, margin)
    mult = {
        kind: 0.0 if rng.random() < absent else rng.lognormal(0.0, _CLASS_DENSITY_SD)
        for kind, absent in _CLASS_ABSENT.items()
    }
    if not (mult["filament"] or mult["mito"]):
        # Vesicles alone leave most of a field empty: keep an extended class.
        mult["filament" if rng.random() < 0.5 else "mito"] = 1.0
    parts = [
        _filaments(rng, _FILAMENT_DENSITY * mult["filament"], cell, canvas),
        _vesicles(rng, _VESICLE_DENSITY * mult["vesicle"], cell, canvas),
    ]
    for centre in _poisson_points(rng, _MITO_DENSITY * mult["mito"], cell, canvas):
        parts.append(_mitochondrion(rng, centre))
    density = _splat(*(np.concatenate(p) for p in zip(*parts, strict=True)), canvas)
    view = density[margin : margin + field, margin : margin + field]
    if not view.any():
        # Tiny fields can miss every structure: add one filament through the
        # cell centre so that no field (and no target) is empty.
        heading = rng.uniform(0.0, 2 * np.pi)
        t = np.arange(-field, field, _STEP)
        x = cell.cx + t * math.cos(heading)
        y = cell.cy + t * math.sin(heading)
        inside = cell.contains(x, y)
        w = np.full(inside.sum(), _BRIGHTNESS["filament"] * _STEP)
        density += _splat(x[inside], y[inside], w, canvas)
    return density
