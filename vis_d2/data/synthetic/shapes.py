"""The look of the synthetic set: class outlines, object textures and backgrounds.

Colours are float32 BGR in [0, 255]; a shape's main colour is drawn around its class's hue
(``CLASS_HUES``, +-0.05), its second colour from any hue.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

__all__ = [
    "CLASS_HUES", "CLASS_NAMES", "OUTLINES", "TEXTURE_SIZE", "draw_background", "object_texture",
]

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "bar")
# hue (HSV, in [0, 1)) at the centre of each class's main-colour family, in CLASS_NAMES order
CLASS_HUES: tuple[float, ...] = (0.0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6)
_HUE_SPREAD = 0.05
TEXTURE_SIZE = 128  # side of an object's canonical texture, pixels


def _regular_polygon(n: int, phase: float) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon with circumradius 1."""
    angles = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(half_width: float = 0.3) -> np.ndarray:
    w = half_width
    pts = np.array([(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1),
                    (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1)], dtype=np.float64)
    return pts / math.hypot(1.0, w)


def _bar(aspect: float = 3.0) -> np.ndarray:
    """A rectangle ``aspect`` times as long as it is wide."""
    pts = np.array([(aspect, 1), (-aspect, 1), (-aspect, -1), (aspect, -1)], dtype=np.float64)
    return pts / math.hypot(aspect, 1.0)


# unit outlines (circumradius 1) in CLASS_NAMES order
OUTLINES: tuple[np.ndarray, ...] = (
    _regular_polygon(48, 0.0),
    _regular_polygon(4, np.pi / 4),
    _regular_polygon(3, -np.pi / 2),
    _star(),
    _cross(),
    _bar(),
)


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float],
            hue: float | None = None) -> np.ndarray:
    """A random colour as a (3,) float32 BGR vector in [0, 255]; of any hue, or within
    ``_HUE_SPREAD`` of ``hue``."""
    h = rng.random() if hue is None else (hue + rng.uniform(-_HUE_SPREAD, _HUE_SPREAD)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return np.array([b, g, r], dtype=np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]
                  ) -> np.ndarray:
    """(h, w) float32 noise in [0, 1]: a random (cells) grid upsampled bicubically to size."""
    grid = rng.random(cells).astype(np.float32)
    up = cv2.resize(grid, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(up.min()), float(up.max())
    return (up - lo) / max(hi - lo, 1e-6)


def object_texture(rng: np.random.Generator, cls: int) -> np.ndarray:
    """(S, S, 3) float32 texture of one object of class ``cls`` in its own frame;
    S = TEXTURE_SIZE."""
    s = TEXTURE_SIZE
    yy, xx = np.mgrid[-1:1:s * 1j, -1:1:s * 1j].astype(np.float32)
    c1 = _colour(rng, (0.55, 1.0), (0.55, 1.0), hue=CLASS_HUES[cls])
    c2 = _colour(rng, (0.2, 1.0), (0.25, 1.0))
    kind = rng.integers(4)
    if kind == 0:  # solid
        t = np.zeros_like(xx)
    elif kind == 1:  # stripes
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(0.18, 0.5)
        t = (np.floor((xx * np.cos(phi) + yy * np.sin(phi)) / period) % 2).astype(np.float32)
    elif kind == 2:  # checker
        cell = rng.uniform(0.22, 0.5)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    else:  # blotchy noise
        n = int(rng.integers(4, 9))
        t = _smooth_noise(rng, (n, n), (s, s))
    tex = c1 * (1.0 - t[..., None]) + c2 * t[..., None]
    psi = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + rng.uniform(0.0, 0.2) * (xx * np.cos(psi) + yy * np.sin(psi))
    return np.clip(tex * shade[..., None], 0, 255).astype(np.float32)


def draw_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 background: a gradient plus noise blotches and/or a regular pattern."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    b1 = _colour(rng, (0.0, 0.6), (0.15, 0.95))
    b2 = _colour(rng, (0.0, 0.6), (0.15, 0.95))
    psi = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(psi) + yy * np.sin(psi)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    bg = b1 * (1.0 - ramp[..., None]) + b2 * ramp[..., None]
    if rng.random() < 0.7:  # blotches, coloured or grey
        cells = (int(rng.integers(2, 10)), int(rng.integers(3, 14)))
        amp = rng.uniform(15, 60)
        if rng.random() < 0.5:
            blotch = np.stack([_smooth_noise(rng, cells, (h, w)) for _ in range(3)], axis=-1)
        else:
            blotch = _smooth_noise(rng, cells, (h, w))[..., None]
        bg += amp * (blotch - 0.5)
    pattern = rng.integers(4)
    amp = rng.uniform(10, 40)
    if pattern == 1:  # stripes
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(8, 48)
        wave = np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period)
        bg += amp * wave[..., None]
    elif pattern == 2:  # checker tiles
        cell = rng.uniform(12, 64)
        tiles = (np.floor(xx / cell) + np.floor(yy / cell)) % 2
        bg += amp * (tiles[..., None] - 0.5)
    elif pattern == 3:  # grid lines
        period = int(rng.integers(14, 48))
        width = int(rng.integers(1, 4))
        lines = ((xx.astype(np.int32) % period) < width) | ((yy.astype(np.int32) % period) < width)
        bg += amp * lines[..., None] * (1 if rng.random() < 0.5 else -1)
    bg += rng.uniform(2, 10) * rng.standard_normal((h, w, 1), dtype=np.float32)  # fine grain
    return np.clip(bg, 0, 255).astype(np.float32)
