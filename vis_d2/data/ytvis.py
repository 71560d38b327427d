"""YouTube-VIS 2019/2021 and OVIS json → per-video detectron2 dataset dicts.

One dict per video::

    {"video_id": int, "file_names": [abs path, ...], "height": H, "width": W, "length": T,
     "annotations": [  # only when the json has annotations; one list per frame
         [{"id": instance id, "category_id": contiguous id, "iscrowd": 0|1,
           "bbox": [x, y, w, h] (pixels, XYWH_ABS), "bbox_mode": BoxMode.XYWH_ABS,
           "segmentation": compressed RLE dict or polygon list}, ...],
         ...]}

A frame where an instance is ``null`` (absent) has no entry for it. Every problem in the json is
reported with the file, the video and the annotation it concerns.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import pycocotools.mask as mask_util
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetFormatError",
    "load_categories",
    "load_ytvis_json",
    "register_config_splits",
    "register_ytvis_instances",
    "register_ytvis_splits",
]


class DatasetFormatError(ValueError):
    """A YouTube-VIS json that does not follow the format; the message names file and item."""


def _read_json(json_file: str) -> dict:
    try:
        with PathManager.open(json_file, "r") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        root = os.getenv("DETECTRON2_DATASETS", "datasets")
        raise FileNotFoundError(
            f"annotation file {json_file} does not exist. Builtin splits are looked up under "
            f"$DETECTRON2_DATASETS (now '{root}'); the synthetic set is made with "
            f"`python -m vis_d2.data.synthetic --out {root}/synthetic_vis`"
        ) from e
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{json_file}: not valid JSON ({e})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{json_file}: cannot be read ({e})") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{json_file}: the top level must be an object, not {type(data).__name__}"
        )
    return data


def _require(obj: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{where}: expected an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DatasetFormatError(f"{where}: missing key(s) {', '.join(missing)}")


def _frame_segmentation(seg: Any, height: int, width: int, where: str) -> tuple[Any, dict]:
    """Normalise one frame's segmentation; returns (detectron2 segmentation, compressed RLE)."""
    if isinstance(seg, list):  # polygons
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            raise DatasetFormatError(f"{where}: malformed polygon segmentation")
        return seg, mask_util.merge(mask_util.frPyObjects(seg, height, width))
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [height, width]:
            raise DatasetFormatError(
                f"{where}: mask size {list(seg['size'])} differs from the video's {[height, width]}"
            )
        if isinstance(seg["counts"], list):  # uncompressed RLE
            rle = mask_util.frPyObjects(seg, height, width)
        else:
            rle = dict(seg)
        counts = rle["counts"]
        rle["counts"] = counts.decode("ascii") if isinstance(counts, bytes) else counts
        return rle, rle
    raise DatasetFormatError(f"{where}: segmentation must be an RLE object, a polygon list or null")


def _categories(data: dict, json_file: str) -> tuple[list[dict], dict[int, int]]:
    """The json's categories sorted by id, and the map dataset id → contiguous id."""
    if not isinstance(data.get("categories"), list):
        raise DatasetFormatError(f"{json_file}: 'categories' must be a list")
    categories = []
    for i, c in enumerate(data["categories"]):
        _require(c, ("id", "name"), f"{json_file}: categories[{i}]")
        categories.append(c)
    categories.sort(key=lambda c: c["id"])
    id_map = {c["id"]: i for i, c in enumerate(categories)}
    if len(id_map) != len(categories):
        raise DatasetFormatError(f"{json_file}: duplicate category ids")
    return categories, id_map


def load_ytvis_json(json_file: str, image_root: str, dataset_name: str | None = None) -> list[dict]:
    """Load a YouTube-VIS/OVIS json into per-video dicts (see the module docstring).

    With ``dataset_name``, the category maps (``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id``) are set on its metadata, or checked against it when
    they are already registered.
    """
    data = _read_json(json_file)
    if not isinstance(data.get("videos"), list):
        raise DatasetFormatError(f"{json_file}: 'videos' must be a list")
    categories, id_map = _categories(data, json_file)
    if dataset_name is not None:
        _set_or_check_categories(dataset_name, json_file, categories, id_map)

    videos = {}
    for i, v in enumerate(data["videos"]):
        where = f"{json_file}: videos[{i}]"
        _require(v, ("id", "file_names", "height", "width"), where)
        where = f"{json_file}: video {v['id']}"
        names = v["file_names"]
        if not isinstance(names, list) or not names:
            raise DatasetFormatError(
                f"{where}: 'file_names' must be a non-empty list (empty video)"
            )
        length = v.get("length", len(names))
        if length != len(names):
            raise DatasetFormatError(f"{where}: length {length} but {len(names)} file_names")
        if v["id"] in videos:
            raise DatasetFormatError(f"{where}: duplicate video id")
        videos[v["id"]] = {
            "video_id": v["id"],
            "file_names": [os.path.join(image_root, f) for f in names],
            "height": int(v["height"]),
            "width": int(v["width"]),
            "length": len(names),
        }

    annotations = data.get("annotations")
    if annotations is None:  # val/test splits: frames only
        logger.info(f"Loaded {len(videos)} videos without annotations from {json_file}")
        return list(videos.values())
    if not isinstance(annotations, list):
        raise DatasetFormatError(f"{json_file}: 'annotations' must be a list or null")

    per_video: dict[int, list[list[dict]]] = {
        vid: [[] for _ in range(v["length"])] for vid, v in videos.items()
    }
    empty_frames, all_null, ann_ids = 0, [], set()
    for i, ann in enumerate(annotations):
        _require(
            ann,
            ("id", "video_id", "category_id", "segmentations"),
            f"{json_file}: annotations[{i}]",
        )
        where = f"{json_file}: annotation {ann['id']} (video {ann['video_id']})"
        if ann["id"] in ann_ids:
            raise DatasetFormatError(f"{where}: duplicate annotation id")
        ann_ids.add(ann["id"])
        video = videos.get(ann["video_id"])
        if video is None:
            raise DatasetFormatError(f"{where}: unknown video id")
        if ann["category_id"] not in id_map:
            raise DatasetFormatError(f"{where}: unknown category id {ann['category_id']}")
        segs, boxes = ann["segmentations"], ann.get("bboxes")
        length = video["length"]
        if not isinstance(segs, list) or len(segs) != length:
            raise DatasetFormatError(f"{where}: 'segmentations' must list {length} frames")
        if boxes is not None and (not isinstance(boxes, list) or len(boxes) != length):
            raise DatasetFormatError(f"{where}: 'bboxes' must list {length} frames")
        present = 0
        for t, seg in enumerate(segs):
            if seg is None:
                continue
            seg, rle = _frame_segmentation(
                seg, video["height"], video["width"], f"{where} frame {t}"
            )
            if mask_util.area(rle) == 0:
                empty_frames += 1  # an empty mask marks the instance absent in this frame
                continue
            box = boxes[t] if boxes is not None else None
            if box is None or len(box) != 4 or box[2] <= 0 or box[3] <= 0:
                box = mask_util.toBbox(rle).tolist()  # missing or degenerate: the mask's own box
            per_video[ann["video_id"]][t].append(
                {
                    "id": ann["id"],
                    "category_id": id_map[ann["category_id"]],
                    "iscrowd": int(ann.get("iscrowd", 0)),
                    "bbox": [float(x) for x in box],
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "segmentation": seg,
                }
            )
            present += 1
        if present == 0:
            all_null.append(ann["id"])
    if empty_frames:
        logger.warning(
            f"{json_file}: {empty_frames} frame segmentations with an empty mask were "
            "read as absent (null)"
        )
    if all_null:
        logger.warning(
            f"{json_file}: {len(all_null)} annotations have no visible frame and give no "
            f"training targets (ids {all_null[:10]}{' ...' if len(all_null) > 10 else ''})"
        )
    dicts = []
    for vid, video in videos.items():
        video["annotations"] = per_video[vid]
        dicts.append(video)
    logger.info(
        f"Loaded {len(dicts)} videos and {len(annotations)} instance tracks from {json_file}"
    )
    return dicts


def _set_or_check_categories(
    dataset_name: str, json_file: str, categories: list[dict], id_map: dict[int, int]
) -> None:
    meta = MetadataCatalog.get(dataset_name)
    names = [c["name"] for c in categories]
    if "thing_classes" in meta.as_dict():
        if list(meta.thing_classes) != names or meta.thing_dataset_id_to_contiguous_id != id_map:
            raise DatasetFormatError(
                f"{json_file}: its categories {names} differ from those registered for "
                f"'{dataset_name}' ({list(meta.thing_classes)})"
            )
    else:
        meta.set(thing_classes=names, thing_dataset_id_to_contiguous_id=id_map)


def register_ytvis_instances(name: str, metadata: dict, json_file: str, image_root: str) -> None:
    """Register a YouTube-VIS-format split ``name`` in DatasetCatalog and MetadataCatalog.

    ``metadata`` may hold ``thing_classes``, ``thing_colors`` and
    ``thing_dataset_id_to_contiguous_id``; the json's categories must agree with them.
    """
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata
    )


def load_categories(dataset_name: str) -> None:
    """Set ``thing_classes`` and ``thing_dataset_id_to_contiguous_id`` of a registered split from
    its json's categories when its metadata has none yet (a split registered without them
    gets them only when its videos are loaded; tools that only need class names call this)."""
    meta = MetadataCatalog.get(dataset_name)
    if "thing_classes" in meta.as_dict() or "json_file" not in meta.as_dict():
        return
    categories, id_map = _categories(_read_json(meta.json_file), meta.json_file)
    _set_or_check_categories(dataset_name, meta.json_file, categories, id_map)


def register_ytvis_splits(splits: Sequence[Sequence[str]], option: str = "splits") -> None:
    """Register YouTube-VIS-format splits given as ``(name, json_file, image_root)`` triples
    (the config's ``DATASETS.REGISTER``), paths absolute or relative to the working directory.

    Every entry is checked before any is registered. Registering a triple again with the same
    paths does nothing, so every process and every tool may call this. ``option`` names the
    source of the triples in error messages.

    Raises:
        ValueError: an entry that is not three non-empty strings, a name given twice, or a name
            already registered for other files (such as a builtin split).
        FileNotFoundError: a json file or an image folder that does not exist.
    """
    if splits and all(isinstance(entry, str) for entry in splits):
        raise ValueError(
            f"{option} lists (name, json_file, image_root) triples, not strings: "
            f"{tuple(splits)!r}; one split is written (('name', 'file.json', 'image_root'),)"
        )
    new: dict[str, tuple[str, str]] = {}
    for entry in splits:
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) != 3
            or not all(isinstance(x, str) and x for x in entry)
        ):
            raise ValueError(
                f"{option}: {entry!r} is not a (name, json_file, image_root) triple of "
                "non-empty strings"
            )
        name = entry[0]
        json_file, image_root = (os.path.abspath(os.path.expanduser(p)) for p in entry[1:])
        if name in new:
            raise ValueError(f"{option}: the name '{name}' is given twice")
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"{option}: '{name}': json file {json_file} does not exist")
        if not os.path.isdir(image_root):
            raise FileNotFoundError(
                f"{option}: '{name}': image root {image_root} is not a directory"
            )
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name).as_dict()
            if (meta.get("json_file"), meta.get("image_root")) != (json_file, image_root):
                raise ValueError(
                    f"{option}: the name '{name}' is already registered for "
                    f"{meta.get('json_file', 'another data set')}; choose another name"
                )
        new[name] = (json_file, image_root)
    for name, (json_file, image_root) in new.items():
        if name not in DatasetCatalog.list():
            register_ytvis_instances(name, {}, json_file, image_root)
            logger.info(f"Registered '{name}': {json_file}, images under {image_root}")


def register_config_splits(cfg: CfgNode) -> None:
    """Register the splits of the config's ``DATASETS.REGISTER`` (tools call this before they
    build a loader or read a split's metadata); see :func:`register_ytvis_splits`."""
    register_ytvis_splits(cfg.DATASETS.REGISTER, "DATASETS.REGISTER")
