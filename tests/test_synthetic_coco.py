"""The synthetic set's frames as a COCO instances set (``--coco``), read and scored by
detectron2's own parts: ``register_coco_instances``, ``DatasetMapper``, ``COCOEvaluator``."""

import json
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from vis_d2.data.synthetic import main


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_coco")
    argv = ["--out", str(out), "--videos", "3", "--frames", "3", "--val-videos", "2",
            "--width", "96", "--height", "64", "--coco", "--no-progress"]
    assert main(argv) == 0
    name = f"synthetic_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(
        name, {}, str(out / "valid_coco.json"), str(out / "valid" / "JPEGImages"))
    yield out, name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _visible(ytvis: dict) -> list[tuple[str, int, dict]]:
    """(frame file, category id, RLE) of every visible instance of a YouTube-VIS dict."""
    files = {v["id"]: v["file_names"] for v in ytvis["videos"]}
    return [(files[a["video_id"]][t], a["category_id"], seg)
            for a in ytvis["annotations"] for t, seg in enumerate(a["segmentations"])
            if seg is not None]


def test_every_frame_and_visible_instance_is_in_the_coco_set(coco_set):
    out, name = coco_set
    ytvis = json.loads((out / "valid.json").read_text())
    records = DatasetCatalog.get(name)
    assert len(records) == sum(v["length"] for v in ytvis["videos"]) == 6
    expected = sorted((f, c, s["counts"]) for f, c, s in _visible(ytvis))
    assert expected, "the set has no visible instance"
    thing_ids = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    got = sorted(
        (r["file_name"].split("JPEGImages/")[1], [k for k, v in thing_ids.items()
                                                  if v == a["category_id"]][0],
         a["segmentation"]["counts"])
        for r in records for a in r["annotations"])
    assert got == expected
    assert (out / "train_coco.json").is_file()


def test_detectron2_mapper_gives_the_frame_masks(coco_set):
    _, name = coco_set
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format="BGR",
                           use_instance_mask=True, instance_mask_format="bitmask")
    record = next(r for r in DatasetCatalog.get(name) if r["annotations"])
    item = mapper(record)
    assert item["image"].shape == (3, 64, 96)
    masks = item["instances"].gt_masks.tensor.numpy()
    expected = np.stack([mask_util.decode(a["segmentation"]) for a in record["annotations"]])
    np.testing.assert_array_equal(masks, expected.astype(bool))


def test_coco_evaluator_scores_the_ground_truth_as_perfect(coco_set):
    _, name = coco_set
    evaluator = COCOEvaluator(name, tasks=("bbox", "segm"), distributed=False)
    evaluator.reset()
    for record in DatasetCatalog.get(name):
        anns = record["annotations"]
        inst = Instances((record["height"], record["width"]))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        inst.pred_masks = torch.from_numpy(
            np.stack([mask_util.decode(a["segmentation"]) for a in anns]).astype(bool)
            if anns else np.zeros((0, record["height"], record["width"]), bool))
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["bbox"]["AP"] == pytest.approx(100.0)
