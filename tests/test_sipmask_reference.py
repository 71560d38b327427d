"""The authors' SipMask image checkpoint format (mmdetection v1, R-50 high-accuracy), converted
as a user converts it and run through detectron2's model interface with
``SipMask_R50_1x_authors.yaml``, gives what the authors' code computes: the numbers of
``tests/fixtures/sipmask_reference.npz`` (written by ``dev/reference/sipmask.py`` from their
code; see ``tests/fixtures/README.md``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sipmask_reference as ref
import torch
from reference_checks import assert_close, assert_close_summary, converted_checkpoint

from vis_d2.engine.predictor import FramePreprocessor, load_model, setup_cfg
from vis_d2.modeling.fcos import fcos_inference
from vis_d2.modeling.fcos.targets import compute_locations

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/fixtures/sipmask_reference.npz"
CONFIG = REPO / "projects/SipMask/configs/SipMask_R50_1x_authors.yaml"
# the fixture's test scale, (1333, 800) halved: (long, short) = (667, 400)
SCALE = ["INPUT.MIN_SIZE_TEST", str(ref.TEST_SCALE[1]), "INPUT.MAX_SIZE_TEST",
         str(ref.TEST_SCALE[0])]  # fmt: skip
STRIDES = (8, 16, 32, 64, 128)


@pytest.fixture(scope="module")
def fixture():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def converted(fixture, tmp_path_factory) -> Path:
    """The checkpoint regenerated in the authors' format and converted by the user's tool."""
    return converted_checkpoint(ref, fixture, CONFIG, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def run(converted):
    """Per image: the model's input, its dense outputs, the detections on the input (with
    their cells) and the output of ``model([{"image", "height", "width"}])``."""
    cfg = setup_cfg(str(CONFIG), ["MODEL.WEIGHTS", str(converted), "MODEL.DEVICE", "cpu", *SCALE])
    model = load_model(cfg)
    preprocess = FramePreprocessor(cfg)
    results = []
    with torch.no_grad():
        for image in ref.images():
            inputs = preprocess(image)
            x = model.preprocess([inputs["image"]]).tensor
            features = model.backbone(x)
            levels = [features[f] for f in model.fcos.in_features]
            head = model.head_outputs(levels)
            results.append({
                "inputs": inputs,
                "x": x,
                "levels": levels,
                "head": head,
                "basis": model.basis(head["bbox_towers"][: model.basis_levels]),
                "on_input": model.inference(
                    inputs["image"].float(), (inputs["height"], inputs["width"])
                ),
                "out": model([inputs])[0]["instances"],
            })  # fmt: skip
    return results


def test_inputs_are_the_authors(fixture, run) -> None:
    assert ref.images_checksum(ref.images()) == str(fixture["images_sha256"])
    resized = [r["inputs"]["image"].permute(1, 2, 0).numpy() for r in run]
    assert ref.images_checksum(resized) == str(fixture["resized_sha256"]), "resized images"
    for n, r in enumerate(run):
        assert_close(ref.summarise(r["x"])["sample"], fixture[f"i{n}_input"], f"image {n} input")


def test_network_outputs_are_the_authors(fixture, run) -> None:
    for n, r in enumerate(run):
        for level, feature in enumerate(r["levels"]):
            assert_close_summary(ref, feature, fixture, f"i{n}_fpn{level}")
        head = r["head"]
        for level, stride in enumerate(STRIDES):
            assert_close_summary(ref, head["logits"][level], fixture, f"i{n}_logits{level}")
            assert_close_summary(ref, head["reg"][level] * stride, fixture, f"i{n}_reg{level}")
            assert_close_summary(ref, head["ctr"][level], fixture, f"i{n}_ctr{level}")
            assert_close_summary(ref, head["coefficients"][level], fixture, f"i{n}_coef{level}")
        assert_close_summary(ref, r["basis"], fixture, f"i{n}_basis")


def test_detections_are_the_authors(fixture, run) -> None:
    """The same cells kept, in the same order (by score), with their classes, boxes (in
    image pixels) and scores."""
    for n, r in enumerate(run):
        det, out = r["on_input"], r["out"]
        assert len(out) == len(fixture[f"i{n}_labels"]) > 0
        assert det.fpn_levels.tolist() == fixture[f"i{n}_levels"].tolist(), f"image {n} levels"
        assert det.loc_inds.tolist() == fixture[f"i{n}_cells"].tolist(), f"image {n} cells"
        assert out.pred_classes.tolist() == fixture[f"i{n}_labels"].tolist(), f"image {n}"
        assert_close(out.pred_boxes.tensor.numpy(), fixture[f"i{n}_boxes"], f"image {n} boxes")
        assert_close(out.scores.numpy(), fixture[f"i{n}_scores"], f"image {n} scores")


def test_masks_are_the_authors(fixture, run) -> None:
    for n, r in enumerate(run):
        out = r["out"]
        height, width = out.image_size
        theirs = np.unpackbits(fixture[f"i{n}_masks"], axis=-1, count=width).astype(bool)
        ours = out.pred_masks.numpy()
        assert ours.shape == theirs.shape
        assert theirs.any(axis=(1, 2)).all()  # the comparison covers every detection's mask
        # only pixels whose probability is within float rounding of the 0.4 threshold may
        # differ: the resizes are the same products in another order
        differing = int((ours != theirs).sum())
        assert differing <= 2, f"image {n}: {differing} px"


def test_their_nms_offset_is_an_original_image_pixel(fixture, converted) -> None:
    """Their NMS adds 1 to the boxes rescaled to the original image: counted in input pixels
    (``NMS_IOU_OFFSET_UNIT`` "input") the + 1 keeps other detections of these images."""
    cfg = setup_cfg(str(CONFIG), ["MODEL.WEIGHTS", str(converted), "MODEL.DEVICE", "cpu",
                                  "MODEL.FCOS.NMS_IOU_OFFSET_UNIT", "input", *SCALE])  # fmt: skip
    model = load_model(cfg)
    inputs = FramePreprocessor(cfg)(ref.images()[0])
    with torch.no_grad():
        det = model.inference(inputs["image"].float(), (inputs["height"], inputs["width"]))
    assert det.loc_inds.tolist() != fixture["i0_cells"].tolist()


def _dense_detections(unit: str, offset: float, output_size) -> list[int]:
    """The locations kept from one random dense level of 16 × 16 cells (input 128 × 128)."""
    g = torch.Generator().manual_seed(0)
    head = {
        "logits": [torch.randn(1, 2, 16, 16, generator=g)],
        "reg": [torch.rand(1, 4, 16, 16, generator=g) * 3 + 0.5],
        "ctr": [torch.randn(1, 1, 16, 16, generator=g)],
    }
    det = fcos_inference(
        head, [compute_locations(16, 16, 8, "cpu")], [8], [(128, 128)], score_thresh=0.05,
        pre_nms_topk=1000, post_nms_topk=1000, nms_thresh=0.5, thresh_with_ctr=False,
        nms_iou_offset=offset, nms_iou_offset_unit=unit,
        output_sizes=None if output_size is None else [output_size],
    )[0]  # fmt: skip
    return det.loc_inds.tolist()


def test_nms_offset_in_output_pixels_scales_by_input_over_output() -> None:
    """1 output pixel of an image shown at half its input size is 2 input pixels."""
    kept = _dense_detections("output", 1.0, (64, 64))
    assert kept == _dense_detections("input", 2.0, None)
    assert kept != _dense_detections("input", 0.5, None)
    assert _dense_detections("output", 1.0, (128, 128)) == _dense_detections("input", 1.0, None)
    with pytest.raises(ValueError, match="'output' needs the output sizes"):
        _dense_detections("output", 1.0, None)
    with pytest.raises(ValueError, match="NMS_IOU_OFFSET_UNIT 'original' is not one of"):
        _dense_detections("original", 1.0, None)
