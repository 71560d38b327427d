"""Rendering one synthetic video: its JPEG frames and the visible mask of every object."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .motion import REF_AREA, trajectory
from .shapes import CLASS_NAMES, OUTLINES, TEXTURE_SIZE, draw_background, object_texture

__all__ = ["MAX_OBJECTS", "MIN_VISIBLE_AREA", "SPLITS", "render_video"]

MIN_VISIBLE_AREA = 16  # pixels; a smaller visible part is annotated as null
MAX_OBJECTS = 6
JPEG_QUALITY = 90
SPLITS = ("train", "valid")


def render_video(job: tuple[str, int, int, int, int, int, str]) -> dict[str, Any]:
    """Render one video, write its JPEGs; return its file names and per-object tracks.

    ``job`` = (split, index, seed, frames, width, height, jpeg_root). Each track is
    (category_id, segmentations, areas, bboxes) with one entry (or None) per frame.
    """
    split, index, seed, t_len, w, h, jpeg_root = job
    rng = np.random.default_rng((seed, SPLITS.index(split), index))
    name = f"{split}_{index:05d}"
    video_dir = Path(jpeg_root) / name
    video_dir.mkdir(parents=True, exist_ok=True)
    k = math.sqrt(w * h / REF_AREA)

    pad = max(4, round(10 * k))
    background = draw_background(rng, h + 2 * pad, w + 2 * pad)
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
        objects.append((cls, object_texture(rng, cls), *trajectory(rng, t_len, w, h, k, mode)))
    order = rng.permutation(n_obj)  # drawing order, back to front

    s_half = TEXTURE_SIZE / 2.0
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
            poly = c + r * OUTLINES[cls] @ rot.T
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
