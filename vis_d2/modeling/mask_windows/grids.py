"""The mask formula of an instance: which sub-region cell a pixel takes, and the pixel's logit.

An instance has a box, a grid of r2 rows × r1 columns of equal sub-regions over it and one
coefficient vector per cell (row-major). On the basis map, where pixel (u, v) (column, row)
has its centre at (u + 0.5, v + 0.5), a pixel whose centre is in the box takes the cell of
row band floor((v + 0.5 − y1)·r2 / (y2 − y1)) and column band floor((u + 0.5 − x1)·r1 /
(x2 − x1)) (each clamped to the grid); pixels outside the box take none. Every route of the
package computes its cells with :func:`band` and its logits with :func:`pixel_logits`.

That is the ``"centre"`` cell rule; the ``"index"`` rule (:data:`CELL_RULES`) compares the
integer pixel index instead: pixel u is in the box when x1 ≤ u < x2 and takes column band
trunc((u − x1) / ((x2 − x1 + 0.1) / r1)), the cell width computed in double and rounded to
float as a CUDA kernel with a double literal does (the same for rows).
"""

from __future__ import annotations

import torch

__all__ = [
    "BLEND_MODES",
    "CELL_RULES",
    "band",
    "check_cell_rule",
    "check_mode",
    "first_inside",
    "instance_values",
    "pixel_logits",
    "row_cells",
]

BLEND_MODES = ("subregion", "sum_sigmoid")
CELL_RULES = ("centre", "index")
_LOGIT_EPS = 1e-6


def check_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of :data:`BLEND_MODES`."""
    if mode not in BLEND_MODES:
        raise ValueError(f"blender mode '{mode}' is not one of {BLEND_MODES}")


def check_cell_rule(rule: str) -> None:
    """Raise ``ValueError`` unless ``rule`` is one of :data:`CELL_RULES`."""
    if rule not in CELL_RULES:
        raise ValueError(f"cell rule '{rule}' is not one of {CELL_RULES}")


def first_inside(edge: torch.Tensor, rule: str = "centre") -> torch.Tensor:
    """The first pixel index (float, integral) at or past a box edge ``edge`` (any shape, map
    pixels) that the cell ``rule`` puts inside: ⌈edge − 0.5⌉ (``centre``), ⌈edge⌉ (``index``).
    Pixels [first_inside(x1), first_inside(x2)) are the box's."""
    return (edge - 0.5).ceil() if rule == "centre" else edge.ceil()


def instance_values(value: torch.Tensor | int, num: int, device: torch.device) -> torch.Tensor:
    """(num,) int64 of a per-instance value: a tensor as given, an int for every instance."""
    if isinstance(value, int):
        return torch.full((num,), value, dtype=torch.int64, device=device)
    return value


def band(
    lo: torch.Tensor,
    hi: torch.Tensor,
    r: torch.Tensor,
    coords: torch.Tensor,
    rule: str = "centre",
) -> torch.Tensor:
    """Band of pixel coordinates ``coords`` (int) along one axis of boxes spanning [lo, hi)
    split into ``r`` equal bands (all broadcastable, base-map pixels), int64, −1 outside.
    ``centre``: floor((c + 0.5 − lo)·r / (hi − lo)) clamped to [0, r − 1] where
    lo ≤ c + 0.5 < hi; ``index``: trunc((c − lo) / ((hi − lo + 0.1) / r)) where lo ≤ c < hi
    (see the module's docstring)."""
    if rule == "index":
        index_ = coords.to(lo.dtype)
        cell = ((hi - lo).double() + 0.1).div(r).to(lo.dtype)
        inside = torch.minimum(((index_ - lo) / cell).long().clamp(min=0), r - 1)
        return torch.where((lo <= index_) & (index_ < hi), inside, -1)
    centre = coords.to(lo.dtype) + 0.5
    index = torch.floor((centre - lo) * r / (hi - lo).clamp(min=1e-6)).long()
    index = torch.minimum(index.clamp(min=0), r - 1)
    return torch.where((lo <= centre) & (centre < hi), index, -1)


def row_cells(rows: torch.Tensor, r1: torch.Tensor, width: int, num_rows: int) -> torch.Tensor:
    """The cells of each window row's band: row bands ``rows`` (n, h) (−1, outside the box,
    taken as band 0) and grid columns ``r1`` (n,) → (n, h, width) int64 row·r1 + [0, width),
    clamped to ``num_rows`` − 1 (the coefficient rows; cells past r1 are never read)."""
    first = rows.clamp(min=0) * r1[:, None]
    return (first[:, :, None] + torch.arange(width, device=rows.device)).clamp(max=num_rows - 1)


def pixel_logits(
    feats: torch.Tensor,
    coef: torch.Tensor,
    cells: torch.Tensor,
    cols: torch.Tensor,
    mode: str,
    num_cells: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n, h, w) logits of the pixels of n windows: features ``feats`` (n, h, w, K), cell
    coefficients ``coef`` (n, C, K), each row's band cells ``cells`` (n, h, r)
    (:func:`row_cells`) and each column's band ``cols`` (n, w) (≥ 0); ``num_cells`` (n,) the
    r2·r1 cells of each grid where some have fewer than C (None: all C rows are cells).

    ``subregion``: <coef[row·r1 + col], F(u, v)>, computed as the r cells of each row's band
    times the row's features (the grid is separable), then each pixel takes its column's.
    ``sum_sigmoid``: the logit of clamp(Σ_{j < r2·r1} σ(<coef[j], F(u, v)>), 0, 1), the
    probability clamped to [1e-6, 1 − 1e-6]."""
    num, height, width, channels = feats.shape
    if mode == "subregion":
        index = cells.reshape(num, -1, 1).expand(-1, -1, channels)
        band_coef = coef.gather(1, index).view(num * height, -1, channels)  # (n·h, r, K)
        rows = feats.flatten(0, 1)  # (n·h, w, K)
        own = cols.unsqueeze(1).expand(num, height, width).reshape(-1, width)
        if feats.requires_grad:
            # (n·h, w, r) scores: the features' gradient comes back in their layout, uncopied
            scores = torch.bmm(rows, band_coef.transpose(1, 2))
            return scores.gather(2, own[:, :, None]).view(num, height, width)
        scores = torch.bmm(band_coef, rows.transpose(1, 2))  # (n·h, r, w)
        return scores.gather(1, own[:, None, :]).view(num, height, width)
    scores = torch.matmul(feats.reshape(num, height * width, channels), coef.transpose(1, 2))
    probs = scores.sigmoid()
    if num_cells is not None:
        in_grid = torch.arange(coef.shape[1], device=coef.device) < num_cells[:, None, None]
        probs = torch.where(in_grid, probs, 0.0)
    return torch.logit(probs.sum(dim=2).clamp(0, 1), eps=_LOGIT_EPS).view(num, height, width)
