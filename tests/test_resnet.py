"""vis_d2.modeling.backbone.build_resnet: detectron2's ResNets, narrow R-18s, and deformable
bottlenecks every DEFORM_INTERVAL blocks that equal detectron2's deformable blocks."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import resnet as d2_resnet

from vis_d2.config import get_cfg
from vis_d2.modeling.backbone import DeformBottleneckBlock, build_resnet
from vis_d2.modeling.backbone.resnet import BasicStem


def _cfg(depth=50, interval=1, modulated=True, stages=(False, True, True, True)):
    cfg = get_cfg()
    res = cfg.MODEL.RESNETS
    res.DEPTH = depth
    res.STEM_OUT_CHANNELS, res.RES2_OUT_CHANNELS, res.WIDTH_PER_GROUP = 8, 16, 4
    res.OUT_FEATURES = ["res3", "res4", "res5"]
    res.DEFORM_ON_PER_STAGE = list(stages)
    res.DEFORM_MODULATED = modulated
    res.DEFORM_INTERVAL = interval
    return cfg


def _deformable(resnet):
    return {
        name: [i for i, b in enumerate(stage) if isinstance(b, DeformBottleneckBlock)]
        for name, stage in zip(resnet.stage_names, resnet.stages, strict=True)
    }


@pytest.mark.parametrize(
    ("depth", "interval", "expected"),
    [
        # YOLACT++'s R-DCN models: blocks 0, 3, 6, ... of res3-res5
        (50, 3, {"res2": [], "res3": [0, 3], "res4": [0, 3], "res5": [0]}),
        (101, 3, {"res2": [], "res3": [0, 3], "res4": list(range(0, 23, 3)), "res5": [0]}),
        (50, 1, {"res2": [], "res3": [0, 1, 2, 3], "res4": list(range(6)), "res5": [0, 1, 2]}),
        (50, 2, {"res2": [], "res3": [0, 2], "res4": [0, 2, 4], "res5": [0, 2]}),
    ],
)
def test_deformable_blocks_every_interval(depth, interval, expected):
    resnet = build_resnet(_cfg(depth, interval), ShapeSpec(channels=3))
    assert _deformable(resnet) == expected
    plain = build_resnet(_cfg(depth, stages=(False,) * 4), ShapeSpec(channels=3))
    # the same tree but the offset convs: detectron2's names, so its checkpoints load
    extra = set(resnet.state_dict()) - set(plain.state_dict())
    assert extra and all(".conv2_offset." in k for k in extra)
    assert set(plain.state_dict()) <= set(resnet.state_dict())


@pytest.mark.parametrize("modulated", [False, True], ids=["dcn", "dcnv2"])
@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_block_equals_detectron2s_deformable_block(modulated, stride_in_1x1):
    torch.manual_seed(0)
    kwargs = dict(
        bottleneck_channels=8,
        stride=2,
        norm="FrozenBN",
        stride_in_1x1=stride_in_1x1,
        deform_modulated=modulated,
        deform_num_groups=2,
    )
    ours = DeformBottleneckBlock(16, 32, **kwargs)
    theirs = d2_resnet.DeformBottleneckBlock(16, 32, **kwargs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    # non-zero offsets and masks (detectron2 initialises their conv to zero), random statistics
    state = {k: torch.randn_like(v) for k, v in theirs.state_dict().items()}
    for key in state:
        if key.endswith("running_var"):
            state[key] = state[key].abs() + 0.5
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    x = torch.randn(2, 16, 9, 12, requires_grad=True)
    expected = theirs(x)
    out = ours(x)
    assert out.shape == expected.shape == (2, 32, 5, 6)
    assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4)
    grad = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, x, grad)
    (gb,) = torch.autograd.grad(expected, x, grad)
    assert torch.allclose(ga, gb, atol=1e-3, rtol=1e-3)


def test_deformable_resnet_runs_frozen_and_trains():
    cfg = _cfg(50, 3)
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    resnet = build_resnet(cfg, ShapeSpec(channels=3))
    out = resnet(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res3": (1, 32, 8, 12),
        "res4": (1, 64, 4, 6),
        "res5": (1, 128, 2, 3),
    }
    sum(v.sum() for v in out.values()).backward()
    offset = resnet.res3[0].conv2_offset
    assert offset.weight.grad is not None and offset.weight.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in resnet.res2.parameters())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DEPTH": 18}, "needs a bottleneck ResNet"),
        ({"DEFORM_INTERVAL": 0}, "DEFORM_INTERVAL must be >= 1"),
        ({"NUM_GROUPS": 2}, "NUM_GROUPS = 1"),
    ],
)
def test_bad_deformable_settings_are_refused(change, message):
    cfg = _cfg()
    for key, value in change.items():
        setattr(cfg.MODEL.RESNETS, key, value)
    with pytest.raises(ValueError, match=message):
        build_resnet(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize(
    ("depth", "res2", "stages"),
    [(50, 16, (False,) * 4), (18, 8, (False,) * 4), (50, 16, (False, True, True, True))],
    ids=["d2-builder", "narrow-r18", "deformable"],
)
@pytest.mark.parametrize("freeze_at", [0, 2])
def test_stem_equals_detectron2s_in_values_gradients_and_freezing(depth, res2, stages, freeze_at):
    cfg = _cfg(depth, stages=stages)
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = res2
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    torch.manual_seed(0)
    resnet = build_resnet(cfg, ShapeSpec(channels=3))
    stem = resnet.stem
    assert isinstance(stem, BasicStem) and stem.stride == 4
    reference = d2_resnet.BasicStem(3, 8, norm=cfg.MODEL.RESNETS.NORM)
    reference.load_state_dict(stem.state_dict())
    frozen = freeze_at >= 1
    assert all(p.requires_grad != frozen for p in stem.parameters())
    # odd sizes: the pooling's padding and its last, partial window
    x = torch.randn(2, 3, 37, 53, requires_grad=True)
    out = stem(x)
    expected = reference(x)
    assert out.shape == expected.shape == (2, 8, 10, 14)
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    if not frozen:
        weights = torch.randn_like(out)
        grad = torch.autograd.grad((out * weights).sum(), [stem.conv1.weight, x])
        ref_grad = torch.autograd.grad((expected * weights).sum(), [reference.conv1.weight, x])
        for g, r in zip(grad, ref_grad, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)
    # a channels-last input stays channels-last (the autocast inference path)
    cl = stem(x.detach().contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, expected.detach(), rtol=1e-5, atol=1e-5)
