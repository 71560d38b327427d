import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_python(*args: str, cwd: Path = REPO, timeout: float = 300, **kwargs):
    """Run the test interpreter in a fresh process; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture
def python():
    return run_python


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A tiny synthetic set (3 train videos of 4 frames, 1 validation video, 96×64): its root
    folder and both splits as loaded dataset dicts."""
    from vis_d2.data import load_ytvis_json
    from vis_d2.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic_vis")
    paths = generate(root, 3, 4, seed=1, num_val_videos=1, width=96, height=64, progress=False)
    train = load_ytvis_json(str(paths["train"]), str(root / "train" / "JPEGImages"))
    val = load_ytvis_json(str(paths["valid"]), str(root / "valid" / "JPEGImages"))
    return root, train, val


def training_batch(cfg, videos: list[dict], seed: int = 0) -> list[dict]:
    """Two training samples (key and reference frame) of the first two ``videos``, through
    the real training mapper."""
    import copy

    from vis_d2.data import YTVISDatasetMapper

    mapper = YTVISDatasetMapper(cfg, True, seed=seed)
    return [mapper(copy.deepcopy(v)) for v in videos[:2]]


def frame_outputs(model, image, extra: tuple[str, ...] = ()) -> dict:
    """The first-frame outputs of ``model.inference_frame`` on ``image`` shown at 72 × 90:
    boxes, scores, classes, masks and the ``extra`` fields."""
    out = model.inference_frame({"image": image, "height": 72, "width": 90, "is_first": True})
    result = {
        "boxes": out.pred_boxes.tensor,
        "scores": out.scores,
        "classes": out.pred_classes,
        "masks": out.pred_masks,
    }
    return result | {f: out.get(f) for f in extra}


def datasets_env(root: Path, tmp_path: Path) -> dict:
    """An environment whose $DETECTRON2_DATASETS holds the synthetic set at ``root``."""
    import os

    datasets = tmp_path / "datasets"
    datasets.mkdir()
    os.symlink(root, datasets / "synthetic_vis")
    return {**os.environ, "DETECTRON2_DATASETS": str(datasets)}


def rle(mask):
    """Compressed RLE of a (H, W) bool mask, json-ready (str counts)."""
    import numpy as np
    import pycocotools.mask as mask_util

    out = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    out["counts"] = out["counts"].decode("ascii")
    return out


def write_video_dataset(
    root: Path, videos: list[dict], *, with_annotations: bool = True, categories=("a", "b")
) -> Path:
    """Write a YouTube-VIS dataset: ``videos`` = [{"frames": [HxWx3 uint8], "tracks":
    [{"category_id", "masks": [HxW bool or None per frame]}]}]; returns the json path.
    Images go to root/JPEGImages/<video>/<t>.png (lossless, so pixels can be compared)."""
    import json

    import cv2
    import pycocotools.mask as mask_util

    data = {
        "videos": [],
        "annotations": [] if with_annotations else None,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
    }
    ann_id = 0
    for vid, video in enumerate(videos, start=1):
        names = []
        for t, frame in enumerate(video["frames"]):
            name = f"v{vid}/{t:05d}.png"
            (root / "JPEGImages" / f"v{vid}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "JPEGImages" / name), frame)
            names.append(name)
        h, w = video["frames"][0].shape[:2]
        data["videos"].append(
            {"id": vid, "file_names": names, "height": h, "width": w, "length": len(names)}
        )
        for track in video.get("tracks", []) if with_annotations else []:
            ann_id += 1
            segs = [rle(m) if m is not None else None for m in track["masks"]]
            data["annotations"].append(
                {
                    "id": ann_id,
                    "video_id": vid,
                    "category_id": track["category_id"],
                    "iscrowd": 0,
                    "segmentations": segs,
                    "areas": [float(mask_util.area(s)) if s else None for s in segs],
                    "bboxes": [mask_util.toBbox(s).tolist() if s else None for s in segs],
                    "height": h,
                    "width": w,
                    "length": len(names),
                }
            )
    path = root / "data.json"
    path.write_text(json.dumps(data))
    return path
