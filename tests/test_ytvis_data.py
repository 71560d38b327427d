"""YouTube-VIS loading, builtin registration, mappers and loaders."""

import copy
import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import rle, write_video_dataset
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from vis_d2 import add_vis_config
from vis_d2.data import (
    BUILTIN_SPLITS,
    DatasetFormatError,
    VideoFrames,
    YTVISDatasetMapper,
    YTVISTestMapper,
    build_video_test_loader,
    build_video_train_loader,
    load_ytvis_json,
    register_ytvis_instances,
    sample_reference_frame,
)
from vis_d2.engine.predictor import FramePreprocessor

H, W = 24, 32


def _box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _gt_json(**overrides):
    """Three encodings in one file: compressed RLE, uncompressed RLE, polygons; null frames."""
    m = _box_mask(2, 3, 10, 9)  # x 2..9, y 3..8 -> bbox [2, 3, 8, 6], area 48
    # uncompressed RLE: column-major run lengths starting with a background run; columns 0-1
    # (2 * 24 background), then per column 2..9: 6 object rows between 3 + 15 background rows
    runs = [2 * H + 3] + [6, 18] * 7 + [6, 15 + (W - 10) * H]
    uncompressed = {"size": [H, W], "counts": runs}
    polygon = [[12.0, 2.0, 20.0, 2.0, 20.0, 12.0, 12.0, 12.0]]
    data = {
        "videos": [
            {
                "id": 7,
                "file_names": ["v/0.jpg", "v/1.jpg", "v/2.jpg"],
                "height": H,
                "width": W,
                "length": 3,
            }
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
        "annotations": [
            {
                "id": 11,
                "video_id": 7,
                "category_id": 3,
                "iscrowd": 0,
                "segmentations": [rle(m), None, uncompressed],
                "bboxes": [[2, 3, 8, 6], None, [0, 0, 0, 0]],
                "areas": [48, None, 48],
            },
            {
                "id": 12,
                "video_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [None, polygon, None],
                "bboxes": [None, [12, 2, 8, 10], None],
                "areas": [None, 80, None],
            },
        ],
    }
    data.update(overrides)
    return data


def _write(tmp_path, data, name="gt.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_load_all_encodings_and_null_frames(tmp_path):
    (video,) = load_ytvis_json(_write(tmp_path, _gt_json()), "/images")
    assert video["video_id"] == 7 and video["length"] == 3
    assert video["file_names"] == ["/images/v/0.jpg", "/images/v/1.jpg", "/images/v/2.jpg"]
    f0, f1, f2 = video["annotations"]
    # categories sorted by dataset id: dog (1) -> 0, cat (3) -> 1
    assert [(o["id"], o["category_id"]) for o in f0] == [(11, 1)]
    assert [(o["id"], o["category_id"]) for o in f1] == [(12, 0)]
    assert [o["id"] for o in f2] == [11]
    assert f0[0]["bbox"] == [2, 3, 8, 6] and f0[0]["bbox_mode"] == BoxMode.XYWH_ABS
    # the degenerate box of frame 2 is replaced by the mask's own box
    assert f2[0]["bbox"] == [2, 3, 8, 6]
    # uncompressed RLE becomes compressed, equal to the same mask
    assert isinstance(f2[0]["segmentation"]["counts"], str)
    assert (mask_util.decode(f2[0]["segmentation"]) == _box_mask(2, 3, 10, 9)).all()
    assert f1[0]["segmentation"] == [[12.0, 2.0, 20.0, 2.0, 20.0, 12.0, 12.0, 12.0]]


def test_load_sets_or_checks_metadata(tmp_path):
    path = _write(tmp_path, _gt_json())
    name = "vis_d2_test_meta"
    MetadataCatalog.remove(name) if name in MetadataCatalog.list() else None
    load_ytvis_json(path, "", name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["dog", "cat"]
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 3: 1}
    other = "vis_d2_test_meta_other"
    MetadataCatalog.get(other).set(
        thing_classes=["x", "y"], thing_dataset_id_to_contiguous_id={1: 0, 3: 1}
    )
    with pytest.raises(DatasetFormatError, match="differ from those registered"):
        load_ytvis_json(path, "", other)


def test_split_without_annotations(tmp_path):
    (video,) = load_ytvis_json(_write(tmp_path, _gt_json(annotations=None)), "")
    assert "annotations" not in video


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("videos"), "'videos' must be a list"),
        (lambda d: d["videos"][0].pop("height"), "missing key.*height"),
        (lambda d: d["videos"][0].update(length=4), "video 7: length 4 but 3 file_names"),
        (
            lambda d: d["videos"][0].update(file_names=[], length=0),
            "video 7: 'file_names' must be a non-empty",
        ),
        (lambda d: d["annotations"][0].update(video_id=99), "annotation 11 .*unknown video id"),
        (
            lambda d: d["annotations"][0].update(category_id=5),
            "annotation 11 .*unknown category id 5",
        ),
        (
            lambda d: d["annotations"][1].update(segmentations=[None]),
            "annotation 12 .*must list 3 frames",
        ),
        (
            lambda d: d["annotations"][0]["segmentations"][0].update(size=[H + 1, W]),
            "annotation 11 .*frame 0: mask size \\[25, 32\\] differs",
        ),
        (
            lambda d: d["annotations"][1]["segmentations"].__setitem__(1, [[1.0, 2.0]]),
            "annotation 12 .*frame 1: malformed polygon",
        ),
        (lambda d: d["annotations"][1]["segmentations"].__setitem__(1, 5), "segmentation must be"),
        (
            lambda d: d["annotations"].append(copy.deepcopy(d["annotations"][0])),
            "duplicate annotation id",
        ),
    ],
)
def test_bad_json_names_file_and_item(tmp_path, mutate, message):
    data = _gt_json()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_ytvis_json(path, "")
    assert path in str(e.value)


def test_malformed_and_missing_json(tmp_path):
    path = _write(tmp_path, '{"videos": [', "broken.json")
    with pytest.raises(DatasetFormatError, match="broken.json: not valid JSON"):
        load_ytvis_json(path, "")
    with pytest.raises(FileNotFoundError, match="missing.json does not exist.*DETECTRON2_DATASETS"):
        load_ytvis_json(str(tmp_path / "missing.json"), "")


def test_empty_masks_and_all_null_instances_are_reported(tmp_path, caplog):
    data = _gt_json()
    data["annotations"][1]["segmentations"] = [None, rle(np.zeros((H, W), bool)), None]
    with caplog.at_level(logging.WARNING, logger="vis_d2.data.ytvis"):
        (video,) = load_ytvis_json(_write(tmp_path, data), "")
    assert all(o["id"] != 12 for frame in video["annotations"] for o in frame)
    assert "1 frame segmentations with an empty mask" in caplog.text
    assert "1 annotations have no visible frame" in caplog.text and "[12]" in caplog.text


def test_builtin_splits_registered(monkeypatch):
    names = DatasetCatalog.list()
    for year in ("2019", "2021"):
        for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
            name = f"ytvis_{year}_{split}"
            assert name in names
            meta = MetadataCatalog.get(name)
            assert meta.json_file.endswith(f"ytvis_{year}/{folder}.json")
            assert meta.image_root.endswith(f"ytvis_{year}/{folder}/JPEGImages")
            assert len(meta.thing_classes) == 40 and meta.evaluator_type == "ytvis"
            assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(40)}
    assert MetadataCatalog.get("ytvis_2019_train").thing_classes[0] == "person"
    assert MetadataCatalog.get("ytvis_2021_val").thing_classes[-1] == "zebra"
    ovis = MetadataCatalog.get("ovis_val")
    assert len(ovis.thing_classes) == 25
    assert ovis.json_file.endswith("ovis/annotations/annotations_valid.json")
    assert {"synthetic_vis_train", "synthetic_vis_val"} <= set(names)
    colors = MetadataCatalog.get("ytvis_2019_train").thing_colors
    assert len(colors) == 40 and colors == MetadataCatalog.get("ytvis_2021_train").thing_colors
    assert len(BUILTIN_SPLITS) == 3 + 3 + 3 + 2


def test_sample_reference_frame():
    rng = np.random.default_rng(0)
    draws = {sample_reference_frame(5, 10, 2, rng) for _ in range(200)}
    assert draws == {3, 4, 6, 7}
    assert {sample_reference_frame(0, 10, 2, rng) for _ in range(100)} == {1, 2}
    assert sample_reference_frame(0, 1, 2, rng) == 0  # single frame: itself


def _asymmetric_video(num_frames=4):
    """Every frame the same picture; one L-shaped object (not symmetric under a flip)."""
    frame = np.zeros((H, W, 3), dtype=np.uint8)
    frame[..., 0] = np.arange(W, dtype=np.uint8)[None] * 7
    mask = _box_mask(3, 4, 9, 20) | _box_mask(3, 16, 20, 20)
    frame[mask] = (0, 255, 0)
    return {
        "frames": [frame] * num_frames,
        "tracks": [{"category_id": 1, "masks": [mask] * num_frames}],
    }


def _register_written(name, json_path, image_root):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_ytvis_instances(name, {}, str(json_path), str(image_root))


def test_train_mapper_applies_the_same_augmentation_to_both_frames(tmp_path):
    path = write_video_dataset(tmp_path, [_asymmetric_video()])
    (video,) = load_ytvis_json(str(path), str(tmp_path / "JPEGImages"))
    mapper = YTVISDatasetMapper(
        augmentations=[
            T.ResizeShortestEdge((16, 20, 28, 36), 100, "choice"),
            T.RandomFlip(prob=0.5),
        ],
        image_format="BGR",
        ref_frame_range=2,
        seed=0,
    )
    shapes, flips = set(), set()
    for _ in range(30):
        out = mapper(copy.deepcopy(video))
        assert out["frame_idx"] != out["ref_frame_idx"]
        assert abs(out["frame_idx"] - out["ref_frame_idx"]) <= 2
        # identical frames + identical transform -> identical outputs
        assert torch.equal(out["image"], out["ref_image"])
        a, b = out["instances"], out["ref_instances"]
        assert torch.equal(a.gt_boxes.tensor, b.gt_boxes.tensor)
        assert torch.equal(a.gt_masks.tensor, b.gt_masks.tensor)
        assert a.gt_ids.tolist() == b.gt_ids.tolist() == [1]
        assert a.gt_classes.tolist() == [0]
        shapes.add(tuple(out["image"].shape))
        # the horizontal bar of the L is at the bottom; its long end says which way it was flipped
        m = a.gt_masks.tensor[0]
        flips.add(bool(m[-5:, : m.shape[1] // 2].sum() < m[-5:, m.shape[1] // 2 :].sum()))
    assert len(shapes) > 1 and flips == {True, False}  # the augmentation really varied


def test_train_mapper_flip_moves_boxes(tmp_path):
    path = write_video_dataset(tmp_path, [_asymmetric_video(2)])
    (video,) = load_ytvis_json(str(path), str(tmp_path / "JPEGImages"))
    mapper = YTVISDatasetMapper(
        augmentations=[T.RandomFlip(prob=1.0)], image_format="BGR", ref_frame_range=2, seed=0
    )
    out = mapper(video)
    # the L spans x 3..19 (box [3, 4, 20, 20]); flipped in a width of 32 -> [12, 4, 29, 20]
    assert out["instances"].gt_boxes.tensor.tolist() == [[12.0, 4.0, 29.0, 20.0]]
    assert out["ref_instances"].gt_boxes.tensor.tolist() == [[12.0, 4.0, 29.0, 20.0]]


def test_frames_at_the_input_size_reach_the_model_unresized(tmp_path, monkeypatch):
    source = _asymmetric_video(2)
    path = write_video_dataset(tmp_path, [source])
    (video,) = load_ytvis_json(str(path), str(tmp_path / "JPEGImages"))
    resized = []
    resize = T.ResizeTransform.apply_image
    monkeypatch.setattr(
        T.ResizeTransform,
        "apply_image",
        lambda self, *args, **kwargs: resized.append(self) or resize(self, *args, **kwargs),
    )
    augmentations = [T.ResizeShortestEdge(H, 1000), T.RandomFlip(prob=1.0)]
    mapper = YTVISDatasetMapper(
        augmentations=augmentations, image_format="BGR", ref_frame_range=2, seed=0
    )
    out = mapper(video)
    flipped = source["frames"][0][:, ::-1]
    assert torch.equal(out["image"], torch.as_tensor(flipped.transpose(2, 0, 1).copy()))
    mask = source["tracks"][0]["masks"][0][:, ::-1]
    assert torch.equal(out["instances"].gt_masks.tensor, torch.as_tensor(mask.copy())[None])
    test_frames = YTVISTestMapper(augmentations=augmentations[:1], image_format="BGR")(video)
    image = test_frames["frames"][1]["image"]
    assert torch.equal(image, torch.as_tensor(source["frames"][1].transpose(2, 0, 1).copy()))
    cfg = add_vis_config(get_cfg())  # the demo's frames
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = H, 1000
    image = FramePreprocessor(cfg)(source["frames"][0])["image"]
    assert torch.equal(image, torch.as_tensor(source["frames"][0].transpose(2, 0, 1).copy()))
    assert not resized
    # a resize that changes the size still runs
    mapper = YTVISDatasetMapper(
        augmentations=[T.ResizeShortestEdge(2 * H, 1000)], image_format="BGR", ref_frame_range=2
    )
    assert mapper(video)["image"].shape == (3, 2 * H, 2 * W) and resized


def test_missing_frame_file_names_video_and_file(tmp_path):
    path = write_video_dataset(tmp_path, [_asymmetric_video(2)])
    (tmp_path / "JPEGImages" / "v1" / "00001.png").unlink()
    (video,) = load_ytvis_json(str(path), str(tmp_path / "JPEGImages"))
    frames = YTVISTestMapper(augmentations=[], image_format="BGR")(video)["frames"]
    assert frames[0]["image"].shape == (3, H, W)
    with pytest.raises(FileNotFoundError, match="video 1: frame 1 file .*00001.png does not exist"):
        frames[1]
    (tmp_path / "JPEGImages" / "v1" / "00000.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match="video 1: frame 0 file .*00000.png cannot be decoded"):
        frames[0]


def test_test_mapper_is_lazy_and_resizes(tmp_path):
    path = write_video_dataset(tmp_path, [_asymmetric_video(3)], with_annotations=False)
    (video,) = load_ytvis_json(str(path), str(tmp_path / "JPEGImages"))
    out = YTVISTestMapper(augmentations=[T.ResizeShortestEdge(48, 1000)], image_format="RGB")(video)
    frames = out["frames"]
    assert isinstance(frames, VideoFrames) and len(frames) == 3
    items = list(frames)
    assert [f["frame_idx"] for f in items] == [0, 1, 2]
    assert [f["is_first"] for f in items] == [True, False, False]
    assert items[0]["image"].shape == (3, 48, 64)
    assert (items[0]["height"], items[0]["width"]) == (H, W)
    # RGB: the green object is in channel 1
    assert items[0]["image"][1].max() == 255 and items[0]["image"][0].max() < 255


def _cfg(train, test):
    cfg = add_vis_config(get_cfg())
    cfg.DATASETS.TRAIN = (train,)
    cfg.DATASETS.TEST = (test,)
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.INPUT.MIN_SIZE_TEST = 24
    cfg.INPUT.MAX_SIZE_TEST = 64
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def test_train_and_test_loaders(tmp_path):
    empty = {"frames": _asymmetric_video(2)["frames"], "tracks": []}
    path = write_video_dataset(tmp_path, [_asymmetric_video(3), empty])
    _register_written("vis_d2_test_loader", path, tmp_path / "JPEGImages")
    cfg = _cfg("vis_d2_test_loader", "vis_d2_test_loader")
    batch = next(iter(build_video_train_loader(cfg)))
    assert len(batch) == 2
    assert all(item["video_id"] == 1 for item in batch)  # the video without instances is left out
    videos = list(build_video_test_loader(cfg, "vis_d2_test_loader"))
    assert [v[0]["video_id"] for v in videos] == [1, 2]
    assert len(videos[0][0]["frames"]) == 3
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    with pytest.raises(ValueError, match="RepeatFactorTrainingSampler is not supported"):
        build_video_train_loader(cfg)
