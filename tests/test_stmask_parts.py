"""STMask's kernel-shaped anchors (FCA) and feature calibration (FCB)."""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import build_anchor_generator
from stmask import add_stmask_config
from stmask.anchors import KernelAnchorGenerator
from stmask.fcb import FeatureCalibration, aligned_offsets
from torch.nn import functional as F

STRIDES = [8, 16, 32, 64, 128]
SHAPES = [[3, 3], [3, 5], [5, 3]]
LN2 = math.log(2.0)


def _levels(height: int, width: int) -> list[torch.Tensor]:
    return [torch.zeros(1, 0, height // s, width // s) for s in STRIDES]


# --- anchors (FCA) ---


def test_first_p3_cell_has_the_three_kernel_shapes():
    anchors = KernelAnchorGenerator(shapes=SHAPES, strides=STRIDES)(_levels(384, 640))
    first = anchors[0][:3]
    # centre (4, 4); (h, w) = (24, 24), (24, 40), (40, 24)
    expected = torch.tensor([[-8.0, -8, 16, 16], [-16, -8, 24, 16], [-8, -16, 16, 24]])
    assert torch.equal(first.tensor, expected)
    assert torch.equal(first.get_centers(), torch.tensor([[4.0, 4]] * 3))


def test_built_from_the_config_with_15345_anchors_for_384x640():
    cfg = add_stmask_config(get_cfg())
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "KernelAnchorGenerator"
    generator = build_anchor_generator(cfg, [ShapeSpec(channels=256, stride=s) for s in STRIDES])
    assert isinstance(generator, KernelAnchorGenerator)
    assert generator.num_anchors == generator.num_cell_anchors == [3] * 5
    anchors = generator(_levels(384, 640))  # P3 48×80 … P7 3×5
    assert [len(a) for a in anchors] == [11520, 2880, 720, 180, 45]
    assert sum(len(a) for a in anchors) == 15345  # 3·(3840 + 960 + 240 + 60 + 15)


def test_anchors_are_ordered_row_column_shape():
    p4 = KernelAnchorGenerator(shapes=SHAPES, strides=STRIDES)(_levels(384, 640))[1].tensor
    # P4 is 24×40: anchor (row 2, col 3, shape 1) is number (2·40 + 3)·3 + 1 = 250,
    # centre (3.5·16, 2.5·16) = (56, 40), 48 px high and 80 px wide
    assert p4[250].tolist() == [16.0, 16.0, 96.0, 64.0]
    # the next location is one column on: the same shapes 16 px to the right
    assert torch.equal(p4[252:255] - p4[249:252], torch.tensor([[16.0, 0, 16, 0]] * 3))
    # the first anchor of row 1 is 16 px below the first of row 0
    assert torch.equal(p4[120] - p4[0], torch.tensor([0.0, 16, 0, 16]))


# --- aligned offsets (FCB "ali") ---


def _deltas(tx=0.0, ty=0.0, tw=0.0, th=0.0, size=(2, 3)) -> torch.Tensor:
    """(1, 4, *size) box deltas, the same at every location."""
    return torch.tensor([tx, ty, tw, th]).view(1, 4, 1, 1).expand(1, 4, *size).contiguous()


def test_zero_deltas_give_zero_offsets():
    offsets = aligned_offsets(torch.zeros(2, 4, 4, 5), (3, 3))
    assert offsets.shape == (2, 18, 4, 5)
    assert torch.equal(offsets, torch.zeros(2, 18, 4, 5))


def test_centre_shift_moves_every_point():
    offsets = aligned_offsets(_deltas(tx=1.0), (3, 3))
    dy, dx = offsets[0, 0::2, 0, 0], offsets[0, 1::2, 0, 0]
    assert torch.allclose(dx, torch.full((9,), 0.3))  # 0.1 · 1 · 3 cells
    assert torch.equal(dy, torch.zeros(9))
    assert torch.equal(offsets, offsets[..., :1, :1].expand_as(offsets))  # every location


def test_doubled_width_spreads_the_columns():
    offsets = aligned_offsets(_deltas(tw=LN2 / 0.2), (3, 3))
    dy, dx = offsets[0, 0::2, 1, 2], offsets[0, 1::2, 1, 2]
    assert torch.allclose(dx, torch.tensor([-1.0, 0, 1] * 3))  # row-major points
    assert torch.equal(dy, torch.zeros(9))
    # kernel column j samples at j + dx: (-2, 0, 2), the columns of the twice wider box
    assert torch.allclose(torch.tensor([-1.0, 0, 1] * 3) + dx, torch.tensor([-2.0, 0, 2] * 3))


def test_3x5_kernel_layout():
    # t_y = 1 → 0.1 · 1 · 3 = 0.3 rows; t_h = ln(1.5) / 0.2 → (1.5 − 1) · i; t_x = −1 → −0.5 cols
    deltas = _deltas(tx=-1.0, ty=1.0, th=math.log(1.5) / 0.2, size=(4, 6)).repeat(2, 1, 1, 1)
    offsets = aligned_offsets(deltas, (3, 5))
    assert offsets.shape == (2, 30, 4, 6)
    dy, dx = offsets[1, 0::2, 3, 5], offsets[1, 1::2, 3, 5]
    assert torch.allclose(dy, torch.tensor([-0.2] * 5 + [0.3] * 5 + [0.8] * 5))
    assert torch.allclose(dx, torch.full((15,), -0.5))


@pytest.mark.parametrize(
    ("deltas", "tap", "bright_at"),
    [
        # t_x = 10/3: the box centre moves 0.1 · 10/3 · 3 = 1 cell right; centre tap
        ({"tx": 10 / 3}, (1, 1), (3, 4)),
        # width ×2: the right tap (col +1) samples 2 cells right
        ({"tw": LN2 / 0.2}, (1, 2), (3, 3)),
        # both: the right tap samples 1 + 2 = 3 cells right
        ({"tx": 10 / 3, "tw": LN2 / 0.2}, (1, 2), (3, 2)),
        # height ×2: the top tap (row −1) samples 2 cells up
        ({"th": LN2 / 0.2}, (0, 1), (5, 5)),
    ],
)
def test_aligned_sampling_finds_the_bright_pixel_in_the_box(deltas, tap, bright_at):
    """A 7×9 map, 1 at (row 3, col 5): a deform conv reading only ``tap`` answers 1 exactly
    where that tap, moved by the aligned offsets, lands on the pixel."""
    x = torch.zeros(1, 1, 7, 9)
    x[0, 0, 3, 5] = 1.0
    fcb = FeatureCalibration(1, 1, (3, 3), mode="ali")
    with torch.no_grad():
        fcb.deform.weight.zero_()
        fcb.deform.weight[0, 0, tap[0], tap[1]] = 1.0
        out = fcb.deform(x, fcb.offsets(_deltas(**deltas, size=(7, 9))))
    expected = torch.zeros(1, 1, 7, 9)
    expected[0, 0, bright_at[0], bright_at[1]] = 1.0
    assert torch.allclose(out, expected, atol=1e-5)


# --- the calibration module ---


def _reference(fcb: FeatureCalibration, x: torch.Tensor) -> torch.Tensor:
    """The plain conv of the same weights in place of the deformable one (zero offsets)."""
    pad = (fcb.kernel_size[0] // 2, fcb.kernel_size[1] // 2)
    hidden = torch.relu(F.conv2d(x, fcb.deform.weight, padding=pad))
    return F.conv2d(hidden, fcb.conv.weight, fcb.conv.bias, padding=pad)


@pytest.mark.parametrize("mode", ["ali", "ada"])
def test_zero_offsets_equal_the_plain_conv_forward_and_backward(mode):
    torch.manual_seed(0)
    fcb = FeatureCalibration(4, 6, (3, 5), mode=mode).double()
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64, requires_grad=True)
    # ali: zero deltas; ada: any deltas, the offset conv starts at zero
    deltas = torch.zeros(2, 4, 5, 7) if mode == "ali" else torch.randn(2, 4, 5, 7)
    deltas = deltas.double().requires_grad_()
    out = fcb(x, deltas)
    assert out.shape == (2, 6, 5, 7)
    expected = _reference(fcb, x)
    assert torch.allclose(out, expected, atol=1e-10)
    grad = torch.randn_like(out)
    inputs = (x, fcb.deform.weight, fcb.conv.weight, fcb.conv.bias)
    got = torch.autograd.grad(out, inputs, grad, retain_graph=True)
    want = torch.autograd.grad(expected, inputs, grad)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_gradients_reach_the_deform_and_offset_convs_but_not_the_deltas():
    torch.manual_seed(0)
    fcb = FeatureCalibration(4, 6, (3, 3), mode="ada")
    deltas = torch.randn(2, 4, 5, 7, requires_grad=True)
    fcb(torch.randn(2, 4, 5, 7), deltas).square().sum().backward()
    assert fcb.deform.weight.grad.abs().sum() > 0
    assert fcb.conv_offset.weight.grad.abs().sum() > 0
    assert fcb.conv_offset.weight.shape == (18, 4, 1, 1) and fcb.conv_offset.bias is None
    assert deltas.grad is None  # detached: the calibration does not train the box regression


def test_ali_has_no_offset_parameters_and_none_is_the_plain_conv():
    ali = FeatureCalibration(4, 6, (5, 3), mode="ali")
    assert sorted(n for n, _ in ali.named_parameters()) == [
        "conv.bias",
        "conv.weight",
        "deform.weight",
    ]
    plain = FeatureCalibration(4, 6, (5, 3), mode="none")
    assert sorted(n for n, _ in plain.named_parameters()) == ["conv.bias", "conv.weight"]
    x = torch.randn(2, 4, 6, 5)
    expected = F.conv2d(x, plain.conv.weight, plain.conv.bias, padding=(2, 1))
    assert torch.allclose(plain(x, torch.randn(2, 4, 6, 5)), expected, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'dcn' not in"):
        FeatureCalibration(4, 6, (3, 3), mode="dcn")
    with pytest.raises(ValueError, match="odd sizes"):
        FeatureCalibration(4, 6, (3, 4))
    with pytest.raises(ValueError, match="odd sizes"):
        aligned_offsets(torch.zeros(1, 4, 2, 2), (2, 3))
