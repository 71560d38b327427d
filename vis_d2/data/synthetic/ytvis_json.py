"""The YouTube-VIS 2019 json of one synthetic split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...utils.file_io import atomic_write
from .shapes import CLASS_NAMES

__all__ = ["write_split_json"]


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


def write_split_json(path: Path, split: str, videos: list[dict], args: dict[str, int]) -> None:
    """Write ``path``, the json of ``split`` (compact, complete or untouched).

    Args:
        videos: ``render_video``'s results, in video id order (ids start at 1).
        args: the generator's arguments recorded in ``info``: seed, videos, frames, width and
            height (pixels; every video's size).
    """
    data = _split_json(split, videos, args)
    atomic_write(path, lambda f: json.dump(data, f, separators=(",", ":")), text=True)
