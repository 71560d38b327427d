"""The authors' SipMask-VIS checkpoint format, converted as a user converts it, run through the
predictor with ``SipMaskVIS_R50_authors.yaml``, gives what the authors' code computes: the
numbers of ``tests/fixtures/sipmask_vis_reference.npz`` (written by
``dev/reference/sipmask_vis.py`` from their code; see ``tests/fixtures/README.md``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sipmask_vis_reference as ref
import torch
from reference_checks import assert_close, assert_close_summary, converted_checkpoint

from vis_d2.engine.predictor import FramePreprocessor, load_model, setup_cfg
from vis_d2.modeling.common import box_iou_with_offset
from vis_d2.modeling.meta_arch import normalize_and_pad

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/fixtures/sipmask_vis_reference.npz"
CONFIG = REPO / "projects/SipMaskVIS/configs/SipMaskVIS_R50_authors.yaml"
STRIDES = (8, 16, 32, 64, 128)


@pytest.fixture(scope="module")
def fixture():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def converted(fixture, tmp_path_factory) -> Path:
    """The checkpoint regenerated in the authors' format and converted by the user's tool."""
    return converted_checkpoint(ref, fixture, CONFIG, tmp_path_factory.mktemp("reference"))


def _predictor(converted: Path, *opts: str):
    cfg = setup_cfg(str(CONFIG), ["MODEL.WEIGHTS", str(converted), "MODEL.DEVICE", "cpu", *opts])
    return cfg, load_model(cfg), FramePreprocessor(cfg)


@pytest.fixture(scope="module")
def run(converted):
    """Per frame: the predictor's input, the model's dense outputs on it, the tracked
    instances of ``inference_frame`` (the path of tools/demo.py) and the IoUs of its match
    score against the tracker's memory."""
    cfg, model, preprocess = _predictor(converted)
    results = []
    with torch.no_grad():
        for t, frame in enumerate(ref.frames()):
            inputs = preprocess(frame)
            image = inputs["image"].float()
            x = normalize_and_pad(image, model.pixel_mean, model.pixel_std,
                                  model.backbone.size_divisibility)  # fmt: skip
            features = model.backbone(x)
            levels = [features[f] for f in model.fcos.in_features]
            head = model.head_outputs(levels)
            memory = model.tracker.boxes.clone()
            out = model.inference_frame({**inputs, "is_first": t == 0})
            offset = cfg.MODEL.TRACKER.BOX_IOU_OFFSET
            results.append({
                "inputs": inputs,
                "x": x,
                "levels": levels,
                "head": head,
                "basis": model.basis(head["bbox_towers"][: model.basis_levels]),
                "embed": model.embeddings(levels),
                "out": out,
                "ious": box_iou_with_offset(out.pred_boxes.tensor, memory, offset),
            })  # fmt: skip
    return results


def test_inputs_are_the_authors(fixture, run) -> None:
    assert ref.frames_checksum(ref.frames()) == str(fixture["frames_sha256"])
    resized = [r["inputs"]["image"].permute(1, 2, 0).numpy() for r in run]
    assert ref.frames_checksum(resized) == str(fixture["resized_sha256"]), "resized frames"
    for t, r in enumerate(run):
        assert_close(ref.summarise(r["x"])["sample"], fixture[f"f{t}_input"], f"frame {t} input")


def test_network_outputs_are_the_authors(fixture, run) -> None:
    for t, r in enumerate(run):
        for level, feature in enumerate(r["levels"]):
            assert_close_summary(ref, feature, fixture, f"f{t}_fpn{level}")
        head = r["head"]
        for level, stride in enumerate(STRIDES):
            assert_close_summary(ref, head["logits"][level], fixture, f"f{t}_logits{level}")
            assert_close_summary(ref, head["reg"][level] * stride, fixture, f"f{t}_reg{level}")
            assert_close_summary(ref, head["ctr"][level], fixture, f"f{t}_ctr{level}")
            assert_close_summary(ref, head["coefficients"][level], fixture, f"f{t}_coef{level}")
        assert_close_summary(ref, r["basis"], fixture, f"f{t}_basis")
        assert_close_summary(ref, r["embed"], fixture, f"f{t}_embed")


def test_detections_masks_and_ids_are_the_authors(fixture, run) -> None:
    for t, r in enumerate(run):
        out = r["out"]
        labels = fixture[f"f{t}_labels"]
        assert out.pred_classes.tolist() == labels.tolist(), f"frame {t} kept classes"
        assert_close(out.pred_boxes.tensor.numpy(), fixture[f"f{t}_boxes"], f"frame {t} boxes")
        assert_close(out.scores.numpy(), fixture[f"f{t}_scores"], f"frame {t} scores")
        assert out.track_ids.tolist() == fixture[f"f{t}_ids"].tolist(), f"frame {t} ids"
        height, width = out.image_size
        theirs = np.unpackbits(fixture[f"f{t}_masks"], axis=-1, count=width).astype(bool)
        ours = out.pred_masks.numpy()
        assert ours.shape == theirs.shape
        # only pixels whose probability is within float rounding of the 0.5 threshold may
        # differ: the resizes are the same products in another order
        assert int((ours != theirs).sum()) <= 2, f"frame {t}: {int((ours != theirs).sum())} px"


def test_tracker_ious_are_the_authors(fixture, run) -> None:
    """The box IoUs of the match score (bbox_overlaps, + 1): on these frames the ids would not
    change without the + 1, so they are compared themselves."""
    for t, r in enumerate(run[1:], start=1):
        assert_close(r["ious"].numpy(), fixture[f"f{t}_track_ious"], f"frame {t} tracker IoUs")


def test_dense_detections_are_the_authors(fixture, converted) -> None:
    """Frame 0 with every score a candidate and 100 detections kept, where the per-level top
    200 locations and the clamp before NMS decide which boxes stay."""
    _, model, preprocess = _predictor(
        converted, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "100"
    )
    with torch.no_grad():
        out = model.inference_frame({**preprocess(ref.frames()[0]), "is_first": True})
    assert out.pred_classes.tolist() == fixture["dense_labels"].tolist()
    assert_close(out.pred_boxes.tensor.numpy(), fixture["dense_boxes"], "dense boxes")
    assert_close(out.scores.numpy(), fixture["dense_scores"], "dense scores")
