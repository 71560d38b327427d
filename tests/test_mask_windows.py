"""The shared box-window mask assembly with a fixed grid: SipMask's CropSplit(2) (SipMask-VIS
sub-regions 2 × 2, row-major: top-left, top-right, bottom-left, bottom-right)."""

import torch
from mask_reference import blend_full

from vis_d2.modeling.mask_windows import blend, paste_windows

QUADRANT_VALUES = (0.1, 0.2, 0.3, 0.4)


def _cropsplit(box, size=12):
    """One instance on a (1, 1, size, size) basis of ones, whose 2 × 2 cell coefficients are
    the logits of QUADRANT_VALUES: each pixel's probability names its quadrant."""
    bases = torch.ones(1, 1, size, size)
    coef = torch.logit(torch.tensor(QUADRANT_VALUES)).view(1, 4, 1)
    boxes = torch.tensor([box], dtype=torch.float32)
    two = torch.tensor([2])
    return bases, torch.tensor([0]), boxes, coef, two, two


def test_cropsplit_quadrants_of_constant_maps():
    args = _cropsplit([0, 0, 10, 10])
    full = blend_full(*args)[0]
    expected = torch.zeros(12, 12)
    expected[:5, :5], expected[:5, 5:10] = 0.1, 0.2
    expected[5:10, :5], expected[5:10, 5:10] = 0.3, 0.4
    assert torch.allclose(full, expected, atol=1e-6)
    windows = blend(*args)
    assert windows.logits.shape == (1, 10, 10)
    assert torch.allclose(paste_windows(windows, 12, 12)[0], expected, atol=1e-6)


def test_cropsplit_partition_by_pixel_centres():
    # box [1, 1, 8, 6]: the centre column 4.5 is the first of the right half (x1 + w/2 = 4.5)
    full = blend_full(*_cropsplit([1, 1, 8, 6]))[0]
    assert torch.allclose(full[1, 1:4], torch.full((3,), 0.1))
    assert torch.allclose(full[1, 4:8], torch.full((4,), 0.2))
    # rows: centres 1.5, 2.5 above y1 + h/2 = 3.5; 3.5, 4.5, 5.5 below
    assert torch.allclose(full[1:3, 1], torch.full((2,), 0.1))
    assert torch.allclose(full[3:6, 1], torch.full((3,), 0.3))
    assert torch.allclose(full[5, 7], torch.tensor(0.4))
    assert (full[0] == 0).all() and (full[6:] == 0).all() and (full[:, 8:] == 0).all()


def test_blend_equals_a_per_pixel_reference():
    """Every pixel inside a box: σ(<its sub-region's coefficients, its basis vector>), with the
    sub-region by the pixel centre's position in an r2 × r1 grid over the box (0 outside)."""
    torch.manual_seed(0)
    bases = torch.randn(2, 5, 9, 11)
    boxes = torch.tensor([[0.5, 1.0, 9.0, 8.2], [3.0, 0.0, 11.0, 9.0], [2.2, 2.7, 4.9, 6.1]])
    im_inds, r1, r2 = torch.tensor([0, 1, 1]), torch.tensor([3, 2, 1]), torch.tensor([2, 3, 2])
    coef = torch.randn(3, 6, 5)
    expected = torch.zeros(3, 9, 11)
    for n, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        for v in range(9):
            for u in range(11):
                cu, cv = u + 0.5, v + 0.5
                if not (x1 <= cu < x2 and y1 <= cv < y2):
                    continue
                col = min(int((cu - x1) * r1[n] / (x2 - x1)), int(r1[n]) - 1)
                row = min(int((cv - y1) * r2[n] / (y2 - y1)), int(r2[n]) - 1)
                logit = coef[n, row * int(r1[n]) + col] @ bases[im_inds[n], :, v, u]
                expected[n, v, u] = torch.sigmoid(logit)
    windows = blend(bases, im_inds, boxes, coef, r1, r2)
    assert torch.allclose(paste_windows(windows, 9, 11), expected, atol=1e-6)
    assert torch.allclose(blend_full(bases, im_inds, boxes, coef, r1, r2), expected, atol=1e-6)
