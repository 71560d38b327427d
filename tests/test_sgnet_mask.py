"""SG-Net mask branch: grid sizes, partition, coefficient pooling, blender, BMM and SAM
(SG-Net Sec. 3.2, Eq. 1-3) and the mask loss (Sec. 3.4)."""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from mask_reference import blend_full, resized
from torch.nn import functional as F

from vis_d2.config import get_cfg
from vis_d2.modeling.mask_windows import (
    MaskWindows,
    assemble_masks,
    blend,
    gt_windows,
    mask_loss,
    paste_windows,
)
from vis_d2.modeling.mask_windows.grids import band
from vis_d2.modeling.sgnet.base_mask import BaseMaskModule
from vis_d2.modeling.sgnet.blender import (
    grid_sizes,
    instance_windows,
    pool_coefficients,
    pool_matrix,
)
from vis_d2.modeling.sgnet.spatial_attention import SpatialAttention


@pytest.fixture
def cfg():
    return get_cfg()


def _grid(*wh, **kwargs):
    w, h = torch.tensor(wh, dtype=torch.float32).T
    r1, r2 = grid_sizes(w, h, **kwargs)
    return list(zip(r1.tolist(), r2.tolist(), strict=True))


def test_grid_sizes():
    sizes = [(120, 40), (50, 50), (50.01, 50), (400, 20), (300, 300), (1, 1)]
    assert _grid(*sizes) == [(3, 1), (1, 1), (2, 1), (6, 1), (6, 6), (1, 1)]
    assert _grid((300, 120), (10, 500), max_div=4) == [(4, 3), (1, 4)]
    r1, _ = grid_sizes(torch.tensor([0.0]), torch.tensor([0.0]))
    assert r1.dtype == torch.int64 and r1.tolist() == [1]


def _cells(box, r1, r2, height, width):
    """(height, width) cell of each pixel of the map: row band · r1 + column band, -1 outside."""
    x1, y1, x2, y2 = torch.tensor(box, dtype=torch.float32)
    rows = band(y1, y2, torch.tensor(r2), torch.arange(height))[:, None]
    cols = band(x1, x2, torch.tensor(r1), torch.arange(width))[None, :]
    return torch.where((rows >= 0) & (cols >= 0), rows * r1 + cols, -1)


def test_partition_2x2():
    cells = _cells([0, 0, 10, 10], 2, 2, 12, 12)
    assert (cells[:10, :5] % 2 == 0).all() and (cells[:10, 5:10] % 2 == 1).all()
    assert (cells[:5, :10] // 2 == 0).all() and (cells[5:10, :10] // 2 == 1).all()
    assert torch.bincount(cells[cells >= 0]).tolist() == [25, 25, 25, 25]
    assert (cells[10:] == -1).all() and (cells[:, 10:] == -1).all()


def test_partition_uneven_width():
    cells = _cells([0, 0, 7, 1], 3, 1, 2, 9)
    assert cells[0].tolist() == [0, 0, 1, 1, 1, 2, 2, -1, -1]
    assert torch.bincount(cells[0][cells[0] >= 0]).tolist() == [2, 3, 2]
    assert (cells[1] == -1).all()


@pytest.mark.parametrize(
    "box, r1, r2", [([0, 0, 10, 10], 2, 2), ([1.3, 2.7, 17.6, 9.2], 5, 3), ([3, 1, 9.5, 12], 6, 6)]
)
def test_partition_disjoint_union(box, r1, r2):
    height, width = 16, 20
    cells = _cells(box, r1, r2, height, width)
    v = torch.arange(height)[:, None] + 0.5
    u = torch.arange(width)[None, :] + 0.5
    in_box = (u >= box[0]) & (u < box[2]) & (v >= box[1]) & (v < box[3])
    # one cell per pixel by construction; the assigned pixels are exactly the box
    assert torch.equal(cells >= 0, in_box)
    assert cells.max() < r1 * r2
    # every cell is one axis-aligned block of the box
    for cell in range(r1 * r2):
        rows, cols = torch.nonzero(cells == cell, as_tuple=True)
        assert len(rows) > 0
        block = cells[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (block == cell).all()


def test_pool_master_grid():
    values = torch.arange(36, dtype=torch.float32)
    coef = values[None, :, None].repeat(3, 1, 1)
    r1, r2 = torch.tensor([6, 3, 1]), torch.tensor([6, 3, 1])
    pooled = pool_coefficients(coef, r1, r2)[..., 0]
    assert pooled.shape == (3, 36)
    assert torch.equal(pooled[0], values)
    expected_3x3 = torch.tensor([3.5, 5.5, 7.5, 15.5, 17.5, 19.5, 27.5, 29.5, 31.5])
    assert torch.allclose(pooled[1, :9], expected_3x3)
    assert (pooled[1, 9:] == 0).all()
    assert pooled[2, 0].item() == pytest.approx(17.5)
    assert (pooled[2, 1:] == 0).all()
    assert torch.equal(pool_matrix(6, 6), torch.eye(36))


def test_pool_matches_adaptive_avg_pool():
    torch.manual_seed(0)
    coef = torch.randn(5, 36, 4)
    r1, r2 = torch.tensor([4, 5, 2, 4, 1]), torch.tensor([5, 2, 3, 5, 6])
    pooled = pool_coefficients(coef, r1, r2)
    for n in range(5):
        grid = coef[n].T.reshape(4, 6, 6)
        ref = F.adaptive_avg_pool2d(grid, (int(r2[n]), int(r1[n]))).flatten(1).T
        assert torch.allclose(pooled[n, : len(ref)], ref, atol=1e-6)
    # grids finer than the master grid get more rows
    assert pool_coefficients(coef[:1], torch.tensor([8]), torch.tensor([7])).shape == (1, 56, 4)


def _scene(num_per_image=(4, 3), channels=8, height=20, width=24, seed=0):
    """Bases on 2 images and instances with fractional boxes (one partly off the map) and
    assorted grids; boxes and everything else in base-map pixels."""
    g = torch.Generator().manual_seed(seed)
    bases = torch.rand(2, channels, height, width, generator=g)
    im_inds = torch.cat([torch.full((n,), i) for i, n in enumerate(num_per_image)])
    num = len(im_inds)
    xy = torch.rand(num, 2, generator=g) * torch.tensor([width - 4.0, height - 4.0])
    wh = 1.5 + torch.rand(num, 2, generator=g) * 12
    boxes = torch.cat((xy, xy + wh), dim=1)
    boxes[0] = torch.tensor([-2.3, 14.2, 9.7, 25.0])  # crosses the bottom and left edges
    r1 = torch.randint(1, 7, (num,), generator=g)
    r2 = torch.randint(1, 7, (num,), generator=g)
    coef = torch.randn(num, 36, channels, generator=g)
    return bases, im_inds, boxes, coef, r1, r2


def _box_mask(boxes, height, width):
    v = torch.arange(height)[None, :, None] + 0.5
    u = torch.arange(width)[None, None, :] + 0.5
    b = boxes[:, :, None, None]
    return (u >= b[:, 0]) & (u < b[:, 2]) & (v >= b[:, 1]) & (v < b[:, 3])


@pytest.mark.parametrize("mode", ["subregion", "sum_sigmoid"])
def test_blend_range_and_outside_zero(mode):
    bases, im_inds, boxes, coef, r1, r2 = _scene()
    inside = _box_mask(boxes, 20, 24)
    for masks in (
        blend_full(bases, im_inds, boxes, coef, r1, r2, mode),
        paste_windows(blend(bases, im_inds, boxes, coef, r1, r2, mode), 20, 24),
    ):
        assert masks.min() >= 0 and masks.max() <= 1
        assert (masks[~inside] == 0).all()
        assert (masks[inside] > 0).all()


def test_sum_sigmoid_formula():
    bases, im_inds, boxes, coef, r1, r2 = _scene()
    coef = coef * 0.3 - 1.5
    masks = blend_full(bases, im_inds, boxes, coef, r1, r2, "sum_sigmoid")
    scores = torch.einsum("nck,nkhw->nchw", coef, bases[im_inds]).sigmoid()
    in_grid = torch.arange(36)[None, :, None, None] < (r1 * r2)[:, None, None, None]
    ref = (scores * in_grid).sum(1).clamp(0, 1) * _box_mask(boxes, 20, 24)
    assert (masks - ref).abs().max() < 1e-5


def test_blend_single_cell_is_sigmoid_of_dot():
    bases, im_inds, boxes, coef, _, _ = _scene()
    ones = torch.ones(len(boxes), dtype=torch.long)
    ref = torch.einsum("nk,nkhw->nhw", coef[:, 0], bases[im_inds]).sigmoid()
    ref = ref * _box_mask(boxes, 20, 24)
    full = blend_full(bases, im_inds, boxes, coef, ones, ones)
    windows = paste_windows(blend(bases, im_inds, boxes, coef, ones, ones), 20, 24)
    assert (full - ref).abs().max() < 1e-6
    assert (windows - ref).abs().max() < 1e-6


def test_blend_equal_coefficients_ignore_grid():
    bases, im_inds, boxes, coef, _, _ = _scene()
    coef = coef[:, :1].expand(-1, 36, -1)
    masks = []
    for r in [(1, 1), (3, 2), (6, 6), (2, 5)]:
        r1 = torch.full((len(boxes),), r[0])
        r2 = torch.full((len(boxes),), r[1])
        masks.append(paste_windows(blend(bases, im_inds, boxes, coef, r1, r2), 20, 24))
    for m in masks[1:]:
        assert (m - masks[0]).abs().max() < 1e-6


@pytest.mark.parametrize("mode", ["subregion", "sum_sigmoid"])
def test_blend_windows_match_full_map(mode):
    bases, im_inds, boxes, coef, r1, r2 = _scene()
    bases.requires_grad_(True)
    coef.requires_grad_(True)
    weights = torch.rand(len(boxes), 20, 24)
    full = blend_full(bases, im_inds, boxes, coef, r1, r2, mode)
    grads_full = torch.autograd.grad((full * weights).sum(), (bases, coef))
    windows = blend(bases, im_inds, boxes, coef, r1, r2, mode, max_elements=8 * 14 * 14 * 2)
    assert windows.logits.shape[1:] == windows.valid.shape[1:]
    pasted = paste_windows(windows, 20, 24)
    assert (pasted - full).abs().max() < 1e-5  # sum_sigmoid: probabilities clamped to 1 - 1e-6
    grads = torch.autograd.grad((pasted * weights).sum(), (bases, coef))
    for g, g_full in zip(grads, grads_full, strict=True):
        assert (g - g_full).abs().max() < 1e-5


def _edge_scene():
    """:func:`_scene` with 27 boxes and 7 more across every edge of the map, larger than it,
    wholly off it and thinner than a pixel."""
    bases, im_inds, boxes, coef, r1, r2 = _scene(num_per_image=(14, 13), seed=3)
    extra = torch.tensor(
        [
            [-3.0, -2.0, 23.5, 19.2],  # larger than the map in both directions
            [20.2, 16.1, 30.0, 26.0],  # crosses the right and bottom edges
            [21.0, -4.0, 24.0, 3.3],  # top-right corner
            [-6.0, 5.0, -1.0, 9.0],  # left of the map
            [4.0, 21.0, 9.0, 25.0],  # below the map
            [7.2, 3.1, 7.4, 3.2],  # no pixel centre inside
            [0.0, 0.0, 24.0, 1.0],  # one row
        ]
    )
    boxes = torch.cat((boxes, extra))
    im_inds = torch.cat((im_inds, torch.tensor([0, 1, 0, 1, 0, 1, 0])))
    coef = torch.cat((coef, coef[: len(extra)].flip(0)))
    r1 = torch.cat((r1, torch.tensor([6, 5, 2, 3, 1, 2, 6])))
    r2 = torch.cat((r2, torch.tensor([6, 4, 3, 2, 2, 1, 1])))
    return bases, im_inds, boxes, coef, r1, r2


@pytest.mark.parametrize("mode", ["subregion", "sum_sigmoid"])
def test_inference_and_training_paths_equal_the_full_map_at_every_edge(mode):
    """Inference (one window per instance) and training (chunks of similar windows, moved
    onto the map at their chunk's size) give the masks of the whole-map reference for boxes
    of every size, across every edge of the map, wholly off it and thinner than a pixel."""
    bases, im_inds, boxes, coef, r1, r2 = _edge_scene()
    full = blend_full(bases, im_inds, boxes, coef, r1, r2, mode)
    with torch.no_grad():
        inference = blend(bases, im_inds, boxes, coef, r1, r2, mode)
    training = blend(bases.requires_grad_(True), im_inds, boxes, coef, r1, r2, mode, chunk_size=5)
    for windows in (inference, training):
        ys, xs = windows.pixel_coords()
        assert (windows.origin >= 0).all()
        # every window lies on the map
        assert (ys[windows.valid.any(2)[:, :, None]] < 20).all()
        assert (xs[windows.valid.any(1)[:, None, :]] < 24).all()
        pasted = paste_windows(windows, 20, 24)
        assert (pasted - full).abs().max() < 1e-5
    assert torch.equal(inference.valid.flatten(1).sum(1), training.valid.flatten(1).sum(1))
    assert (full[len(boxes) - 4 : len(boxes) - 1] == 0).all()  # off the map, no centre inside
    assert (full[-1, 0] > 0).all() and (full[-1, 1:] == 0).all()


def test_blend_windows_cover_only_the_box():
    bases, im_inds, boxes, coef, r1, r2 = _scene()
    windows = blend(bases, im_inds, boxes, coef, r1, r2)
    counts = windows.valid.flatten(1).sum(1)
    assert torch.equal(counts, _box_mask(boxes, 20, 24).flatten(1).sum(1))
    # windows are at most one pixel wider than the box on each side
    assert windows.logits.shape[1] <= int((boxes[:, 3] - boxes[:, 1]).max()) + 2
    assert windows.logits.shape[2] <= int((boxes[:, 2] - boxes[:, 0]).max()) + 2


def test_blend_gradients_only_to_used_cells():
    bases = torch.rand(1, 4, 12, 12)
    coef = torch.randn(1, 36, 4, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 3.0, 12.0]])
    r1, r2 = torch.tensor([6]), torch.tensor([1])
    # pixel centres 0.5, 1.5, 2.5 → columns 1, 3, 5 of 6
    blend(bases, torch.tensor([0]), boxes, coef, r1, r2).probs().sum().backward()
    used = coef.grad[0].abs().sum(1) > 0
    assert torch.nonzero(used).flatten().tolist() == [1, 3, 5]


def test_instance_windows_is_grid_pooling_and_blend():
    torch.manual_seed(0)
    bases = torch.rand(1, 8, 40, 48)
    master = torch.randn(2, 36, 8)
    im_inds = torch.tensor([0, 0])
    boxes = torch.tensor([[10.0, 12.0, 70.0, 40.0], [40.0, 30.0, 56.0, 74.0]])  # input px
    windows = instance_windows(bases, master, im_inds, boxes, max_div=6, unit=10.0)
    # 60x28 and 16x44 px boxes: grids 6x3 and 2x5 (Eq. 1, unit 10 px); the blend runs on the
    # stride-2 base map
    r1, r2 = torch.tensor([6, 2]), torch.tensor([3, 5])
    direct = blend(bases, im_inds, boxes / 2, pool_coefficients(master, r1, r2, 6), r1, r2)
    assert torch.equal(paste_windows(windows, 40, 48), paste_windows(direct, 40, 48))
    coarse = instance_windows(bases, master, im_inds, boxes, max_div=6, unit=50.0)
    assert not torch.equal(paste_windows(coarse, 40, 48), paste_windows(windows, 40, 48))


def test_blend_no_instances():
    bases = torch.rand(2, 8, 10, 12, requires_grad=True)
    master = torch.zeros(0, 36, 8, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.long)
    coef = pool_coefficients(master, empty, empty)
    assert coef.shape == (0, 36, 8)
    windows = blend(bases, empty, torch.zeros(0, 4), coef, empty, empty)
    assert windows.logits.shape[0] == 0 and windows.origin.shape == (0, 2)
    assert paste_windows(windows, 10, 12).shape == (0, 10, 12)
    loss = mask_loss(windows, gt_windows(torch.zeros(1, 10, 12), empty, windows))
    assert torch.isfinite(loss) and loss.item() == 0
    loss.backward()
    assert bases.grad is not None and (bases.grad == 0).all()


def _laid_out(bases: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as (B, K, h, w) ``contiguous``, ``channels_last`` or ``offset``: a
    channels-last view that starts past the beginning of its storage."""
    if layout == "contiguous":
        return bases.contiguous()
    if layout == "channels_last":
        return bases.contiguous(memory_format=torch.channels_last)
    padded = torch.cat((bases[:1], bases)).contiguous(memory_format=torch.channels_last)
    view = padded[1:]
    assert view.storage_offset() > 0 and torch.equal(view, bases)
    return view


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "offset"])
@pytest.mark.parametrize("mode", ["subregion", "sum_sigmoid"])
@pytest.mark.parametrize(
    "in_size, out_size",
    [((40, 48), (40, 48)), ((37, 45), (90, 101)), ((33, 47), (21, 30)), ((40, 41), (64, 64))],
)
def test_assemble_masks_equal_blending_and_resizing_whole_maps(mode, in_size, out_size, layout):
    """Inference masks, each blended on its box and resized on its own span, equal the
    whole-map route: the whole-map blend, ×2 upsampling, crop to the unpadded input, resize,
    threshold. Covers up- and down-sizing, boxes across every edge, off the map, without a
    pixel centre, in the padding that the crop removes, both blenders and every memory layout
    of the maps (the windows are strided views of them)."""
    bases, im_inds, boxes, coef, r1, r2 = _edge_scene()
    boxes[1] = torch.tensor([20.5, 17.0, 23.9, 19.8])  # mostly in the padding for odd inputs
    coef = coef * 3 if mode == "subregion" else coef * 0.5 - 1
    probs = resized(blend_full(bases, im_inds, boxes, coef, r1, r2, mode), 2, in_size, out_size)
    bases = _laid_out(bases, layout)
    for threshold in (0.5, 0.2, 0.9):
        expected = probs >= threshold
        masks = assemble_masks(bases, im_inds, boxes, coef, r1, r2, stride=2, input_size=in_size,
                               output_size=out_size, threshold=threshold, mode=mode)  # fmt: skip
        assert masks.shape == expected.shape and masks.dtype == torch.bool
        near_threshold = (probs - threshold).abs() < 1e-5  # summation order may differ there
        assert torch.equal(masks[~near_threshold], expected[~near_threshold])
    assert (probs >= 0.2).any(dim=(1, 2)).sum() >= 20  # not a comparison of empty masks
    assert not (probs >= 0.2)[-4:-1].any()  # off the map or without a pixel centre


def test_assemble_masks_edge_cases():
    bases, im_inds, boxes, coef, r1, r2 = _scene()
    kwargs = {"stride": 2, "input_size": (40, 48), "output_size": (30, 50)}
    empty = torch.zeros(0, dtype=torch.long)
    none = assemble_masks(bases, empty, boxes[:0], coef[:0], empty, empty, threshold=0.5, **kwargs)
    assert none.shape == (0, 30, 50) and none.dtype == torch.bool
    with pytest.raises(ValueError, match="positive"):
        assemble_masks(bases, im_inds, boxes, coef, r1, r2, threshold=0.0, **kwargs)
    with pytest.raises(ValueError, match="blender mode"):
        assemble_masks(bases, im_inds, boxes, coef, r1, r2, threshold=0.5, mode="max", **kwargs)
    # under bf16 autocast the masks are still assembled in fp32
    fp32 = assemble_masks(bases, im_inds, boxes, coef, r1, r2, threshold=0.5, **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = assemble_masks(bases, im_inds, boxes, coef, r1, r2, threshold=0.5, **kwargs)
    assert fp32.any() and torch.equal(mixed, fp32)


def test_gt_windows():
    bases, im_inds, boxes, coef, r1, r2 = _scene()
    gt_masks = torch.rand(3, 20, 24) > 0.5
    gt_inds = torch.tensor([2, 0, 1, 1, 0, 2, 0])
    windows = blend(bases, im_inds, boxes, coef, r1, r2)
    targets = gt_windows(gt_masks, gt_inds, windows)
    assert targets.dtype == torch.float32 and targets.shape == windows.logits.shape
    # pasting the targets through the windows gives the GT masks cropped to the boxes
    as_probs = MaskWindows(torch.logit(targets, eps=1e-7), windows.valid, windows.origin)
    pasted = paste_windows(as_probs, 20, 24)
    ref = gt_masks[gt_inds].float() * _box_mask(boxes, 20, 24)
    assert (pasted - ref).abs().max() < 1e-5
    # the window of instance 0 runs past the bottom of the map: targets are 0 there
    ys, _ = windows.pixel_coords()
    assert (targets[0][ys[0, :, 0] >= 20] == 0).all()


def test_mask_loss_value():
    logits = torch.tensor([[[0.0, 0.0]], [[2.0, 50.0]], [[-3.0, 1.0]]], requires_grad=True)
    valid = torch.tensor([[[True, True]], [[True, False]], [[False, False]]])
    targets = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    windows = MaskWindows(logits, valid, torch.zeros(3, 2, dtype=torch.long))
    loss = mask_loss(windows, targets)
    # instance 0: ln 2 on both pixels; instance 1: ln(1 + e^-2) on one pixel; 2 is skipped
    expected = (math.log(2) + math.log1p(math.exp(-2))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.4100375, abs=1e-6)
    loss.backward()
    assert logits.grad[1, 0, 1] == 0 and (logits.grad[2] == 0).all()
    probs = windows.probs()
    assert (probs[~valid] == 0).all() and (probs[valid] > 0).all()


def test_mask_loss_no_valid_pixel_keeps_graph():
    logits = torch.randn(2, 3, 3, requires_grad=True)
    valid = torch.zeros(2, 3, 3, dtype=torch.bool)
    windows = MaskWindows(logits, valid, torch.zeros(2, 2, dtype=torch.long))
    loss = mask_loss(windows, torch.ones(2, 3, 3))
    assert loss.item() == 0
    loss.backward()
    assert (logits.grad == 0).all()


def test_base_mask_module_shapes(cfg):
    shapes = {f"p{i}": ShapeSpec(channels=256, stride=2**i) for i in range(3, 8)}
    bmm = BaseMaskModule(cfg, shapes)
    feats = {f"p{i}": torch.randn(1, 256, 384 // 2**i, 640 // 2**i) for i in range(3, 6)}
    with torch.no_grad():
        bases = bmm(feats)
    assert bases.shape == (1, 36, 192, 320)
    assert bases.min() >= 0
    convs = [m for m in bmm.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (768, 128, (3, 3)),
        (128, 128, (3, 3)),
        (128, 36, (1, 1)),
    ]


def test_base_mask_module_norm(cfg):
    cfg.MODEL.SGNET.BASE.NORM = "GN"
    shapes = {f"p{i}": ShapeSpec(channels=32, stride=2**i) for i in range(3, 6)}
    bmm = BaseMaskModule(cfg, shapes)
    feats = {f"p{i}": torch.randn(2, 32, 64 // 2**i, 96 // 2**i) for i in range(3, 6)}
    bases = bmm(feats)
    assert bases.shape == (2, 36, 32, 48)
    bases.sum().backward()
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in bmm.modules()) == 2


def test_sam_dense_shapes(cfg):
    sam = SpatialAttention(cfg, [ShapeSpec(channels=256, stride=s) for s in (8, 16, 32, 64, 128)])
    assert sam.num_cells == 36 and sam.num_bases == 36
    sizes = [(8, 10), (4, 5), (2, 3), (1, 2), (1, 1)]
    with torch.no_grad():
        towers = sam.forward_towers([torch.randn(2, 256, h, w) for h, w in sizes])
        dense = sam.dense_coefficients(towers)
    assert [tuple(d.shape) for d in dense] == [(2, 1296, h, w) for h, w in sizes]
    assert [tuple(t.shape) for t in towers] == [(2, 256, h, w) for h, w in sizes]


def test_sam_sparse_matches_dense(cfg):
    cfg.MODEL.SGNET.SAM.CONVS_DIM = 32
    sam = SpatialAttention(cfg, [ShapeSpec(channels=16)] * 3)
    sizes = [(6, 7), (3, 4), (1, 2)]
    torch.manual_seed(0)
    towers = sam.forward_towers([torch.randn(2, 16, h, w) for h, w in sizes])
    dense = sam.dense_coefficients(towers)
    levels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0])
    im_inds = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0])
    loc_inds = torch.tensor([0, 41, 6, 20, 0, 11, 5, 1, 0, 35, 7, 0, 13])
    coef = sam.coefficients(towers, im_inds, levels, loc_inds)
    assert coef.shape == (13, 36, 36)
    reads = zip(levels.tolist(), im_inds.tolist(), loc_inds.tolist(), strict=True)
    ref = torch.stack([dense[lv][im].flatten(1)[:, loc] for lv, im, loc in reads])
    ref = ref.view(13, 36, 36)
    assert (coef - ref).abs().max() < 1e-5
    weights = torch.randn_like(coef)
    grad = torch.autograd.grad((coef * weights).sum(), sam.predictor.weight)[0]
    grad_ref = torch.autograd.grad((ref * weights).sum(), sam.predictor.weight)[0]
    assert (grad - grad_ref).abs().max() < 1e-5


def test_sam_init(cfg):
    sam = SpatialAttention(cfg, [ShapeSpec(channels=256)] * 5)
    for conv in (sam.tower[0], sam.predictor):
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert (conv.bias == 0).all()
