"""Synthetic video instance segmentation data in the YouTube-VIS 2019 on-disk format.

Every video shows 1-6 shapes (classes: ``CLASS_NAMES``) with textures (solid, stripes, checker,
noise) over a textured, slowly panning background. A shape's main colour is drawn around its
class's hue (``CLASS_HUES``, +-0.05), its second colour from any hue, so class is told by outline
and by colour family, as real categories have characteristic appearance. Shapes move with
acceleration, bounce off the frame walls or enter and leave the frame, change scale, rotate and
occlude each other (fixed z-order per video). Ground truth is the *visible* mask of each shape:
what the shapes in front of it cover is excluded, and a frame where less than
``MIN_VISIBLE_AREA`` pixels are visible is ``null``.

Layout written under ``out_dir``::

    train/JPEGImages/<video>/00000.jpg, ...    train.json
    valid/JPEGImages/<video>/00000.jpg, ...    valid.json

Command line: ``python -m vis_d2.data.synthetic --out DIR --videos N --frames T --seed S``.
The output depends only on the arguments (not on ``workers``): every video draws from its own
``numpy.random.default_rng((seed, split, index))`` stream.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import multiprocessing as mp
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
from tqdm import tqdm

from ...utils.file_io import atomic_write

__all__ = ["CLASS_HUES", "CLASS_NAMES", "MIN_VISIBLE_AREA", "generate", "main"]

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "bar")
# hue (HSV, in [0, 1)) at the centre of each class's main-colour family, in CLASS_NAMES order
CLASS_HUES: tuple[float, ...] = (0.0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6)
_HUE_SPREAD = 0.05
MIN_VISIBLE_AREA = 16  # pixels; a smaller visible part is annotated as null
MIN_SIDE = 32  # smallest accepted frame width / height, pixels
MAX_OBJECTS = 6
JPEG_QUALITY = 90
SPLITS = ("train", "valid")

_REF_AREA = 320 * 192  # frame area at which object diameters span [24, 128] px
_MIN_DIAMETER = 24.0
_MAX_DIAMETER = 128.0
_TEXTURE_SIZE = 128  # side of an object's canonical texture, pixels


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
_OUTLINES: tuple[np.ndarray, ...] = (
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


def _object_texture(rng: np.random.Generator, cls: int) -> np.ndarray:
    """(S, S, 3) float32 texture of one object of class ``cls`` in its own frame;
    S = _TEXTURE_SIZE."""
    s = _TEXTURE_SIZE
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


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
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


def _trajectory(rng: np.random.Generator, t_len: int, w: int, h: int, k: float,
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


def _render_video(job: tuple[str, int, int, int, int, int, str]) -> dict[str, Any]:
    """Render one video, write its JPEGs; return its file names and per-object tracks.

    ``job`` = (split, index, seed, frames, width, height, jpeg_root). Each track is
    (category_id, segmentations, areas, bboxes) with one entry (or None) per frame.
    """
    split, index, seed, t_len, w, h, jpeg_root = job
    rng = np.random.default_rng((seed, SPLITS.index(split), index))
    name = f"{split}_{index:05d}"
    video_dir = Path(jpeg_root) / name
    video_dir.mkdir(parents=True, exist_ok=True)
    k = math.sqrt(w * h / _REF_AREA)

    pad = max(4, round(10 * k))
    background = _background(rng, h + 2 * pad, w + 2 * pad)
    cam = rng.uniform(0, 2 * pad, size=2)
    cam_vel = rng.uniform(-0.8, 0.8, size=2) * k
    grain_pad = 16
    grain = rng.standard_normal((h + grain_pad, w + grain_pad, 3), dtype=np.float32)
    grain *= rng.uniform(1.0, 4.0)

    n_obj = int(rng.integers(1, MAX_OBJECTS + 1))
    objects = []
    for i in range(n_obj):
        mode = "bounce" if i == 0 or rng.random() < 0.65 else str(rng.choice(["enter", "leave"]))
        cls = int(rng.integers(len(CLASS_NAMES)))
        objects.append((cls, _object_texture(rng, cls), *_trajectory(rng, t_len, w, h, k, mode)))
    order = rng.permutation(n_obj)  # drawing order, back to front

    s_half = _TEXTURE_SIZE / 2.0
    tracks: list[list[dict | None]] = [[] for _ in range(n_obj)]
    file_names = []
    for t in range(t_len):
        ox, oy = (int(round(c)) for c in cam)
        frame = background[oy:oy + h, ox:ox + w].copy()
        cam += cam_vel
        for ax in range(2):
            if not 0 <= cam[ax] <= 2 * pad:
                cam_vel[ax] = -cam_vel[ax]
                cam[ax] = np.clip(cam[ax], 0, 2 * pad)

        boxes: list[tuple[int, int, int, int, np.ndarray] | None] = [None] * n_obj
        for i in order:
            cls, texture, centres, radii, angles = objects[i]
            c, r, a = centres[t], radii[t], angles[t]
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            poly = c + r * _OUTLINES[cls] @ rot.T
            x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int), 0)
            x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 1, (w, h))
            if x1 <= x0 or y1 <= y0:
                continue
            alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
            pts = np.round((poly - (x0, y0)) * 16).astype(np.int32)
            cv2.fillPoly(alpha, [pts], 255, lineType=cv2.LINE_AA, shift=4)
            lin = rot * (r / s_half)  # texture pixel -> crop pixel
            offset = c - (x0, y0) - lin @ (s_half, s_half)
            warp = np.hstack([lin, offset[:, None]])
            tex = cv2.warpAffine(texture, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)
            region = frame[y0:y1, x0:x1]
            region += (alpha.astype(np.float32)[..., None] / 255.0) * (tex - region)
            boxes[i] = (x0, y0, x1, y1, alpha >= 128)

        gx, gy = rng.integers(0, grain_pad + 1, size=2)
        frame += grain[gy:gy + h, gx:gx + w]
        image = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        file_name = f"{t:05d}.jpg"
        cv2.imwrite(str(video_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        file_names.append(f"{name}/{file_name}")

        covered = np.zeros((h, w), bool)  # union of the masks in front, filled front to back
        for i in order[::-1]:
            if boxes[i] is None:
                tracks[i].append(None)
                continue
            x0, y0, x1, y1, crop = boxes[i]
            full = np.zeros((h, w), bool)
            full[y0:y1, x0:x1] = crop
            visible = full & ~covered
            covered |= full
            if np.count_nonzero(visible) < MIN_VISIBLE_AREA:
                tracks[i].append(None)
                continue
            rle = mask_util.encode(np.asfortranarray(visible, dtype=np.uint8))
            tracks[i].append({
                "segmentation": {"size": [int(v) for v in rle["size"]],
                                 "counts": rle["counts"].decode("ascii")},
                "area": float(mask_util.area(rle)),
                "bbox": [float(v) for v in mask_util.toBbox(rle)],
            })

    written = set(file_names)
    for stale in video_dir.glob("*.jpg"):
        if f"{name}/{stale.name}" not in written:
            stale.unlink()
    out_tracks = []
    for i, frames in enumerate(tracks):
        if all(f is None for f in frames):
            continue
        out_tracks.append((
            objects[i][0] + 1,
            [f["segmentation"] if f else None for f in frames],
            [f["area"] if f else None for f in frames],
            [f["bbox"] if f else None for f in frames],
        ))
    return {"name": name, "file_names": file_names, "tracks": out_tracks}


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _prepare_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise ValueError(f"output directory {str(out_dir)!r} cannot be written: "
                         f"{e.strerror or e}") from e




def _split_json(split: str, videos: list[dict], args: dict[str, int]) -> dict:
    out: dict[str, Any] = {
        "info": {"description": f"vis_d2 synthetic video instance segmentation set, {split} split",
                 "version": "1.0", "contributor": "vis_d2.data.synthetic",
                 "generator": {"split": split, **args}},
        "licenses": [{"id": 1, "name": "synthetic data, free to use", "url": ""}],
        "videos": [], "annotations": [],
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"}
                       for i, n in enumerate(CLASS_NAMES)],
    }
    for vid, video in enumerate(videos, start=1):
        t_len = len(video["file_names"])
        out["videos"].append({
            "id": vid, "width": args["width"], "height": args["height"], "length": t_len,
            "date_captured": "", "license": 1, "flickr_url": "", "coco_url": "",
            "file_names": video["file_names"],
        })
        for cat, segs, areas, bboxes in video["tracks"]:
            out["annotations"].append({
                "id": len(out["annotations"]) + 1, "video_id": vid, "category_id": cat,
                "iscrowd": 0, "height": args["height"], "width": args["width"],
                "length": t_len, "segmentations": segs, "areas": areas, "bboxes": bboxes,
            })
    return out


def generate(out_dir: str | Path, num_videos: int, num_frames: int, seed: int, *,
             num_val_videos: int | None = None, width: int = 320, height: int = 192,
             workers: int = 1, progress: bool = True) -> dict[str, Path]:
    """Write a synthetic YouTube-VIS data set (train and held-out valid split, both annotated).

    Args:
        out_dir: root folder; created if missing. Existing files of the same names are replaced.
        num_videos, num_frames: train videos and frames per video (both splits).
        seed: non-negative integer; the output is a function of all arguments except
            ``workers`` and ``progress``.
        num_val_videos: valid videos, default ``max(1, num_videos // 5)``.
        width, height: frame size in pixels, each at least ``MIN_SIDE``.
        workers: processes rendering videos in parallel.
        progress: show a tqdm progress bar.

    Returns:
        ``{"train": out_dir/train.json, "valid": out_dir/valid.json}``.

    Raises:
        ValueError: a bad argument or an output folder that cannot be written.
    """
    _check_count("num_videos", num_videos, 1)
    if num_val_videos is None:
        num_val_videos = max(1, num_videos // 5)
    _check_count("num_frames", num_frames, 1)
    _check_count("num_val_videos", num_val_videos, 1)
    _check_count("seed", seed, 0)
    _check_count("width", width, MIN_SIDE)
    _check_count("height", height, MIN_SIDE)
    _check_count("workers", workers, 1)
    out = Path(out_dir)
    _prepare_out_dir(out)

    counts = {"train": num_videos, "valid": num_val_videos}
    jobs = [(split, i, int(seed), int(num_frames), int(width), int(height),
             str(out / split / "JPEGImages"))
            for split in SPLITS for i in range(counts[split])]
    bar = tqdm(total=len(jobs), unit="video", desc="synthetic VIS", disable=not progress)
    results: list[dict] = []
    if workers == 1:
        for job in jobs:
            results.append(_render_video(job))
            bar.update()
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            for result in pool.map(_render_video, jobs):
                results.append(result)
                bar.update()
    bar.close()

    paths = {}
    start = 0
    for split in SPLITS:
        videos = results[start:start + counts[split]]
        start += counts[split]
        args = {"seed": int(seed), "videos": counts[split], "frames": int(num_frames),
                "width": int(width), "height": int(height)}
        paths[split] = out / f"{split}.json"
        data = _split_json(split, videos, args)
        atomic_write(
            paths[split], lambda f, d=data: json.dump(d, f, separators=(",", ":")), text=True
        )
    return paths


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (argument errors exit with 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m vis_d2.data.synthetic",
        description="Write a synthetic video instance segmentation data set in the YouTube-VIS "
                    "2019 format: DIR/{train,valid}/JPEGImages/<video>/*.jpg and "
                    "DIR/{train,valid}.json.")
    parser.add_argument("--out", required=True, help="output folder DIR")
    # the defaults are the set configs/synthetic/SGNet_R18_synthetic*.yaml are sized for: many
    # short videos, since appearance varies across instances far more than across frames. On 400
    # videos the long schedule overfit (AP 66 on training videos, 52 on validation ones)
    parser.add_argument("--videos", type=_int_at_least(1), default=1600,
                        help="train videos (default 1600)")
    parser.add_argument("--frames", type=_int_at_least(1), default=8,
                        help="frames per video (default 8)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default 0)")
    # 100 validation videos hold about 360 instances: few enough to evaluate in about a minute
    # on 2 CPU cores, enough that AP is not decided by a handful of objects
    parser.add_argument("--val-videos", type=_int_at_least(1), default=100,
                        help="valid videos (default 100)")
    parser.add_argument("--width", type=_int_at_least(MIN_SIDE), default=320,
                        help="frame width in pixels (default 320)")
    parser.add_argument("--height", type=_int_at_least(MIN_SIDE), default=192,
                        help="frame height in pixels (default 192)")
    parser.add_argument("--workers", type=_int_at_least(1), default=1,
                        help="parallel processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        paths = generate(args.out, args.videos, args.frames, args.seed,
                         num_val_videos=args.val_videos, width=args.width, height=args.height,
                         workers=args.workers, progress=not args.no_progress)
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:
        print(f"error: writing the data set failed: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    for split, path in paths.items():
        data = json.loads(path.read_text(encoding="utf-8"))
        frames = sum(v["length"] for v in data["videos"])
        print(f"{split}: {len(data['videos'])} videos, {frames} frames, "
              f"{len(data['annotations'])} instances -> {path}")
    print(f"done in {elapsed:.1f} s")
    return 0

