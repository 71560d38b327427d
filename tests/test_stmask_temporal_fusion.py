"""STMask's temporal fusion module (projects/STMask/stmask/temporal_fusion.py): correlation,
TemporalNet, the box / coefficient shifts, cross-frame masks and the TF losses, against hand
computed values and literal references."""

from __future__ import annotations

import math

import pytest
import torch
from stmask.temporal_fusion import (
    TemporalNet,
    box_shift_loss,
    box_shift_targets,
    correlation,
    cross_frame_masks,
    shift_boxes,
    shift_coefficients,
    temporal_features,
)
from torch.nn import functional as F


def literal_correlation(x1: torch.Tensor, x2: torch.Tensor, patch: int) -> torch.Tensor:
    """One shifted product per displacement, on the overlap of the map and its shift."""
    r = patch // 2
    batch, _, height, width = x1.shape
    out = x1.new_zeros(batch, patch * patch, height, width)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            y0, y1 = max(0, -dy), min(height, height - dy)
            x0, x1_ = max(0, -dx), min(width, width - dx)
            if y0 >= y1 or x0 >= x1_:
                continue
            prod = x1[:, :, y0:y1, x0:x1_] * x2[:, :, y0 + dy : y1 + dy, x0 + dx : x1_ + dx]
            out[:, (dy + r) * patch + (dx + r), y0:y1, x0:x1_] = prod.mean(dim=1)
    return out


def literal_masks(protos, coef, boxes, im_inds, stride):
    """Eq. 14 pixel by pixel: σ(Σ_k tanh(c_k)·P_k) where the pixel centre is in the box."""
    n, (_, k, height, width) = len(coef), protos.shape
    out = torch.zeros(n, height, width, dtype=torch.float64)
    for i in range(n):
        x1, y1, x2, y2 = boxes[i].tolist()
        for v in range(height):
            for u in range(width):
                cu, cv = (u + 0.5) * stride, (v + 0.5) * stride
                if x1 <= cu < x2 and y1 <= cv < y2:
                    s = sum(
                        math.tanh(coef[i, j].item()) * protos[im_inds[i], j, v, u].item()
                        for j in range(k)
                    )
                    out[i, v, u] = 1 / (1 + math.exp(-s))
    return out


# ------------------------------------------------------------------------ correlation


def test_correlation_has_patch_squared_channels():
    x = torch.randn(2, 8, 5, 6)
    assert correlation(x, x).shape == (2, 121, 5, 6)
    assert correlation(x, x, patch=3).shape == (2, 9, 5, 6)


def test_correlation_of_ones_is_one_inside_and_zero_off_the_map():
    ones = torch.ones(1, 4, 13, 14)
    out = correlation(ones, ones)
    # pixels 5..7 (rows) / 5..8 (columns) see every displacement of ±5 inside the map
    assert torch.equal(out[:, :, 5:8, 5:9], torch.ones(1, 121, 3, 4))
    # at the corner (0, 0) the displacement (dy, dx) is on the map only for dy, dx ≥ 0
    corner = out[0, :, 0, 0].view(11, 11)
    expected = torch.zeros(11, 11)
    expected[5:, 5:] = 1
    assert torch.equal(corner, expected)
    # bottom-right corner: only dy, dx ≤ 0
    corner = out[0, :, 12, 13].view(11, 11)
    expected = torch.zeros(11, 11)
    expected[:6, :6] = 1
    assert torch.equal(corner, expected)


def test_correlation_centre_channel_is_the_channel_mean_of_the_square():
    x = torch.randn(2, 16, 6, 7, dtype=torch.float64)
    assert torch.allclose(correlation(x, x)[:, 60], (x**2).mean(dim=1))


def test_correlation_channel_order_is_dy_major():
    # x1 has a 1 at (2, 3) on channel 0, x2 at (2 + dy, 3 + dx): only channel (dy+5)·11 + dx+5
    # at (2, 3) is non-zero, and it is 1/C
    x1 = torch.zeros(1, 2, 9, 10)
    x1[0, 0, 2, 3] = 1
    x2 = torch.zeros(1, 2, 9, 10)
    x2[0, 0, 2 + 4, 3 - 2] = 1
    out = correlation(x1, x2)
    expected = torch.zeros(1, 121, 9, 10)
    expected[0, (4 + 5) * 11 + (-2 + 5), 2, 3] = 0.5
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    ("shape", "patch"),
    [((2, 16, 7, 9), 11), ((1, 5, 3, 4), 11), ((2, 3, 6, 5), 3), ((1, 4, 12, 8), 7)],
)
def test_correlation_matches_the_shifted_products_with_gradients(shape, patch):
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    x2 = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    grad = torch.randn(shape[0], patch * patch, *shape[2:], dtype=torch.float64, generator=gen)
    out = correlation(x1, x2, patch)
    ref = literal_correlation(x1, x2, patch)
    assert torch.allclose(out, ref, atol=1e-12)
    for got, want in zip(
        torch.autograd.grad(out, (x1, x2), grad),
        torch.autograd.grad(ref, (x1, x2), grad),
        strict=True,
    ):
        assert torch.allclose(got, want, atol=1e-12)


def test_correlation_rejects_bad_inputs():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        correlation(x, x, patch=4)
    with pytest.raises(ValueError, match="equal shapes"):
        correlation(x, torch.randn(1, 2, 4, 5))


# ------------------------------------------------------------------ temporal features


def test_temporal_features_relu_of_the_concatenation():
    corr = torch.tensor([-2.0, 0.0, 3.0]).view(1, 3, 1, 1).repeat(1, 1, 2, 2)
    prev = torch.tensor([-1.0, 4.0]).view(1, 2, 1, 1).repeat(1, 1, 2, 2)
    cur = torch.tensor([5.0, -0.5]).view(1, 2, 1, 1).repeat(1, 1, 2, 2)
    out = temporal_features(corr, prev, cur)
    expected = torch.tensor([0.0, 0.0, 3.0, 0.0, 4.0, 5.0, 0.0]).view(1, 7, 1, 1)
    assert torch.equal(out, expected.expand(1, 7, 2, 2))


def test_temporal_features_equal_the_authors_leaky_relu_then_relu():
    corr = torch.randn(1, 121, 3, 4, requires_grad=True)
    prev = torch.randn(1, 256, 3, 4, requires_grad=True)
    cur = torch.randn(1, 256, 3, 4, requires_grad=True)
    out = temporal_features(corr, prev, cur)
    ref = F.relu(torch.cat([F.leaky_relu(corr, 0.1), prev, cur], dim=1))
    assert out.shape == (1, 633, 3, 4)
    assert torch.equal(out, ref)
    grad = torch.randn_like(out)
    for got, want in zip(
        torch.autograd.grad(out, (corr, prev, cur), grad),
        torch.autograd.grad(ref, (corr, prev, cur), grad),
        strict=True,
    ):
        assert torch.equal(got, want)


# ------------------------------------------------------------------------ TemporalNet


def test_temporal_net_outputs_per_box_and_for_no_box():
    net = TemporalNet()
    x = torch.randn(1, 633, 12, 20)
    boxes = torch.tensor([[0, 1.0, 2.0, 9.0, 8.0], [0, 0.0, 0.0, 20.0, 12.0], [0, 5, 5, 6, 6]])
    deltas, coef = net(x, boxes)
    assert deltas.shape == (3, 4) and coef.shape == (3, 32)
    deltas, coef = net(x, boxes[:0])
    assert deltas.shape == (0, 4) and coef.shape == (0, 32)
    deltas, coef = net(x, [torch.zeros(0, 4)])
    assert deltas.shape == (0, 4) and coef.shape == (0, 32)


def test_temporal_net_widths_are_the_constructor_arguments():
    net = TemporalNet(in_channels=10, channels=(8, 6, 5), num_coeffs=3)
    assert [tuple(c.weight.shape) for c in net.convs] == [(8, 10, 3, 3), (6, 8, 3, 3), (5, 6, 3, 3)]
    assert tuple(net.box_shift.weight.shape) == (4, 5)
    assert tuple(net.coeff_shift.weight.shape) == (3, 5)


def test_temporal_net_starts_as_the_identity_shift():
    net = TemporalNet(in_channels=6, channels=(8, 8, 16), num_coeffs=5)
    x = torch.rand(2, 6, 10, 12)
    boxes = torch.tensor([[0, 1.0, 1.0, 8.0, 7.0], [1, 2.0, 0.0, 12.0, 10.0]])
    deltas, coef = net(x, boxes)
    assert torch.equal(deltas, torch.zeros(2, 4)) and torch.equal(coef, torch.zeros(2, 5))
    (deltas.sum() + coef.sum()).backward()
    assert net.box_shift.weight.grad.abs().sum() > 0  # the zero layers still learn
    assert net.convs[0].weight.abs().sum() > 0


def ramp_map(height: int, width: int) -> torch.Tensor:
    """(2, 2, H, W): channel 0 the x of each cell centre, channel 1 its y; image 1 adds 100."""
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    img = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)])
    return torch.stack([img, img + 100])


def test_temporal_net_pools_7x7_bins_of_the_box_in_cell_coordinates():
    net = TemporalNet(in_channels=2, channels=(1, 1, 1), num_coeffs=1).double()
    x = ramp_map(12, 16)
    boxes = [torch.tensor([[2.0, 1.0, 9.0, 8.0]]), torch.tensor([[1.5, 3.0, 12.0, 10.0]])]
    feats = net.roi_features(x, [b.double() for b in boxes])
    assert feats.shape == (2, 2, 7, 7)
    # the ramp is linear, so each bin averages to its centre (aligned: centres at u + 0.5)
    for i, offset in enumerate((0, 100)):
        x1, y1, x2, y2 = boxes[i][0].double()
        bins = (torch.arange(7, dtype=torch.float64) + 0.5) / 7
        want_x = offset + x1 + bins * (x2 - x1)
        want_y = offset + y1 + bins * (y2 - y1)
        assert torch.allclose(feats[i, 0], want_x.expand(7, 7), atol=1e-9)
        assert torch.allclose(feats[i, 1], want_y[:, None].expand(7, 7), atol=1e-9)


def test_temporal_net_samples_adaptively_per_bin():
    # a 21-cell-wide box: 3 cells per bin, adaptive sampling reads the 3 cell centres of
    # each bin exactly, so a map of x² pools to their mean (one sample would give the middle)
    net = TemporalNet(in_channels=1, channels=(1, 1, 1), num_coeffs=1).double()
    x = ramp_map(8, 24)[:1, :1] ** 2
    feats = net.roi_features(x, torch.tensor([[0, 0.0, 0.0, 21.0, 7.0]], dtype=torch.float64))
    centres = torch.arange(21, dtype=torch.float64).view(7, 3) + 0.5
    want = (centres**2).mean(dim=1)
    assert torch.allclose(feats[0, 0], want.expand(7, 7), atol=1e-9)


def test_temporal_net_forward_by_hand():
    # one channel, identity 3×3 convs: output = fc(mean over bins of ReLU(bin value))
    net = TemporalNet(in_channels=1, channels=(1, 1, 1), num_coeffs=2).double()
    with torch.no_grad():
        for conv in net.convs:
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1
        net.box_shift.weight.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
        net.box_shift.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
        net.coeff_shift.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = ramp_map(12, 16)[:1, :1] - 5  # value x − 5 at x
    deltas, coef = net(x, torch.tensor([[0, 2.0, 1.0, 9.0, 8.0]], dtype=torch.float64))
    # bin centres 2.5 … 8.5 → −2.5 … 3.5 → ReLU sums to 8 per row of 7
    m = 8 / 7
    assert torch.allclose(deltas, torch.tensor([[m, 2 * m, 3 * m, 4 * m + 1]], dtype=torch.float64))
    assert torch.allclose(coef, torch.tensor([[m, -m]], dtype=torch.float64))


# ------------------------------------------------------------------------- box shifts


def test_shift_boxes_moves_by_a_tenth_and_scales_by_exp_of_a_fifth():
    box = torch.tensor([[10.0, 20.0, 50.0, 100.0]])  # w 40, h 80, centre (30, 60)
    assert torch.allclose(
        shift_boxes(box, torch.tensor([[1.0, 0, 0, 0]])), box + torch.tensor([4.0, 0, 4, 0])
    )
    assert torch.allclose(
        shift_boxes(box, torch.tensor([[0, 1.0, 0, 0]])), box + torch.tensor([0, 8.0, 0, 8])
    )
    w = 40 * math.exp(0.2)
    want = torch.tensor([[30 - w / 2, 20, 30 + w / 2, 100]])
    assert torch.allclose(shift_boxes(box, torch.tensor([[0, 0, 1.0, 0]])), want)
    h = 80 * math.exp(-0.2)
    want = torch.tensor([[10, 60 - h / 2, 50, 60 + h / 2]])
    assert torch.allclose(shift_boxes(box, torch.tensor([[0, 0, 0, -1.0]])), want)


def test_shift_boxes_clamps_growth_at_62_5_times():
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    out = shift_boxes(box, torch.tensor([[0, 0, 25.0, 0]]))  # exp(5) > 1000 / 16
    assert torch.allclose(out, torch.tensor([[1 - 62.5, 0, 1 + 62.5, 2]]))


def test_box_shift_targets_by_hand_and_round_trip():
    prev = torch.tensor([[0.0, 0.0, 10.0, 20.0], [10.0, 10.0, 30.0, 20.0]])
    cur = torch.tensor([[2.0, 4.0, 12.0, 24.0], [5.0, 10.0, 45.0, 20.0]])
    want = torch.tensor([[2.0, 2.0, 0.0, 0.0], [2.5, 0.0, 5 * math.log(2), 0.0]])
    targets = box_shift_targets(prev, cur)
    assert torch.allclose(targets, want)
    assert torch.allclose(shift_boxes(prev, targets), cur, atol=1e-5)
    deltas = torch.tensor([[0.3, -1.2, 0.7, -0.4], [2.0, 0.5, -1.0, 1.5]])
    assert torch.allclose(box_shift_targets(prev, shift_boxes(prev, deltas)), deltas, atol=1e-5)


# ------------------------------------------------------------- coefficients and masks


def test_shift_coefficients_add_before_tanh():
    coef = torch.tensor([[0.5, -1.0]])
    assert torch.equal(
        shift_coefficients(coef, torch.tensor([[0.25, 2.0]])), torch.tensor([[0.75, 1.0]])
    )


def test_cross_frame_masks_crop_at_pixel_centres():
    protos = torch.ones(1, 1, 3, 4)
    coef = torch.full((2, 1), 1e3)  # tanh → 1, σ(1)
    boxes = torch.tensor([[4.0, 0.0, 12.0, 8.0], [6.0, 2.0, 10.0, 10.0]])
    out = cross_frame_masks(protos, coef, boxes, torch.zeros(2, dtype=torch.long))
    s = 1 / (1 + math.exp(-1))
    # centres at 2, 6, 10, 14 px: box 0 keeps columns 1, 2 and rows 0, 1; box 1 keeps
    # column 1 (x1 = 6 is in, x2 = 10 is out) and rows 0, 1 (y1 = 2 in, y2 = 10 out)
    want = torch.zeros(2, 3, 4)
    want[0, 0:2, 1:3] = s
    want[1, 0:2, 1] = s
    assert torch.allclose(out, want)


def test_cross_frame_masks_match_eq14_per_pixel():
    gen = torch.Generator().manual_seed(1)
    protos = torch.rand(2, 4, 5, 6, dtype=torch.float64, generator=gen) * 2
    coef = torch.randn(3, 4, dtype=torch.float64, generator=gen) * 2
    boxes = torch.tensor([[0.0, 0.0, 24.0, 20.0], [3.0, 5.0, 17.0, 13.0], [9.0, 1.0, 30.0, 19.0]])
    boxes = boxes.double()
    im_inds = torch.tensor([1, 0, 1])
    out = cross_frame_masks(protos, coef, boxes, im_inds)
    assert torch.allclose(out, literal_masks(protos, coef, boxes, im_inds, 4.0), atol=1e-12)
    out = cross_frame_masks(protos, coef, boxes * 2, im_inds, stride=8.0)
    assert torch.allclose(out, literal_masks(protos, coef, boxes * 2, im_inds, 8.0), atol=1e-12)


def test_zero_coefficient_shift_reproduces_the_previous_mask():
    # with the same prototypes, C' = C + 0 gives frame t−1's own mask
    gen = torch.Generator().manual_seed(2)
    protos = torch.rand(1, 4, 5, 6, dtype=torch.float64, generator=gen)
    coef = torch.randn(2, 4, dtype=torch.float64, generator=gen)
    boxes = torch.tensor([[2.0, 2.0, 20.0, 18.0], [0.0, 4.0, 12.0, 20.0]], dtype=torch.float64)
    im_inds = torch.zeros(2, dtype=torch.long)
    previous = literal_masks(protos, coef, boxes, im_inds, 4.0)
    shifted = cross_frame_masks(
        protos, shift_coefficients(coef, torch.zeros_like(coef)), boxes, im_inds
    )
    assert torch.allclose(shifted, previous, atol=1e-12)
    delta = torch.full_like(coef, 0.5)
    shifted = cross_frame_masks(protos, shift_coefficients(coef, delta), boxes, im_inds)
    assert torch.allclose(shifted, literal_masks(protos, coef + delta, boxes, im_inds, 4.0))
    assert not torch.allclose(shifted, previous)


# ------------------------------------------------------------------------------ losses


def test_box_shift_loss_by_hand():
    prev = torch.tensor([[0.0, 0.0, 10.0, 20.0], [10.0, 10.0, 30.0, 20.0]])
    cur = torch.tensor([[2.0, 4.0, 12.0, 24.0], [5.0, 10.0, 45.0, 20.0]])
    # targets (2, 2, 0, 0) and (2.5, 0, 5 ln 2, 0); errors (0.5, 0, 0, 0) → 0.5·0.5² and
    # (2, 0, 0, −3) → (2 − 0.5) + (3 − 0.5)
    deltas = torch.tensor([[2.5, 2.0, 0.0, 0.0], [4.5, 0.0, 5 * math.log(2), -3.0]])
    deltas.requires_grad_(True)
    loss = box_shift_loss(deltas, prev, cur)
    assert torch.allclose(loss, torch.tensor((0.125 + 4.0) / 2))
    loss.backward()
    want = torch.tensor([[0.5, 0, 0, 0], [1.0, 0, 0, -1.0]]) / 2
    assert torch.allclose(deltas.grad, want, atol=1e-6)


def test_box_shift_loss_is_zero_at_the_targets_and_without_instances():
    prev = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    cur = torch.tensor([[3.0, 1.0, 9.0, 30.0]])
    assert box_shift_loss(box_shift_targets(prev, cur), prev, cur).abs() < 1e-7
    deltas = torch.zeros(0, 4, requires_grad=True)
    loss = box_shift_loss(deltas, torch.zeros(0, 4), torch.zeros(0, 4))
    assert loss.item() == 0 and loss.requires_grad


def test_the_mask_crop_keeps_pixels_by_centre_or_by_index_with_padding():
    """MODEL.STMASK.MASK_CROP: a box of x, y ∈ [8, 24) px is [2, 6) prototype pixels (stride
    4); the centre rule keeps pixels 2-5, the authors' rule (index, padding 1) 1 ≤ u < 7."""
    protos = torch.ones(1, 1, 10, 10)
    coef, boxes, im = torch.full((1, 1), 20.0), torch.tensor([[8.0, 8, 24, 24]]), torch.zeros(1)
    im = im.long()
    centre = cross_frame_masks(protos, coef, boxes, im)[0] > 0.5
    index = cross_frame_masks(protos, coef, boxes, im, crop=("index", 1))[0] > 0.5
    assert centre.nonzero()[:, 0].unique().tolist() == [2, 3, 4, 5]
    assert index.nonzero()[:, 1].unique().tolist() == [1, 2, 3, 4, 5, 6]
    # box edges inside pixels: [9, 23) px is [2.25, 5.75): centres 2.5-5.5 (pixels 2-5),
    # indices 2.25 - 1 ≤ u < 6.75 (pixels 2-6)
    boxes = torch.tensor([[9.0, 9, 23, 23]])
    centre = cross_frame_masks(protos, coef, boxes, im)[0] > 0.5
    index = cross_frame_masks(protos, coef, boxes, im, crop=("index", 1))[0] > 0.5
    assert centre.nonzero()[:, 1].unique().tolist() == [2, 3, 4, 5]
    assert index.nonzero()[:, 1].unique().tolist() == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="cell rule 'corner'"):
        cross_frame_masks(protos, coef, boxes, im, crop=("corner", 1))
