"""The motion of one synthetic object: centre, size and rotation per frame."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["REF_AREA", "trajectory"]

REF_AREA = 320 * 192  # frame area at which object diameters span [24, 128] px
_MIN_DIAMETER = 24.0
_MAX_DIAMETER = 128.0


def trajectory(rng: np.random.Generator, t_len: int, w: int, h: int, k: float,
               mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (T, 2) px, radii (T,) px and angles (T,) rad of one object.

    ``mode``: "bounce" (starts inside, reflects off the walls), "enter" (starts outside, heads
    into the frame), "leave" (starts inside, passes through the walls). ``k`` scales sizes and
    speeds relative to a 320x192 frame.
    """
    d_hi = min(max(1.5 * _MIN_DIAMETER, _MAX_DIAMETER * k), 0.9 * min(w, h))
    d_lo = min(_MIN_DIAMETER, d_hi / 1.5)
    tt = np.arange(t_len, dtype=np.float64)
    drift = rng.uniform(-0.04, 0.04) * tt  # log-size change per frame
    wobble = rng.uniform(0.0, 0.2) * np.sin(rng.uniform(0.15, 0.5) * tt + rng.uniform(0, 2 * np.pi))
    log_d = rng.uniform(np.log(d_lo), np.log(d_hi)) + drift + wobble
    radii = np.exp(np.clip(log_d, np.log(d_lo), np.log(d_hi))) / 2.0
    angles = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.1, 0.1) * tt

    size = np.array([w, h], dtype=np.float64)
    r0 = radii[0]
    inside = np.array([rng.uniform(min(r0, s / 2), max(s - r0, s / 2)) for s in size])
    speed = rng.uniform(0.5, 6.0) * k if mode == "bounce" else rng.uniform(2.0, 7.0) * k
    heading = rng.uniform(0, 2 * np.pi)
    if mode == "enter":
        target = rng.uniform(0.25, 0.75, size=2) * size
        edge = int(rng.integers(4))
        axis, far = edge % 2, edge // 2
        pos = rng.uniform(0, 1, size=2) * size
        outside = r0 + rng.uniform(0, 2) * speed  # centre distance beyond the edge
        pos[axis] = size[axis] + outside if far else -outside
        heading = math.atan2(target[1] - pos[1], target[0] - pos[0])
    else:
        pos = inside
    vel = speed * np.array([np.cos(heading), np.sin(heading)])
    acc_dir = rng.uniform(0, 2 * np.pi)
    acc = rng.uniform(0.0, 0.35) * k * np.array([np.cos(acc_dir), np.sin(acc_dir)])
    restitution = rng.uniform(0.8, 1.0)
    v_max = 10.0 * k

    centres = np.empty((t_len, 2))
    centres[0] = pos
    for t in range(1, t_len):
        vel = vel + acc + rng.normal(0.0, 0.1 * k, size=2)
        speed = float(np.hypot(*vel))
        if speed > v_max:
            vel *= v_max / speed
        pos = pos + vel
        if mode == "bounce":
            r = radii[t]
            for ax in range(2):
                lo, hi = r, size[ax] - r
                if hi <= lo:
                    pos[ax] = size[ax] / 2
                elif pos[ax] < lo:
                    pos[ax] = min(2 * lo - pos[ax], hi)
                    vel[ax] = abs(vel[ax]) * restitution
                elif pos[ax] > hi:
                    pos[ax] = max(2 * hi - pos[ax], lo)
                    vel[ax] = -abs(vel[ax]) * restitution
        centres[t] = pos
    return centres, radii, angles
