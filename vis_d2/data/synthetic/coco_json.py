"""The COCO instances json of one synthetic split: every frame an image, every visible instance
of a frame an annotation, for image models (detectron2's ``register_coco_instances``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...utils.file_io import atomic_write

__all__ = ["coco_from_ytvis", "write_coco_json"]


def coco_from_ytvis(data: dict[str, Any]) -> dict[str, Any]:
    """A YouTube-VIS 2019 dict → the COCO instances dict of its frames.

    Image ``file_name`` is the frame's YouTube-VIS path (relative to the split's
    ``JPEGImages``), image ids count frames from 1 in video then frame order; annotations keep
    the frame's RLE, area and XYWH box (pixels), ``iscrowd`` 0. Frames where an instance is not
    visible (``null`` segmentation) give no annotation.
    """
    images, annotations = [], []
    first_image = {}
    for video in data["videos"]:
        first_image[video["id"]] = len(images) + 1
        for name in video["file_names"]:
            images.append({"id": len(images) + 1, "file_name": name,
                           "width": video["width"], "height": video["height"]})
    for ann in data["annotations"]:
        first = first_image[ann["video_id"]]
        for t, (seg, area, box) in enumerate(
                zip(ann["segmentations"], ann["areas"], ann["bboxes"], strict=True)):
            if seg is None:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": first + t,
                                "category_id": ann["category_id"], "segmentation": seg,
                                "area": area, "bbox": box, "iscrowd": 0})
    info = {**data["info"], "description": data["info"]["description"] + ", frames as images"}
    return {"info": info, "licenses": data["licenses"], "images": images,
            "annotations": annotations, "categories": data["categories"]}


def write_coco_json(ytvis_json: str | Path, out: str | Path) -> Path:
    """Write ``out``, the COCO instances json of the YouTube-VIS json ``ytvis_json``
    (:func:`coco_from_ytvis`); returns ``out`` as a ``Path``."""
    data = json.loads(Path(ytvis_json).read_text(encoding="utf-8"))
    coco = coco_from_ytvis(data)
    out = Path(out)
    atomic_write(out, lambda f: json.dump(coco, f, separators=(",", ":")), text=True)
    return out
