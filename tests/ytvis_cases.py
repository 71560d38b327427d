"""YouTube-VIS-format sets with the shapes of real data, and the training mapper's contract.

``write_edge_case_set`` writes one fixed train/val pair holding every case at least once;
``write_random_set`` draws a small random set of the same kinds. Frames are JPEG files, as in
the released data sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from conftest import rle

# listed out of id order, with ids that are neither contiguous nor start at 1
EDGE_CATEGORIES = [
    {"id": 9, "name": "kite"},
    {"id": 2, "name": "boat"},
    {"id": 5, "name": "deer"},
    {"id": 11, "name": "lamp"},  # has no instance in the val split
]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Uncompressed RLE: run lengths over the column-major pixels, a background run first."""
    flat = np.asarray(mask, dtype=np.uint8).T.reshape(-1)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def rect_polygon(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@dataclass
class Shape:
    """An instance in one frame: a box (x0, y0, x1, y1) in pixels and how its mask is written
    (``rle`` compressed, ``urle`` uncompressed, ``poly`` polygon)."""

    box: tuple[float, float, float, float]
    encoding: str = "rle"
    bbox: str = "mask"  # mask: the mask's box; none: null; degenerate: [x, y, 0, 0]


@dataclass
class Track:
    category_id: int
    frames: dict[int, Shape]  # frame index -> its shape where visible
    iscrowd: int = 0


@dataclass
class Video:
    name: str
    height: int
    width: int
    file_names: list[str]
    tracks: list[Track] = field(default_factory=list)


def _segmentation(shape: Shape, height: int, width: int) -> tuple[object, np.ndarray]:
    x0, y0, x1, y1 = shape.box
    if shape.encoding == "poly":
        poly = rect_polygon(x0, y0, x1, y1)
        mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, height, width)))
        return poly, mask.astype(bool)
    mask = np.zeros((height, width), dtype=bool)
    mask[int(y0) : int(y1), int(x0) : int(x1)] = True
    return (rle(mask) if shape.encoding == "rle" else uncompressed_rle(mask)), mask


def _colour(category_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(category_id)
    return tuple(int(c) for c in rng.integers(40, 255, 3))


def write_split(root: Path, videos: list[Video], categories: list[dict], seed: int) -> Path:
    """Write the frames under root/JPEGImages and the json root/<root name>.json; returns it."""
    rng = np.random.default_rng(seed)
    data = {"videos": [], "annotations": [], "categories": categories}
    ann_id = 100
    for vid, video in enumerate(videos, start=1):
        frames = [
            rng.integers(0, 90, (video.height, video.width, 3), dtype=np.uint8)
            for _ in video.file_names
        ]
        for track in video.tracks:
            ann_id += 7  # instance ids are not consecutive either
            segs, boxes, areas = [None] * len(frames), [None] * len(frames), [None] * len(frames)
            for t, shape in track.frames.items():
                seg, mask = _segmentation(shape, video.height, video.width)
                frames[t][mask] = _colour(track.category_id)
                segs[t] = seg
                areas[t] = float(mask.sum())
                box = mask_util.toBbox(rle(mask)).tolist()
                boxes[t] = {"mask": box, "none": None, "degenerate": [*box[:2], 0.0, 0.0]}[
                    shape.bbox
                ]
            data["annotations"].append(
                {
                    "id": ann_id,
                    "video_id": vid,
                    "category_id": track.category_id,
                    "iscrowd": track.iscrowd,
                    "segmentations": segs,
                    "bboxes": boxes,
                    "areas": areas,
                    "height": video.height,
                    "width": video.width,
                    "length": len(frames),
                }
            )
        for name, frame in zip(video.file_names, frames, strict=True):
            path = root / "JPEGImages" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), frame)
        data["videos"].append(
            {
                "id": vid,
                "file_names": video.file_names,
                "height": video.height,
                "width": video.width,
                "length": len(video.file_names),
            }
        )
    path = root.parent / f"{root.name}.json"
    path.write_text(json.dumps(data))
    return path


def _moving(frames: range, box, step, encoding="rle", **kwargs) -> dict[int, Shape]:
    x0, y0, x1, y1 = box
    return {
        t: Shape((x0 + step * i, y0, x1 + step * i, y1), encoding, **kwargs)
        for i, t in enumerate(frames)
    }


def edge_case_videos() -> tuple[list[Video], list[Video]]:
    """(train, val) videos; sizes (H x W): 64x96, 80x64, 72x120, 128x192 in train."""
    enter = Video("t_enter", 64, 96, [f"t_enter/{5 * t:05d}.jpg" for t in range(6)])
    enter.tracks = [
        # frames 0-1 show no (non-crowd) object: it enters at frame 2
        Track(2, _moving(range(2, 6), (0, 20, 18, 44), 10)),
        Track(5, {3: Shape((50, 8, 80, 30), "poly")}),  # visible in one frame only
        Track(9, _moving(range(6), (60, 40, 92, 62), -2), iscrowd=1),
    ]
    single = Video("t_single", 80, 64, ["t_single/frame_17.jpg"])  # a video of one frame
    single.tracks = [Track(9, {0: Shape((10, 12, 50, 70), "urle")})]
    mixed = Video("t_mixed", 72, 120, [f"t_mixed/{n:05d}.jpg" for n in (3, 4, 10, 11, 20)])
    mixed.tracks = [
        Track(11, {0: Shape((70, 10, 110, 60))}),
        Track(9, _moving(range(2, 5), (4, 30, 40, 70), 6, "urle")),
        Track(
            2,
            {
                1: Shape((40, 5, 90, 25), "poly", bbox="degenerate"),
                **_moving(range(2, 5), (42, 5, 92, 25), 3, "poly", bbox="none"),
            },
        ),
    ]
    # a one-pixel object at even coordinates, lost when the frame is halved
    tiny = Video("t_tiny", 128, 192, [f"t_tiny/img_{t}.jpg" for t in (1, 2, 3, 4)])
    tiny.tracks = [
        Track(5, {0: Shape((40, 60, 41, 61)), 1: Shape((42, 60, 43, 61))}),
        Track(2, _moving(range(2, 4), (20, 20, 90, 100), 8)),
    ]
    v_enter = Video("v_enter", 64, 96, [f"v_enter/{5 * t:05d}.jpg" for t in range(5)])
    v_enter.tracks = [
        Track(2, _moving(range(1, 5), (2, 20, 22, 46), 9)),
        Track(5, _moving(range(3), (50, 6, 84, 32), 2, "poly")),
        Track(9, _moving(range(5), (60, 40, 92, 62), -2), iscrowd=1),
    ]
    v_single = Video("v_single", 96, 64, ["v_single/only.jpg"])
    v_single.tracks = [Track(9, {0: Shape((8, 10, 56, 80), "urle")})]
    v_gap = Video("v_gap", 72, 120, [f"v_gap/{n:05d}.jpg" for n in (0, 7, 8, 30)])
    v_gap.tracks = [Track(2, {0: Shape((10, 10, 60, 50), "urle"), 3: Shape((30, 12, 80, 52))})]
    return [enter, single, mixed, tiny], [v_enter, v_single, v_gap]


def write_edge_case_set(root: Path) -> dict[str, Path]:
    """root/{train,valid}/JPEGImages and root/{train,valid}.json; returns their paths."""
    train, val = edge_case_videos()
    return {
        "train": write_split(root / "train", train, EDGE_CATEGORIES, seed=0),
        "train_images": root / "train" / "JPEGImages",
        "valid": write_split(root / "valid", val, EDGE_CATEGORIES, seed=1),
        "valid_images": root / "valid" / "JPEGImages",
    }


def random_videos(rng: np.random.Generator, category_ids: list[int]) -> list[Video]:
    """1-3 videos of 1-5 frames, 16-72 px a side, with 0-3 tracks each: random visibility,
    encodings, crowd flags, missing or degenerate json boxes and boxes from 1 px to the frame."""
    videos = []
    for v in range(int(rng.integers(1, 4))):
        h, w, length = int(rng.integers(16, 73)), int(rng.integers(16, 73)), int(rng.integers(1, 6))
        numbers = np.cumsum(rng.integers(1, 6, length))
        pattern = str(rng.choice(["{:05d}.jpg", "frame_{}.jpg"]))
        video = Video(f"r{v}", h, w, [f"r{v}/" + pattern.format(n) for n in numbers])
        for _ in range(int(rng.integers(0, 4))):
            frames = {}
            for t in range(length):
                if rng.random() < 0.4:
                    continue  # absent in this frame
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
                frames[t] = Shape(
                    (x0, y0, x1, y1),
                    str(rng.choice(["rle", "urle", "poly"])),
                    bbox=str(rng.choice(["mask", "mask", "none", "degenerate"])),
                )
            crowd = int(rng.random() < 0.15)
            video.tracks.append(Track(int(rng.choice(category_ids)), frames, iscrowd=crowd))
        videos.append(video)
    return videos


def write_random_set(root: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    """A random set under ``root`` with 1-4 categories; returns (json file, image root)."""
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 50), int(rng.integers(1, 5)), False))
    categories = [{"id": i, "name": f"c{i}"} for i in ids]
    videos = random_videos(rng, ids)
    path = write_split(root / "train", videos, categories, seed=int(rng.integers(2**31)))
    return path, root / "train" / "JPEGImages"


def visible_ids(video: dict, frame: int) -> dict[int, int]:
    """Non-crowd instance id -> contiguous class of the loaded video dict at ``frame``."""
    return {
        obj["id"]: obj["category_id"]
        for obj in video["annotations"][frame]
        if obj.get("iscrowd", 0) == 0
    }


def check_training_sample(sample: dict, video: dict, num_classes: int, frame_range: int) -> None:
    """Assert the training mapper's contract on one ``sample`` mapped from the loaded ``video``
    (a dict of ``load_ytvis_json``)."""
    assert sample["video_id"] == video["video_id"]
    key, ref = sample["frame_idx"], sample["ref_frame_idx"]
    assert 0 <= key < video["length"] and 0 <= ref < video["length"]
    assert (key != ref or video["length"] == 1) and abs(key - ref) <= frame_range
    assert sample["file_name"] == video["file_names"][key]
    assert sample["image"].shape[-2:] == sample["ref_image"].shape[-2:]
    classes_of = {}
    for image_key, inst_key, frame in (
        ("image", "instances", key),
        ("ref_image", "ref_instances", ref),
    ):
        image, inst = sample[image_key], sample[inst_key]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        height, width = image.shape[-2:]
        assert inst.image_size == (height, width)
        for name in ("gt_boxes", "gt_classes", "gt_masks", "gt_ids"):
            assert inst.has(name), f"{inst_key} of video {video['video_id']} lacks {name}"
        n = len(inst)
        boxes, masks = inst.gt_boxes.tensor, inst.gt_masks.tensor
        assert boxes.shape == (n, 4) and boxes.dtype == torch.float32
        assert masks.shape == (n, height, width) and masks.dtype == torch.bool
        assert inst.gt_classes.shape == (n,) and inst.gt_classes.dtype == torch.int64
        assert inst.gt_ids.shape == (n,) and inst.gt_ids.dtype == torch.int64
        assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all())
        assert bool((boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all())
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
        assert bool(masks.flatten(1).any(dim=1).all()), "an empty mask was kept"
        ids = inst.gt_ids.tolist()
        assert len(set(ids)) == n, f"instance ids repeat in a frame: {ids}"
        expected = visible_ids(video, frame)
        assert set(ids) <= set(expected), "an instance that is absent or a crowd was kept"
        scale = height / video["height"]
        for obj in video["annotations"][frame]:
            if obj["id"] in expected and min(obj["bbox"][2:]) * scale >= 3:
                assert obj["id"] in ids, f"instance {obj['id']} was lost from frame {frame}"
        for i, (instance_id, cls) in enumerate(zip(ids, inst.gt_classes.tolist(), strict=True)):
            assert cls == expected[instance_id] and 0 <= cls < num_classes
            assert classes_of.setdefault(instance_id, cls) == cls, "key and reference disagree"
            ys, xs = masks[i].nonzero(as_tuple=True)
            x0, y0, x1, y1 = boxes[i].tolist()
            # the mask lies in its box, up to the resampling of either
            assert xs.min() >= x0 - 2 and xs.max() + 1 <= x1 + 2
            assert ys.min() >= y0 - 2 and ys.max() + 1 <= y1 + 2
