"""SG-Net's granularity blender (Sec. 3.2, Eq. 1-3): per-instance sub-region grids and the
pooling of the master-grid coefficients to them; the masks are assembled on the box windows
by :mod:`vis_d2.modeling.mask_windows`.

Box sides are in network-input pixels; the basis ("base") map has stride ``base_stride``.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from ..mask_windows import MaskWindows, assemble_masks, blend

__all__ = [
    "grid_sizes",
    "instance_grids",
    "instance_masks",
    "instance_windows",
    "pool_coefficients",
    "pool_matrix",
]


def grid_sizes(
    widths: torch.Tensor, heights: torch.Tensor, max_div: int = 6, unit: float = 50.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: box widths/heights (N,) in input pixels → (r1, r2) (N,) int64 columns and rows,
    r = min(max_div, ceil(side / unit)), at least 1."""
    r1 = torch.ceil(widths / unit).clamp(1, max_div).long()
    r2 = torch.ceil(heights / unit).clamp(1, max_div).long()
    return r1, r2


@functools.lru_cache(maxsize=256)
def _pool_matrix(r2: int, r1: int, master: int) -> torch.Tensor:
    cells = master * master
    one_hot = torch.eye(cells).view(cells, 1, master, master)
    return F.adaptive_avg_pool2d(one_hot, (r2, r1)).view(cells, r2 * r1).t().contiguous()


def pool_matrix(r2: int, r1: int, master: int = 6) -> torch.Tensor:
    """(r2·r1, master²) matrix A with A @ v = ``adaptive_avg_pool2d`` of the row-major
    master × master grid v down to r2 rows × r1 columns (row-major)."""
    return _pool_matrix(int(r2), int(r1), int(master)).clone()


def pool_coefficients(
    coef: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, master: int = 6
) -> torch.Tensor:
    """Master-grid coefficients (N, master², K) and grids r1, r2 (N,) → (N, R, K) with
    R = max(master², max r2·r1): rows [0, r2·r1) hold the pooled sub-region vectors (row-major
    r2 × r1), the other rows are 0. One batched product; a matrix per distinct (r2, r1)."""
    num_rows = max(master * master, int((r1 * r2).max()) if len(coef) else 0)
    pairs, inverse = torch.unique(torch.stack((r2, r1), dim=1), dim=0, return_inverse=True)
    mats = coef.new_zeros((len(pairs), num_rows, master * master))
    for i, (rows, cols) in enumerate(pairs.tolist()):
        mats[i, : rows * cols] = _pool_matrix(rows, cols, master).to(mats)
    return torch.bmm(mats[inverse], coef)


def instance_grids(
    coef: torch.Tensor, boxes: torch.Tensor, *, max_div: int, unit: float, master_grid: int = 6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Master-grid coefficients ``coef`` (N, master², K) and boxes (N, 4) x1, y1, x2, y2 in
    input pixels → the pooled cell coefficients (N, R, K) of their Eq. 1 grids and the grids'
    columns r1 and rows r2 (N,)."""
    r1, r2 = grid_sizes(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], max_div, unit)
    return pool_coefficients(coef, r1, r2, master_grid), r1, r2


def instance_windows(
    bases: torch.Tensor,
    coef: torch.Tensor,
    im_inds: torch.Tensor,
    boxes: torch.Tensor,
    *,
    max_div: int,
    unit: float,
    master_grid: int = 6,
    mode: str = "subregion",
    base_stride: int = 2,
) -> MaskWindows:
    """The blender end to end for N instances: master-grid coefficients ``coef`` (N, master²,
    K) and boxes (N, 4) x1, y1, x2, y2 in input pixels → their Eq. 1 grids, pooled cell
    coefficients and mask windows on the (B, K, h, w) base maps of stride ``base_stride``."""
    pooled, r1, r2 = instance_grids(
        coef, boxes, max_div=max_div, unit=unit, master_grid=master_grid
    )
    return blend(bases, im_inds, boxes / base_stride, pooled, r1, r2, mode=mode)


def instance_masks(
    bases: torch.Tensor,
    coef: torch.Tensor,
    im_inds: torch.Tensor,
    boxes: torch.Tensor,
    *,
    max_div: int,
    unit: float,
    master_grid: int = 6,
    mode: str = "subregion",
    base_stride: int = 2,
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    threshold: float,
) -> torch.Tensor:
    """Inference: the masks of :func:`instance_windows` (same arguments) as bool (N, H, W) at
    the ``output_size`` of an ``input_size`` input, thresholded at ``threshold``
    (:func:`~vis_d2.modeling.mask_windows.assemble_masks`)."""
    pooled, r1, r2 = instance_grids(
        coef, boxes, max_div=max_div, unit=unit, master_grid=master_grid
    )
    return assemble_masks(
        bases,
        im_inds,
        boxes / base_stride,
        pooled,
        r1,
        r2,
        stride=base_stride,
        input_size=input_size,
        output_size=output_size,
        threshold=threshold,
        mode=mode,
    )
