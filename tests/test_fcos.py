"""FCOS parts against hand-derived values."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torchvision.ops import sigmoid_focal_loss

from vis_d2 import add_vis_config
from vis_d2.modeling.fcos import (
    FCOS,
    FCOSHead,
    assign_targets,
    box_loss,
    centerness_targets,
    compute_locations,
    fcos_inference,
    level_size_ranges,
    ltrb_iou_giou,
)

STRIDES = [8, 16, 32, 64, 128]
NUM_CLASSES = 10


def _gt(boxes, classes, size=(128, 128)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def _assign(gt, size=128, center_sample=True):
    locs = [compute_locations(math.ceil(size / s), math.ceil(size / s), s) for s in STRIDES]
    t = assign_targets(
        locs,
        STRIDES,
        level_size_ranges([64, 128, 256, 512]),
        [gt],
        NUM_CLASSES,
        center_sample=center_sample,
        pos_radius=1.5,
    )
    return t


def _positives(t):
    pos = t.positive(NUM_CLASSES)
    return {(int(t.levels[i]), *t.locations[i].int().tolist()): i for i in pos.tolist()}


def test_locations_row_major_cell_centres():
    locs = compute_locations(2, 3, 8)
    assert locs.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]


def test_size_ranges():
    assert level_size_ranges([64, 128, 256, 512]) == [
        (-1, 64),
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 1e8),
    ]


def test_assignment_single_gt_with_centre_sampling():
    t = _assign(_gt([[0, 0, 40, 40]], [3]))
    pos = _positives(t)
    assert set(pos) == {(0, x, y) for x in (12, 20, 28) for y in (12, 20, 28)}
    assert all(int(t.labels[i]) == 3 for i in pos.values())
    assert (t.labels[t.levels > 0] == NUM_CLASSES).all()
    i = pos[(0, 12, 12)]
    assert t.reg[i].tolist() == [1.5, 1.5, 3.5, 3.5]
    ctr = centerness_targets(t.reg[[pos[(0, 12, 12)], pos[(0, 12, 20)], pos[(0, 20, 20)]]])
    assert ctr.tolist() == pytest.approx([0.428571, 0.654654, 1.0], abs=1e-5)


def test_assignment_without_centre_sampling():
    pos = _positives(_assign(_gt([[0, 0, 40, 40]], [3]), center_sample=False))
    assert set(pos) == {(0, x, y) for x in (4, 12, 20, 28, 36) for y in (4, 12, 20, 28, 36)}


def test_ambiguity_goes_to_the_smaller_box():
    t = _assign(_gt([[0, 0, 40, 40], [8, 8, 32, 32]], [3, 5]))
    pos = _positives(t)
    assert set(pos) == {(0, x, y) for x in (12, 20, 28) for y in (12, 20, 28)}
    assert {int(t.labels[i]) for i in pos.values()} == {5}
    assert {int(t.gt_inds[i]) for i in pos.values()} == {1}


def test_level_selection_by_size():
    t = _assign(_gt([[0, 0, 200, 100]], [0], size=(256, 256)), size=256)
    pos = _positives(t)
    assert (1, 104, 56) in pos  # P4: max ltrb 104 in [64, 128], inside the r=24 centre box
    assert (0, 100, 52) not in pos  # P3: max distance 100 > 64


def test_no_gt_everything_is_background():
    t = _assign(_gt([], []))
    assert (t.labels == NUM_CLASSES).all() and (t.gt_inds == -1).all()


def test_gt_indices_are_global_across_images():
    locs = [compute_locations(16, 16, 8)]
    t = assign_targets(
        locs,
        [8],
        [(-1, 1e8)],
        [_gt([[0, 0, 40, 40]], [1]), _gt([[0, 0, 30, 30], [64, 64, 120, 120]], [2, 4])],
        NUM_CLASSES,
    )
    pos = t.positive(NUM_CLASSES)
    by_image = {int(i): set() for i in t.im_inds[pos]}
    for p in pos.tolist():
        by_image[int(t.im_inds[p])].add(int(t.gt_inds[p]))
    assert by_image == {0: {0}, 1: {1, 2}}
    # level-first order: image 0's 256 locations then image 1's
    assert t.im_inds[:256].eq(0).all() and t.im_inds[256:].eq(1).all()
    assert t.loc_inds.tolist() == list(range(256)) * 2


def test_iou_giou_from_ltrb_and_losses():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    iou, giou = ltrb_iou_giou(pred, target)
    assert iou.item() == pytest.approx(5 / 17, abs=1e-6)
    assert giou.item() == pytest.approx(5 / 17, abs=1e-6)
    assert box_loss(pred, target, "giou").item() == pytest.approx(12 / 17, abs=1e-6)
    assert box_loss(target, target, "giou").item() == pytest.approx(0.0, abs=1e-6)
    assert box_loss(target, target, "iou").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="unknown box loss"):
        box_loss(pred, target, "l1")


def test_log_giou_values_and_gradient():
    # L = -ln((1 + g) / 2) at g = 1, 0, -0.5, 0.5
    def log_giou(g):
        return -torch.log(((1 + g) / 2).clamp(min=1e-6))

    g = torch.tensor([1.0, 0.0, -0.5, 0.5], requires_grad=True)
    values = log_giou(g)
    assert values.tolist() == pytest.approx([0.0, 0.693147, 1.386294, 0.287682], abs=1e-5)
    values.sum().backward()
    assert g.grad.tolist() == pytest.approx([-1 / (1 + x) for x in [1.0, 0.0, -0.5, 0.5]])
    # the loss as used: disjoint boxes far apart push giou towards -1 and stay finite
    far = box_loss(
        torch.tensor([[0.0, 0.0, 0.01, 0.01]]), torch.tensor([[500.0, 500.0, 0.0, 0.0]]), "log_giou"
    )
    assert torch.isfinite(far).all()


def test_focal_loss_values_and_prior():
    logit = torch.zeros(2)
    loss = sigmoid_focal_loss(logit, torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2.0)
    assert loss.tolist() == pytest.approx([0.0433217, 0.1299651], abs=1e-6)
    head = _tiny_fcos().head
    assert head.cls_logits.bias.tolist() == pytest.approx([-4.59512] * NUM_CLASSES, abs=1e-5)


def _tiny_fcos(**overrides):
    cfg = add_vis_config(get_cfg())
    cfg.MODEL.FCOS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.FCOS.NUM_CLS_CONVS = 1
    cfg.MODEL.FCOS.NUM_BOX_CONVS = 1
    for k, v in overrides.items():
        setattr(cfg.MODEL.FCOS, k, v)
    shapes = {
        f"p{i}": ShapeSpec(channels=32, stride=s) for i, s in zip(range(3, 8), STRIDES, strict=True)
    }
    return FCOS(cfg, shapes)


def test_tower_norm_is_groupnorm_or_none_and_other_norms_are_refused():
    def group_norms(norm: str) -> int:
        head = _tiny_fcos(NORM=norm).head
        return sum(isinstance(m, torch.nn.GroupNorm) for m in head.modules())

    assert (group_norms("GN"), group_norms("")) == (2, 0)  # one cls conv, one box conv
    with pytest.raises(ValueError, match="tower norm 'BN' is not supported"):
        _tiny_fcos(NORM="BN")


def _features(size=128, batch=2):
    torch.manual_seed(0)
    return {
        f"p{i}": torch.randn(batch, 32, math.ceil(size / s), math.ceil(size / s))
        for i, s in zip(range(3, 8), STRIDES, strict=True)
    }


def test_losses_without_gt_are_finite_and_backward_works():
    fcos = _tiny_fcos().train()
    feats = _features()
    images = ImageList(torch.zeros(2, 3, 128, 128), [(128, 128)] * 2)
    _, losses, _ = fcos(images, feats, [_gt([], []), _gt([], [])])
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_fcos_loc"].item() == 0 and losses["loss_fcos_ctr"].item() == 0
    sum(losses.values()).backward()
    _, losses, _ = fcos(images, feats, [_gt([[0, 0, 40, 40]], [3]), _gt([], [])])
    assert losses["loss_fcos_loc"].item() > 0 and losses["loss_fcos_ctr"].item() > 0
    sum(losses.values()).backward()
    assert fcos.head.bbox_pred.weight.grad.abs().sum() > 0


def _head_with(boxes_ltrb_px, cls_logits, ctr_logits, locations_xy, stride=8, size=64):
    """A single-level head output whose cells at ``locations_xy`` carry the given predictions."""
    hw = size // stride
    logits = torch.full((1, NUM_CLASSES, hw, hw), -20.0)
    reg = torch.zeros(1, 4, hw, hw)
    ctr = torch.full((1, 1, hw, hw), -20.0)
    for (x, y), ltrb, cl, c in zip(
        locations_xy, boxes_ltrb_px, cls_logits, ctr_logits, strict=True
    ):
        j, i = x // stride, y // stride
        logits[0, :, i, j] = torch.tensor(cl)
        reg[0, :, i, j] = torch.tensor(ltrb, dtype=torch.float32) / stride
        ctr[0, 0, i, j] = c
    return {"logits": [logits], "reg": [reg], "ctr": [ctr]}, [compute_locations(hw, hw, stride)]


def _infer(head, locs, **kw):
    args = {
        "score_thresh": 0.05,
        "pre_nms_topk": 1000,
        "post_nms_topk": 100,
        "nms_thresh": 0.6,
        "thresh_with_ctr": False,
    }
    args.update(kw)
    return fcos_inference(head, locs, [8], [(64, 64)], **args)[0]


def test_inference_score_nms_and_topk():
    cls_a = [-20.0] * NUM_CLASSES
    cls_a[2] = 2.0
    cls_b = [-20.0] * NUM_CLASSES
    cls_b[4] = 2.0
    # [10,10,30,30] and [10,18,30,35]: IoU = 240 / (400 + 340 - 240) = 0.48 -> both survive
    head, locs = _head_with(
        [(10, 10, 10, 10), (10, 10, 10, 7)], [cls_a, cls_a], [1.0, 0.0], [(20, 20), (20, 28)]
    )
    out = _infer(head, locs)
    assert len(out) == 2
    expected = math.sqrt(torch.sigmoid(torch.tensor(2.0)) * torch.sigmoid(torch.tensor(1.0)))
    assert out.scores[0].item() == pytest.approx(expected, abs=1e-6)
    assert out.pred_classes.tolist() == [2, 2]
    assert out.pred_boxes.tensor.tolist() == [[10, 10, 30, 30], [10, 18, 30, 35]]
    assert out.fpn_levels.tolist() == [0, 0] and out.locations[0].tolist() == [20, 20]
    assert out.loc_inds.tolist() == [2 * 8 + 2, 3 * 8 + 2]
    # [10,10,30,30] and [12,10,32,30]: IoU = 360 / 440 = 0.82 -> one survivor of the same class,
    # both when the classes differ
    same, locs = _head_with(
        [(10, 10, 10, 10), (16, 10, 4, 10)], [cls_a, cls_a], [1.0, 0.0], [(20, 20), (28, 20)]
    )
    assert len(_infer(same, locs)) == 1
    differ, locs = _head_with(
        [(10, 10, 10, 10), (16, 10, 4, 10)], [cls_a, cls_b], [1.0, 0.0], [(20, 20), (28, 20)]
    )
    assert len(_infer(differ, locs)) == 2
    assert len(_infer(differ, locs, post_nms_topk=1)) == 1


def test_class_agnostic_nms_and_class_scores():
    cls_a = [-20.0] * NUM_CLASSES
    cls_a[2], cls_a[4] = 2.0, 0.5
    cls_b = [-20.0] * NUM_CLASSES
    cls_b[4] = 1.0
    # [10,10,30,30] and [12,10,32,30]: IoU 0.82, different classes
    head, locs = _head_with(
        [(10, 10, 10, 10), (16, 10, 4, 10)], [cls_a, cls_b], [1.0, 0.0], [(20, 20), (28, 20)]
    )
    per_class = _infer(head, locs)
    # per class: cell (20, 20)'s class-4 candidate (score 0.67) suppresses cell (28, 20)'s (0.60)
    assert sorted(per_class.pred_classes.tolist()) == [2, 4]
    agnostic = _infer(head, locs, class_agnostic_nms=True)
    assert agnostic.pred_classes.tolist() == [2] and agnostic.locations.tolist() == [[20, 20]]
    # class_scores: sqrt(sigmoid(cls) * sigmoid(ctr)) of every class at the detection's cell
    ctr = torch.sigmoid(torch.tensor(1.0))
    expected = (torch.sigmoid(torch.tensor(cls_a)) * ctr).sqrt()
    assert agnostic.class_scores.shape == (1, NUM_CLASSES)
    assert torch.allclose(agnostic.class_scores[0], expected, atol=1e-6)
    assert agnostic.class_scores[0, 2].item() == pytest.approx(agnostic.scores[0].item())


def test_fast_nms_option_lets_suppressed_boxes_suppress():
    cls = [-20.0] * NUM_CLASSES
    cls[3] = 2.0
    # A [2,2,22,22] > B [6,2,26,22] > C [10,2,30,22] by centerness: IoU(A, B) = IoU(B, C) =
    # 320 / 480 = 0.67, IoU(A, C) = 240 / 560 = 0.43
    head, locs = _head_with(
        [(10, 10, 10, 10), (14, 10, 6, 10), (18, 10, 2, 10)],
        [cls] * 3,
        [2.0, 1.0, 0.0],
        [(12, 12), (20, 12), (28, 12)],
    )
    standard = _infer(head, locs, nms_thresh=0.5)
    assert standard.locations[:, 0].tolist() == [12, 28]  # B suppressed, C kept
    fast = _infer(head, locs, nms_thresh=0.5, nms_type="fast")
    assert fast.locations[:, 0].tolist() == [12]  # the suppressed B still suppresses C
    assert len(_infer(head, locs, nms_thresh=0.5, nms_type="fast", fast_nms_topk=1)) == 1
    with pytest.raises(ValueError, match="unknown NMS type 'soft'"):
        _infer(head, locs, nms_type="soft")


def test_nms_iou_offset_adds_one_pixel_to_the_widths_and_heights():
    cls = [-20.0] * NUM_CLASSES
    cls[3] = 2.0
    # [10,10,30,30] and [13,10,33,30]: IoU 340 / 460 = 0.739; with +1 on every width and height
    # (mmdetection v1's nms) 18 · 21 / (2 · 21² − 18 · 21) = 378 / 504 = 0.75
    head, locs = _head_with(
        [(10, 10, 10, 10), (15, 10, 5, 10)], [cls, cls], [1.0, 0.0], [(20, 20), (28, 20)]
    )
    kept = _infer(head, locs, nms_thresh=0.745)
    assert kept.pred_boxes.tensor.tolist() == [[10, 10, 30, 30], [13, 10, 33, 30]]
    assert len(_infer(head, locs, nms_thresh=0.745, nms_iou_offset=1.0)) == 1
    assert len(_infer(head, locs, nms_thresh=0.745, nms_type="fast", nms_iou_offset=1.0)) == 1
    assert len(_infer(head, locs, nms_thresh=0.75, nms_iou_offset=1.0)) == 2


def test_thresh_with_ctr_changes_only_the_candidates():
    cls = [-20.0] * NUM_CLASSES
    cls[1] = 0.0  # sigmoid 0.5
    # ctr logit -3: sigmoid 0.047; cls * ctr = 0.024 < 0.05 but cls = 0.5 > 0.05
    head, locs = _head_with([(5, 5, 5, 5)], [cls], [-3.0], [(20, 20)])
    kept = _infer(head, locs)
    assert len(kept) == 1
    assert kept.scores[0].item() == pytest.approx(
        math.sqrt(0.5 * torch.sigmoid(torch.tensor(-3.0)))
    )
    assert len(_infer(head, locs, thresh_with_ctr=True)) == 0


def test_backbone_shapes_and_top_block():
    cfg = add_vis_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_fcos_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    backbone = build_backbone(cfg)
    assert backbone.top_block.in_feature == "p5"
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 384, 640))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "p3": (1, 256, 48, 80),
        "p4": (1, 256, 24, 40),
        "p5": (1, 256, 12, 20),
        "p6": (1, 256, 6, 10),
        "p7": (1, 256, 3, 5),
    }
    assert [backbone.output_shape()[f"p{i}"].stride for i in range(3, 8)] == STRIDES


def test_half_width_resnet18_for_cpu_configs():
    cfg = add_vis_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_fcos_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32  # detectron2's own builder insists on 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    backbone = build_backbone(cfg)
    shapes = backbone.bottom_up.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res3": (64, 8), "res4": (128, 16), "res5": (256, 32)}
    blocks = [len(stage) for stage in backbone.bottom_up.stages]
    assert blocks == [2, 2, 2, 2]
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 64, 96))
    assert out["p3"].shape == (1, 256, 8, 12)


def test_head_parts_let_a_method_act_between_towers_and_predictions():
    torch.manual_seed(0)
    head = FCOSHead(in_channels=32, num_levels=2, num_classes=3, num_cls_convs=1, num_box_convs=1)
    features = [torch.randn(1, 32, 8, 8), torch.randn(1, 32, 4, 4)]
    full = head(features)
    cls_towers, bbox_towers = head.forward_towers(features)
    reg, ctr = head.box_outputs(bbox_towers)
    for parts, name in ((head.class_logits(cls_towers), "logits"), (reg, "reg"), (ctr, "ctr"),
                        (bbox_towers, "bbox_towers")):
        assert all(torch.equal(a, b) for a, b in zip(parts, full[name], strict=True)), name
    # the logits are read from the towers given, so a transform of them reaches the logits
    changed = head.class_logits([t.flip(-1) for t in cls_towers])
    assert not torch.allclose(changed[0], full["logits"][0])
    assert torch.allclose(changed[0], head.cls_logits(cls_towers[0].flip(-1)))
