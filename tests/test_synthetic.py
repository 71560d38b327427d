"""The synthetic YouTube-VIS generator: format, consistency, determinism, content, CLI."""

import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from vis_d2.data import synthetic
from vis_d2.data.synthetic import CLASS_HUES, CLASS_NAMES, MIN_VISIBLE_AREA, generate
from vis_d2.data.synthetic.shapes import object_texture
from vis_d2.data.synthetic.video import MAX_OBJECTS

SMALL = {"num_videos": 3, "num_frames": 4, "width": 96, "height": 64, "progress": False}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    return root, generate(root, seed=7, **SMALL)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A larger sample, for properties that hold somewhere rather than everywhere."""
    root = tmp_path_factory.mktemp("sample")
    paths = generate(root, 12, 8, seed=1, num_val_videos=1, width=96, height=64, progress=False)
    return json.loads(paths["train"].read_text())


def test_layout_and_return_value(small):
    root, paths = small
    assert paths == {"train": root / "train.json", "valid": root / "valid.json"}
    assert (root / "train" / "JPEGImages").is_dir() and (root / "valid" / "JPEGImages").is_dir()
    assert len(json.loads(paths["train"].read_text())["videos"]) == 3
    assert len(json.loads(paths["valid"].read_text())["videos"]) == 1  # max(1, 3 // 5)
    assert not list(root.glob("*.tmp")) and not list(root.glob(".*.tmp"))


def test_deterministic_and_independent_of_workers(small, tmp_path):
    root, _ = small
    again = tmp_path / "again"
    generate(again, seed=7, workers=2, **SMALL)
    reference = _files(root)
    assert any(name.endswith(".jpg") for name in reference)
    assert _files(again) == reference

    other = tmp_path / "other"
    generate(other, seed=8, **SMALL)
    assert (other / "train.json").read_bytes() != (root / "train.json").read_bytes()
    assert _files(other).keys() == reference.keys()
    assert _files(other) != reference


@pytest.mark.parametrize("split", ["train", "valid"])
def test_json_is_valid_ytvis(small, split):
    root, paths = small
    data = json.loads(paths[split].read_text())
    assert {"info", "licenses", "videos", "annotations", "categories"} <= data.keys()
    assert [c["id"] for c in data["categories"]] == list(range(1, len(CLASS_NAMES) + 1))
    assert [c["name"] for c in data["categories"]] == list(CLASS_NAMES)
    assert len(CLASS_NAMES) >= 4
    assert all(c["supercategory"] == "shape" for c in data["categories"])

    videos = {v["id"]: v for v in data["videos"]}
    assert sorted(videos) == list(range(1, len(videos) + 1))
    for v in videos.values():
        assert v["length"] == len(v["file_names"]) == SMALL["num_frames"]
        assert (v["width"], v["height"]) == (SMALL["width"], SMALL["height"])
        for name in v["file_names"]:
            image = cv2.imread(str(root / split / "JPEGImages" / name))
            assert image is not None and image.shape == (v["height"], v["width"], 3)

    ids = [a["id"] for a in data["annotations"]]
    assert len(ids) == len(set(ids)) and min(ids) >= 1
    assert data["annotations"], "expected some instances"
    for a in data["annotations"]:
        v = videos[a["video_id"]]
        assert 1 <= a["category_id"] <= len(CLASS_NAMES) and a["iscrowd"] == 0
        assert (a["height"], a["width"], a["length"]) == (v["height"], v["width"], v["length"])
        assert len(a["segmentations"]) == len(a["areas"]) == len(a["bboxes"]) == v["length"]
        assert any(s is not None for s in a["segmentations"])
        for seg, area, bbox in zip(a["segmentations"], a["areas"], a["bboxes"], strict=True):
            if seg is None:
                assert area is None and bbox is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [v["height"], v["width"]]
            mask = mask_util.decode(seg)
            assert mask.shape == (v["height"], v["width"])
            assert area == float(mask.sum()) >= MIN_VISIBLE_AREA
            ys, xs = np.nonzero(mask)
            tight = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert bbox == [float(x) for x in tight]


def test_valid_split_is_held_out(small):
    root, paths = small
    train = json.loads(paths["train"].read_text())
    valid = json.loads(paths["valid"].read_text())
    assert valid["annotations"], "the valid split has ground truth"
    train_names = {f.split("/")[0] for v in train["videos"] for f in v["file_names"]}
    valid_names = {f.split("/")[0] for v in valid["videos"] for f in v["file_names"]}
    assert not train_names & valid_names
    first = {(root / s / "JPEGImages" / v["file_names"][0]).read_bytes()
             for s, d in (("train", train), ("valid", valid)) for v in d["videos"]}
    assert len(first) == len(train["videos"]) + len(valid["videos"])


def test_visible_masks_never_overlap_and_occlusion_happens(sample):
    by_video: dict[int, list[dict]] = {}
    for a in sample["annotations"]:
        by_video.setdefault(a["video_id"], []).append(a)
    occluded = 0
    for anns in by_video.values():
        for t in range(len(anns[0]["segmentations"])):
            present = [a for a in anns if a["segmentations"][t] is not None]
            masks = [mask_util.decode(a["segmentations"][t]).astype(bool) for a in present]
            if masks:
                assert np.sum(masks, axis=0).max() <= 1
            for i in range(len(present)):
                for j in range(i + 1, len(present)):
                    boxes = [present[i]["bboxes"][t]], [present[j]["bboxes"][t]]
                    occluded += mask_util.iou(*boxes, [0])[0, 0] > 0
    assert occluded > 0


def test_objects_enter_or_leave(sample):
    flags = [[s is not None for s in a["segmentations"]] for a in sample["annotations"]]
    assert any(any(f) and not all(f) for f in flags)


def test_sizes_and_objects_per_video(sample):
    sides = [max(b[2], b[3]) for a in sample["annotations"] for b in a["bboxes"] if b]
    assert max(sides) >= 30 and min(sides) <= 20
    per_video = {v["id"]: 0 for v in sample["videos"]}
    for a in sample["annotations"]:
        per_video[a["video_id"]] += 1
    assert max(per_video.values()) <= MAX_OBJECTS
    assert len(set(per_video.values())) > 1


@pytest.mark.parametrize("kwargs, word", [
    ({"num_videos": 0}, "num_videos"),
    ({"num_frames": -1}, "num_frames"),
    ({"num_val_videos": 0}, "num_val_videos"),
    ({"width": 8}, "width"),
    ({"height": 10}, "height"),
    ({"workers": 0}, "workers"),
    ({"seed": -3}, "seed"),
])
def test_bad_arguments_raise(tmp_path, kwargs, word):
    args = {**SMALL, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=word):
        generate(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be written"):
        generate(blocker / "out", seed=0, **SMALL)


def test_cli_generates(tmp_path, python):
    out = tmp_path / "cli"
    proc = python("-m", "vis_d2.data.synthetic", "--out", str(out), "--videos", "2",
                  "--frames", "3", "--seed", "5", "--width", "64", "--height", "48",
                  "--val-videos", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "train: 2 videos, 6 frames" in proc.stdout
    data = json.loads((out / "valid.json").read_text())
    assert len(data["videos"]) == 2 and data["videos"][0]["length"] == 3


def test_cli_default_validation_split_is_100_videos(tmp_path):
    # the README's synthetic AP tables are measured on this split; its first videos do not
    # depend on how many are written
    out = tmp_path / "default"
    assert synthetic.main(["--out", str(out), "--videos", "1", "--frames", "1", "--width", "32",
                           "--height", "32", "--no-progress"]) == 0
    valid = json.loads((out / "valid.json").read_text())
    assert len(valid["videos"]) == 100
    few = generate(tmp_path / "few", 1, 1, seed=0, num_val_videos=3, width=32, height=32,
                   progress=False)
    few_valid = json.loads(few["valid"].read_text())
    assert few_valid["videos"] == valid["videos"][:3]
    assert few_valid["annotations"] == valid["annotations"][:len(few_valid["annotations"])]


def test_first_train_videos_do_not_depend_on_how_many_are_written(tmp_path):
    # a set with more training videos extends a smaller one (the README compares models trained
    # on 400 and on 1600 videos)
    kwargs = dict(num_frames=2, seed=0, num_val_videos=1, width=48, height=32, progress=False)
    small = json.loads(generate(tmp_path / "small", 2, **kwargs)["train"].read_text())
    large = json.loads(generate(tmp_path / "large", 5, **kwargs)["train"].read_text())
    assert len(large["videos"]) == 5
    assert large["videos"][:2] == small["videos"]
    assert large["annotations"][:len(small["annotations"])] == small["annotations"]
    for video in small["videos"]:
        for name in video["file_names"]:
            assert (cv2.imread(str(tmp_path / "small/train/JPEGImages" / name)) ==
                    cv2.imread(str(tmp_path / "large/train/JPEGImages" / name))).all()


@pytest.mark.parametrize("argv, message", [
    (["--videos", "0"], "--videos: must be >= 1"),
    (["--frames", "two"], "--frames: expected an integer"),
    (["--width", "16"], "--width: must be >= 32"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        synthetic.main(["--out", str(tmp_path / "o"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_process_reports_errors_without_traceback(tmp_path, python):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = python("-m", "vis_d2.data.synthetic", "--out", str(blocker / "out"), "--videos", "1",
                  "--frames", "1")
    assert proc.returncode == 2
    assert "cannot be written" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("cls", range(len(CLASS_NAMES)))
def test_main_colour_is_drawn_around_the_class_hue(cls):
    """About half of an object's texture (all of a solid one) is near its class's hue, little
    of it near another class's: colour family is a class cue, as the module says."""
    own, other = [], []
    for seed in range(12):
        texture = object_texture(np.random.default_rng(seed), cls)
        hsv = cv2.cvtColor(np.clip(texture, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
        hue = hsv[..., 0].astype(np.float64) / 256
        for k, centre in enumerate(CLASS_HUES):
            near = float(np.mean(np.abs((hue - centre + 0.5) % 1 - 0.5) < 0.07))
            (own if k == cls else other).append(near)
    assert np.mean(own) > 0.35
    assert np.mean(other) < 0.15
