"""The shared box-window mask assembly with a fixed grid: SipMask's CropSplit(2) (SipMask-VIS
sub-regions 2 × 2, row-major: top-left, top-right, bottom-left, bottom-right)."""

import torch

from vis_d2.modeling.mask_windows import blend, blend_full, paste_windows

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
