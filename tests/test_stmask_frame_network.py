"""STMask's frame network parts: the ResNet-FPN with ReLU outputs and strided P6/P7, and the
protonet."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from stmask import ProtoNet, STMaskFPN

from vis_d2.config import get_cfg


def _cfg():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_stmask_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


def test_levels_strides_and_relu():
    backbone = build_backbone(_cfg())
    assert isinstance(backbone, STMaskFPN)
    shapes = backbone.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {
        "p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128
    }  # fmt: skip
    assert backbone.size_divisibility == 128
    torch.manual_seed(0)
    out = backbone(torch.randn(1, 3, 256, 384))
    assert [tuple(out[f].shape[-2:]) for f in ("p3", "p5", "p6", "p7")] == [
        (32, 48), (8, 12), (4, 6), (2, 3)
    ]  # fmt: skip
    for level in ("p3", "p4", "p5"):
        assert (out[level] >= 0).all()
    # P6 from the ReLU'd P5, P7 from P6 itself: no ReLU between them
    assert torch.allclose(out["p6"], backbone.downsample[0](out["p5"]))
    assert (out["p6"] < 0).any()
    assert torch.allclose(out["p7"], backbone.downsample[1](out["p6"]))


def test_fpn_without_downsampling():
    cfg = _cfg()
    cfg.MODEL.STMASK.NUM_DOWNSAMPLE = 0
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert list(backbone.output_shape()) == ["p3", "p4", "p5"]


def test_bilinear_top_down_path():
    """FPN_UPSAMPLE bilinear (the authors' FPN): each level adds its lateral to the coarser
    level's sum resized bilinearly; with nearest the model is detectron2's FPN, same weights."""
    cfg = _cfg()
    cfg.MODEL.STMASK.FPN_UPSAMPLE = "bilinear"
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    image = torch.randn(1, 3, 256, 384)
    out = backbone(image)
    fpn = backbone.fpn
    c = fpn.bottom_up(image)
    sum5 = fpn.fpn_lateral5(c["res5"])
    sum4 = fpn.fpn_lateral4(c["res4"]) + torch.nn.functional.interpolate(
        sum5, size=(16, 24), mode="bilinear", align_corners=False
    )
    sum3 = fpn.fpn_lateral3(c["res3"]) + torch.nn.functional.interpolate(
        sum4, size=(32, 48), mode="bilinear", align_corners=False
    )
    for level, total in (("p5", sum5), ("p4", sum4), ("p3", sum3)):
        expected = torch.relu(getattr(fpn, f"fpn_output{level[1]}")(total))
        assert torch.allclose(out[level], expected, atol=1e-5), level
    assert torch.allclose(out["p6"], backbone.downsample[0](out["p5"]))
    backbone.upsample = "nearest"
    nearest = backbone(image)
    assert torch.allclose(nearest["p5"], out["p5"]) and not torch.allclose(nearest["p3"], out["p3"])
    assert torch.allclose(nearest["p3"], torch.relu(fpn(image)["p3"]))
    cfg.MODEL.STMASK.FPN_UPSAMPLE = "bicubic"
    with pytest.raises(ValueError, match="FPN_UPSAMPLE must be nearest or bilinear"):
        build_backbone(cfg)


def test_protonet_stride_4_and_non_negative():
    protonet = ProtoNet(32, dim=16, num_convs=3, num_protos=8)
    protos = protonet(torch.randn(2, 32, 12, 20))
    assert protos.shape == (2, 8, 24, 40) and (protos >= 0).all() and (protos > 0).any()
    assert len([m for m in protonet.modules() if isinstance(m, torch.nn.Conv2d)]) == 5


def test_prediction_head_outputs_follow_the_anchors():
    from detectron2.modeling.anchor_generator import build_anchor_generator
    from stmask import PredictionHead

    shapes = [(3, 3), (3, 5), (5, 3)]
    head = PredictionHead(16, 4, shapes, embed_dim=8, num_coefficients=6, fcb="ada",
                          fcb_branches=("cls", "mask"))  # fmt: skip
    assert [m.mode for m in head.last["cls"]] == ["ada"] * 3
    assert [m.mode for m in head.last["track"]] == ["none"] * 3
    assert [m.kernel_size for m in head.last["box"]] == shapes
    features = [torch.randn(2, 16, 6, 10), torch.randn(2, 16, 3, 5)]
    levels = head(features)
    cfg = get_cfg()
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "KernelAnchorGenerator"
    anchors = build_anchor_generator(cfg, [ShapeSpec(channels=16, stride=s) for s in (8, 16)])
    counts = [len(a) for a in anchors(features)]
    for out, count in zip(levels, counts, strict=True):
        assert out["cls"].shape == (2, count, 5) and out["box"].shape == (2, count, 4)
        assert out["ctr"].shape == (2, count) and out["ctr"].abs().max() <= 1
        assert out["track"].shape == (2, count, 8)
        assert torch.allclose(out["track"].norm(dim=-1), torch.ones(2, count))
        assert out["mask"].shape == (2, count, 6)
    assert levels[0]["t2s"].shape == (2, 16, 6, 10)
    # row (y, x, a) of the outputs is anchor shape a's last conv at cell (y, x)
    y, x, a = 4, 7, 2
    t2s = head.upfeature(features[0])
    box = head.last["box"][a](head.towers["box"](t2s))
    row = (y * 10 + x) * 3 + a
    assert torch.allclose(levels[0]["box"][:, row], box[:, :4, y, x], atol=1e-6)
    cls = head.last["cls"][a](head.towers["cls"](t2s), box[:, :4])
    assert torch.allclose(levels[0]["cls"][:, row], cls[:, :, y, x], atol=1e-6)


def test_prediction_head_refuses_calibrating_the_box_branch():
    import pytest
    from stmask import PredictionHead

    with pytest.raises(ValueError, match="only cls, track and mask"):
        PredictionHead(16, 4, [(3, 3)], fcb_branches=("box",))
