"""The reference of the box-window mask assembly (:mod:`vis_d2.modeling.mask_windows`), written
from its definition on whole maps, and random cases to test every route against it.

On a basis map, pixel (u, v) (column, row) has its centre at (u + 0.5, v + 0.5). A pixel whose
centre is in an instance's box x1 ≤ u + 0.5 < x2, y1 ≤ v + 0.5 < y2 takes the cell
row·r1 + col of the box's r2 × r1 grid, col = min(floor((u + 0.5 − x1)·r1 / (x2 − x1)), r1 − 1)
and row likewise; its probability is σ(<coef[cell], F(u, v)>) (``subregion``) or
clamp(Σ_{j < r2·r1} σ(<coef[j], F(u, v)>), 0, 1) (``sum_sigmoid``); pixels outside are 0.
With the ``index`` rule, pixel u is in the box when x1 ≤ u < x2 and takes column
trunc((u − x1) / c), c = (x2 − x1 + 0.1) / r1 rounded to float32 (rows likewise), as the CropSplit
CUDA kernel's forward reads.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def subregion_index(
    boxes: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    rule: str = "centre",
) -> torch.Tensor:
    """Cells of pixels: ``boxes`` (N, 4) x1, y1, x2, y2, grids ``r1``, ``r2`` (N,), pixel rows
    ``ys`` (N, H, 1) and columns ``xs`` (N, 1, W) (broadcastable) → (N, H, W) int64 cell,
    −1 outside the box."""
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    r1, r2 = r1[:, None, None], r2[:, None, None]
    if rule == "index":
        u, v = xs.float(), ys.float()
        inside = (x1 <= u) & (u < x2) & (y1 <= v) & (v < y2)
        cell_w = ((x2 - x1).double() + 0.1).div(r1).float()
        cell_h = ((y2 - y1).double() + 0.1).div(r2).float()
        col = torch.minimum(((u - x1) / cell_w).trunc().long(), r1 - 1)
        row = torch.minimum(((v - y1) / cell_h).trunc().long(), r2 - 1)
        return torch.where(inside, row * r1 + col, -1)
    u, v = xs + 0.5, ys + 0.5
    inside = (x1 <= u) & (u < x2) & (y1 <= v) & (v < y2)
    col = torch.minimum(torch.floor((u - x1) * r1 / (x2 - x1)).long(), r1 - 1)
    row = torch.minimum(torch.floor((v - y1) * r2 / (y2 - y1)).long(), r2 - 1)
    return torch.where(inside, row * r1 + col, -1)


def blend_full(
    bases: torch.Tensor,
    im_inds: torch.Tensor,
    boxes: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    mode: str = "subregion",
    rule: str = "centre",
) -> torch.Tensor:
    """(N, h, w) probabilities of N instances on the whole (B, K, h, w) ``bases``, 0 outside
    their boxes (arguments as :func:`vis_d2.modeling.mask_windows.blend`; differentiable)."""
    _, _, height, width = bases.shape
    ys = torch.arange(height)[None, :, None]
    xs = torch.arange(width)[None, None, :]
    cells = subregion_index(boxes, r1, r2, ys, xs, rule)
    scores = torch.einsum("nck,nkhw->nchw", coef, bases[im_inds])  # every cell at every pixel
    if mode == "subregion":
        probs = scores.gather(1, cells.clamp(min=0)[:, None]).squeeze(1).sigmoid()
    elif mode == "sum_sigmoid":
        in_grid = torch.arange(coef.shape[1])[None, :, None, None] < (r1 * r2)[:, None, None, None]
        probs = (scores.sigmoid() * in_grid).sum(dim=1).clamp(0, 1)
    else:
        raise ValueError(mode)
    return torch.where(cells >= 0, probs, 0.0)


def resized(
    probs: torch.Tensor, stride: int, input_size: tuple[int, int], output_size: tuple[int, int]
) -> torch.Tensor:
    """Whole base-map probabilities (N, h, w) upsampled ×``stride``, cropped to the
    ``input_size`` and resized to the ``output_size`` (bilinear): (N, H, W)."""
    up = F.interpolate(probs[:, None], scale_factor=stride, mode="bilinear")
    crop = up[:, :, : input_size[0], : input_size[1]]
    return F.interpolate(crop, size=output_size, mode="bilinear")[:, 0]


def resized_then_cropped(
    probs: torch.Tensor, stride: int, input_size: tuple[int, int], output_size: tuple[int, int]
) -> torch.Tensor:
    """Whole base-map probabilities (N, h, w) resized once by stride / (input / output)
    (bilinear, ``scale_factor`` per axis), then the output's top-left crop, zero past the
    resized map: (N, H, W)."""
    factors = [stride / (i / o) for i, o in zip(input_size, output_size, strict=True)]
    up = F.interpolate(probs[:, None], scale_factor=factors, mode="bilinear")[:, 0]
    out = probs.new_zeros((len(probs), *output_size))
    h, w = min(up.shape[1], output_size[0]), min(up.shape[2], output_size[1])
    out[:, :h, :w] = up[:, :h, :w]
    return out


def random_case(
    seed: int, num: int = 12, channels: int = 6, height: int = 18, width: int = 23, cells: int = 36
) -> tuple[torch.Tensor, ...]:
    """Basis maps of 2 images (2, channels, height, width) and ``num`` instances: image
    indices, boxes (N, 4) in base-map pixels (fractional, from under a pixel to most of the
    map wide, many partly off it; the first wholly off it, the second past every edge), cell
    coefficients (N, cells, channels) and grids r1, r2 (N,) of 1 to 6, drawn independently."""
    g = torch.Generator().manual_seed(seed)
    bases = torch.rand(2, channels, height, width, generator=g)
    im_inds = torch.randint(0, 2, (num,), generator=g)
    size = torch.tensor([width, height], dtype=torch.float32)
    wh = (0.03 + torch.rand(num, 2, generator=g) * 0.8) * size
    centre = (torch.rand(num, 2, generator=g) * 1.1 - 0.05) * size
    boxes = torch.cat((centre - wh / 2, centre + wh / 2), dim=1)
    boxes[0] = torch.tensor([width + 1.0, -5.0, width + 6.0, 3.0])  # off the map
    boxes[1] = torch.tensor([-2.5, -1.5, width + 3.2, height + 0.7])  # past every edge
    r1 = torch.randint(1, 7, (num,), generator=g)
    r2 = torch.randint(1, 7, (num,), generator=g)
    coef = torch.randn(num, cells, channels, generator=g)
    return bases, im_inds, boxes, coef, r1, r2
