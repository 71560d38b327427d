"""The shared box-window mask assembly: every route (training and inference windows, the
inference masks at the output size) against the whole-map reference of tests/mask_reference.py
on random cases, and the fixed grid of SipMask's CropSplit(2) (SipMask-VIS sub-regions 2 × 2,
row-major: top-left, top-right, bottom-left, bottom-right)."""

import pytest
import torch
from mask_reference import blend_full, random_case, resized, resized_then_cropped

from vis_d2.modeling.mask_windows import assemble_masks, blend, paste_windows

MODES = ("subregion", "sum_sigmoid")
SEEDS = range(5)

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


def _scaled(coef, mode):
    """Coefficients whose masks are neither all 0 nor all 1 on the random cases' bases."""
    return coef * 3 if mode == "subregion" else coef * 0.5 - 1


def test_random_cases_cover_the_edges():
    """Each random case has boxes across the map's edges, one off it, and r1 ≠ r2 grids."""
    for seed in SEEDS:
        bases, _, boxes, _, r1, r2 = random_case(seed)
        height, width = bases.shape[-2:]
        x1, y1, x2, y2 = boxes.T
        across = (x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height)
        on_map = (x2 > 0) & (y2 > 0) & (x1 < width) & (y1 < height)
        assert (across & on_map).sum() >= 2 and not on_map[0]
        assert (r1 != r2).sum() >= len(r1) // 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_blend_training_route_equals_the_reference(seed, mode):
    """With gradients (chunks of similar windows, moved onto the map at their chunk's size):
    the pasted windows and the gradients of the maps and coefficients."""
    bases, im_inds, boxes, coef, r1, r2 = random_case(seed)
    bases.requires_grad_(True)
    coef = _scaled(coef, mode).requires_grad_(True)
    height, width = bases.shape[-2:]
    weights = torch.rand(len(boxes), height, width, generator=torch.Generator().manual_seed(seed))
    full = blend_full(bases, im_inds, boxes, coef, r1, r2, mode)
    expected_grads = torch.autograd.grad((full * weights).sum(), (bases, coef))
    windows = blend(bases, im_inds, boxes, coef, r1, r2, mode, chunk_size=3)
    assert (windows.origin >= 0).all()
    pasted = paste_windows(windows, height, width)
    assert (pasted - full).abs().max() < 1e-5
    grads = torch.autograd.grad((pasted * weights).sum(), (bases, coef))
    for grad, expected in zip(grads, expected_grads, strict=True):
        assert (grad - expected).abs().max() < 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_blend_inference_route_equals_the_reference(seed, mode):
    """Without gradients (each instance on its own window, a view of the map)."""
    bases, im_inds, boxes, coef, r1, r2 = random_case(seed)
    coef = _scaled(coef, mode)
    height, width = bases.shape[-2:]
    full = blend_full(bases, im_inds, boxes, coef, r1, r2, mode)
    with torch.no_grad():
        windows = blend(bases, im_inds, boxes, coef, r1, r2, mode)
    pasted = paste_windows(windows, height, width)
    assert (pasted - full).abs().max() < 1e-5
    assert torch.equal(windows.valid.flatten(1).sum(1), (full > 0).flatten(1).sum(1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_assemble_masks_equal_the_reference(seed, mode):
    """Inference masks at the output size: the reference's whole maps upsampled ×2, cropped
    to the input (odd sizes crop into the last base pixel), resized up or down and
    thresholded, except within 1e-5 of the threshold (summation orders differ there)."""
    bases, im_inds, boxes, coef, r1, r2 = random_case(seed)
    coef = _scaled(coef, mode)
    height, width = bases.shape[-2:]
    input_size = (2 * height - seed % 2, 2 * width - seed % 3)
    output_size = ((17, 60), (50, 41), (36, 46), (71, 90), (23, 23))[seed]
    probs = resized(blend_full(bases, im_inds, boxes, coef, r1, r2, mode), 2, input_size,
                    output_size)  # fmt: skip
    for threshold in (0.5, 0.3):
        masks = assemble_masks(bases, im_inds, boxes, coef, r1, r2, stride=2,
                               input_size=input_size, output_size=output_size,
                               threshold=threshold, mode=mode)  # fmt: skip
        assert masks.dtype == torch.bool and masks.shape == (len(boxes), *output_size)
        expected = probs >= threshold
        decided = (probs - threshold).abs() >= 1e-5
        assert torch.equal(masks[decided], expected[decided])
        assert expected.any(dim=(1, 2)).sum() >= len(boxes) // 2  # not a comparison of blanks


def test_single_cell_grids_and_one_image_as_ints():
    """r1, r2 and the image index as plain ints hold for every instance (STMask's one cell)."""
    bases, _, boxes, coef, _, _ = random_case(0)
    num = len(boxes)
    zeros, ones = torch.zeros(num, dtype=torch.long), torch.ones(num, dtype=torch.long)
    with torch.no_grad():
        by_ints = blend(bases, 0, boxes, coef, 1, 1)
        by_tensors = blend(bases, zeros, boxes, coef, ones, ones)
    assert torch.equal(by_ints.valid, by_tensors.valid)
    assert torch.equal(by_ints.logits[by_ints.valid], by_tensors.logits[by_tensors.valid])
    full = blend_full(bases, zeros, boxes, coef, ones, ones)
    assert (paste_windows(by_ints, *bases.shape[-2:]) - full).abs().max() < 1e-5
    kwargs = {"stride": 2, "input_size": (36, 46), "output_size": (40, 50), "threshold": 0.5}
    masks = assemble_masks(bases, 0, boxes, coef, 1, 1, **kwargs)
    assert masks.any()
    assert torch.equal(masks, assemble_masks(bases, zeros, boxes, coef, ones, ones, **kwargs))


def test_a_band_rounded_up_to_the_grid_size_stays_in_the_grid():
    """x1 = 4.2615519, x2 = 20.500002 (float32): pixel 20 (centre 20.5 < x2) is in the box, and
    (20.5 - x1)·r1 / (x2 - x1) rounds to r1 = 1; it still takes the grid's last column."""
    bases = torch.rand(1, 3, 4, 24, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[4.261551856994629, 0.0, 20.500001907348633, 4.0]])
    coef = torch.tensor([[[1.0, -1.0, 0.5], [-3.0, 2.0, 1.0]]])  # a second row, never a cell
    args = (bases, torch.tensor([0]), boxes, coef, torch.tensor([1]), torch.tensor([1]))
    full = blend_full(*args)
    assert (full[0, :, 20] > 0).all() and (full[0, :, 21] == 0).all()
    with torch.no_grad():
        inference = paste_windows(blend(*args), 4, 24)
    training = paste_windows(blend(bases, *args[1:3], coef.requires_grad_(True), *args[4:]), 4, 24)
    assert (inference - full).abs().max() < 1e-6
    assert (training - full).abs().max() < 1e-6
    kwargs = {"stride": 2, "input_size": (8, 48), "output_size": (8, 48), "threshold": 0.5}
    probs = resized(full, 2, (8, 48), (8, 48))
    masks, decided = assemble_masks(*args, **kwargs), (probs - 0.5).abs() >= 1e-5
    assert masks[:, :, 40:42].any() and torch.equal(masks[decided], probs[decided] >= 0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_index_cells_and_resize_then_crop_equal_the_reference(seed):
    """The ``index`` cell rule on every route (training and inference windows, inference
    masks) and the ``resize_then_crop`` masks against the reference's whole maps."""
    bases, im_inds, boxes, coef, r1, r2 = random_case(seed)
    full = blend_full(bases, im_inds, boxes, coef, r1, r2, rule="index")
    height, width = bases.shape[-2:]
    with torch.no_grad():
        inference = paste_windows(
            blend(bases, im_inds, boxes, coef, r1, r2, cell_rule="index"), height, width
        )
    training = paste_windows(
        blend(bases, im_inds, boxes, coef.requires_grad_(True), r1, r2, cell_rule="index"),
        height,
        width,
    )
    assert (inference - full).abs().max() < 1e-5 and (training - full).abs().max() < 1e-5
    assert not torch.equal(full > 0, blend_full(bases, im_inds, boxes, coef, r1, r2) > 0)
    input_size = (2 * height - seed % 2, 2 * width - seed % 3)
    output_size = ((17, 60), (50, 41), (36, 46), (71, 90), (23, 23))[seed]
    probs = resized_then_cropped(full.detach(), 2, input_size, output_size)
    masks = assemble_masks(bases, im_inds, boxes, coef.detach(), r1, r2, stride=2,
                           input_size=input_size, output_size=output_size, threshold=0.5,
                           cell_rule="index", resize="resize_then_crop")  # fmt: skip
    decided = (probs - 0.5).abs() >= 1e-5
    assert torch.equal(masks[decided], (probs >= 0.5)[decided])
    assert masks.any(dim=(1, 2)).sum() >= len(boxes) // 2
