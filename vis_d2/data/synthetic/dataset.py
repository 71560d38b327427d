"""Writing the synthetic set: both splits' videos, rendered in parallel, and their json files."""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .video import SPLITS, render_video
from .ytvis_json import write_split_json

__all__ = ["MIN_SIDE", "generate"]

MIN_SIDE = 32  # smallest accepted frame width / height, pixels


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
            results.append(render_video(job))
            bar.update()
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            for result in pool.map(render_video, jobs):
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
        write_split_json(paths[split], split, videos, args)
    return paths
