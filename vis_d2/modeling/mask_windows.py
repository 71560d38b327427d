"""Box-window mask assembly shared by the methods whose masks are linear combinations of
basis maps with per-sub-region coefficients (SG-Net's granularity blender, Sec. 3.2;
SipMask's spatial coefficients with CropSplit, a fixed 2 × 2 grid).

An instance has a box, a grid of r2 rows × r1 columns of sub-regions over it and one
coefficient vector per sub-region. Its mask is computed only on its box window of the basis
map: each pixel inside the box takes the sigmoid of <coefficients of its sub-region, basis
vector>, pixels outside are 0. Everything here works on the basis map (stride 2 for both
methods), where pixel (u, v) (column, row) has its centre at (u + 0.5, v + 0.5); the grid of
each instance is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from detectron2.structures import Instances
from torch.nn import functional as F

__all__ = [
    "BLEND_MODES",
    "MaskWindows",
    "blend",
    "blend_full",
    "frame_masks",
    "gt_masks_on_basis",
    "gt_windows",
    "mask_loss",
    "output_masks",
    "paste_windows",
    "resize_matrix",
    "subregion_index",
]

BLEND_MODES = ("subregion", "sum_sigmoid")
_LOGIT_EPS = 1e-6


def subregion_index(
    boxes: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor
) -> torch.Tensor:
    """Sub-region cell of pixels: ``boxes`` (N, 4) x1, y1, x2, y2 and pixel rows ``ys``
    (N, Hw, 1) / columns ``xs`` (N, 1, Ww) (int, broadcastable) in base-map pixels →
    (N, Hw, Ww) int64 ``row·r1 + col`` for pixels whose centre lies in the box
    (x1 ≤ u + 0.5 < x2, y1 ≤ v + 0.5 < y2), -1 elsewhere;
    col = clamp(floor((u + 0.5 - x1)·r1 / (x2 - x1)), 0, r1 - 1), row likewise."""
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    r1, r2 = r1[:, None, None], r2[:, None, None]
    cu = xs.to(boxes.dtype) + 0.5
    cv = ys.to(boxes.dtype) + 0.5
    inside = (x1 <= cu) & (cu < x2) & (y1 <= cv) & (cv < y2)
    col = torch.floor((cu - x1) * r1 / (x2 - x1).clamp(min=1e-6)).long()
    row = torch.floor((cv - y1) * r2 / (y2 - y1).clamp(min=1e-6)).long()
    col = torch.minimum(col.clamp(min=0), r1 - 1)
    row = torch.minimum(row.clamp(min=0), r2 - 1)
    return torch.where(inside, row * r1 + col, -1)


@dataclass
class MaskWindows:
    """Masks of N instances on windows of the base map, all padded to one (Hw, Ww).

    logits: (N, Hw, Ww) mask logits (arbitrary where not ``valid``); valid: (N, Hw, Ww) bool,
    the pixel's centre is in the instance's box and the pixel is on the map; origin: (N, 2)
    int64 (y0, x0) base-map pixel of each window's top-left corner.
    """

    logits: torch.Tensor
    valid: torch.Tensor
    origin: torch.Tensor

    def probs(self) -> torch.Tensor:
        """(N, Hw, Ww) sigmoid of the logits inside the box, exactly 0 elsewhere."""
        return torch.where(self.valid, self.logits.sigmoid(), 0.0)

    def pixel_coords(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Base-map rows (N, Hw, 1) and columns (N, 1, Ww) of the window pixels."""
        _, height, width = self.logits.shape
        device = self.origin.device
        ys = self.origin[:, 0, None] + torch.arange(height, device=device)
        xs = self.origin[:, 1, None] + torch.arange(width, device=device)
        return ys[:, :, None], xs[:, None, :]


def _cell_logits(
    feats: torch.Tensor, coef: torch.Tensor, cells: torch.Tensor, num_cells: torch.Tensor, mode: str
) -> torch.Tensor:
    """Per-pixel features (n, P, K), coefficients (n, R, K), cell index (n, P) (-1 outside the
    box) and r2·r1 (n,) → (n, P) logits of the chosen blender."""
    scores = torch.bmm(feats, coef.transpose(1, 2))  # (n, P, R)
    if mode == "subregion":
        # every cell's logit by one batched product, then each pixel's own: n·P·R·K MACs, but
        # 6x faster on the CPU than gathering each pixel's cell vector (n·P·K copies, a
        # product and a sum) for (64, 2500, 36) pixels and 36 cells
        return scores.gather(2, cells.clamp(min=0)[:, :, None]).squeeze(2)
    in_grid = torch.arange(scores.shape[2], device=scores.device) < num_cells[:, None, None]
    prob = torch.where(in_grid, scores.sigmoid(), 0.0).sum(dim=2).clamp(0, 1)
    return torch.logit(prob, eps=_LOGIT_EPS)


def _check_mode(mode: str) -> None:
    if mode not in BLEND_MODES:
        raise ValueError(f"blender mode '{mode}' is not one of {BLEND_MODES}")


def blend(
    bases: torch.Tensor,
    im_inds: torch.Tensor,
    boxes: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    mode: str = "subregion",
    max_elements: int = 2**25,
    chunk_size: int = 64,
) -> MaskWindows:
    """Masks of N instances on their box windows.

    bases: (B, K, h, w) basis maps; im_inds: (N,) image of each instance; boxes: (N, 4)
    x1, y1, x2, y2 in basis-map pixels (input box / stride); coef: (N, R, K) sub-region
    coefficients, row-major r2 × r1 in rows [0, r2·r1) (R ≥ max r2·r1); r1, r2: (N,) grid
    columns and rows.

    ``subregion``: logit(u, v) = <coef[n, cell(u, v)], bases[im, :, v, u]>.
    ``sum_sigmoid``: probability clamp(Σ_j σ(<coef[n, j], F>), 0, 1) over the r2·r1 cells,
    stored as its logit (probabilities clamped to [1e-6, 1 - 1e-6]).
    Instances are processed by increasing window size in chunks of at most ``chunk_size``,
    each padded only to its own largest window and kept to n·max(K, R)·Hw·Ww ≤ ``max_elements``
    (the gathered window features and per-cell scores), so a few large objects do not make
    every small one pay for their window.
    """
    _check_mode(mode)
    if torch.is_autocast_enabled(bases.device.type):
        # under bf16 autocast the logits would be bf16 products: assemble masks in fp32
        with torch.autocast(bases.device.type, enabled=False):
            return blend(bases.float(), im_inds, boxes.float(), coef.float(), r1, r2, mode,
                         max_elements, chunk_size)  # fmt: skip
    num_images, channels, height, width = bases.shape
    device = bases.device
    x0 = boxes[:, 0].floor().clamp(0, width).long()
    y0 = boxes[:, 1].floor().clamp(0, height).long()
    x_end = boxes[:, 2].ceil().clamp(0, width).long()
    y_end = boxes[:, 3].ceil().clamp(0, height).long()
    win_h = int((y_end - y0).clamp(min=1).max()) if len(boxes) else 1
    win_w = int((x_end - x0).clamp(min=1).max()) if len(boxes) else 1
    origin = torch.stack((y0, x0), dim=1)
    ys = y0[:, None, None] + torch.arange(win_h, device=device)[:, None]
    xs = x0[:, None, None] + torch.arange(win_w, device=device)
    cells = subregion_index(boxes, r1, r2, ys, xs)
    valid = (cells >= 0) & (ys < height) & (xs < width)
    ys, xs = ys.clamp(max=height - 1), xs.clamp(max=width - 1)
    table = bases.permute(0, 2, 3, 1).reshape(num_images * height * width, channels)
    heights, widths = (y_end - y0).clamp(min=1), (x_end - x0).clamp(min=1)
    order = torch.argsort(heights * widths)
    per_element = max(channels, coef.shape[1])
    chunks, pixels, start = [], [], 0
    while start < len(boxes):
        idx = order[start : start + chunk_size]
        h_c, w_c = int(heights[idx].max()), int(widths[idx].max())
        idx = idx[: max(1, max_elements // (per_element * h_c * w_c))]
        ys_c = y0[idx, None, None] + torch.arange(h_c, device=device)[:, None]
        xs_c = x0[idx, None, None] + torch.arange(w_c, device=device)
        rows = (im_inds[idx, None, None] * height + ys_c.clamp(max=height - 1)) * width
        chunks.append((idx, ys_c, xs_c))
        pixels.append((rows + xs_c.clamp(max=width - 1)).reshape(-1))
        start += len(idx)
    if torch.is_grad_enabled() and bases.requires_grad and chunks:
        # one gather for all chunks: each separate gather's backward would allocate and add a
        # gradient of the whole base table (the chunks' features are kept for backward anyway)
        gathered = table.index_select(0, torch.cat(pixels)).split([len(p) for p in pixels])
    else:  # inference: gather chunk by chunk, so only one chunk's features exist at a time
        gathered = (table.index_select(0, p) for p in pixels)
    logits = []
    for (idx, ys_c, xs_c), feats in zip(chunks, gathered, strict=True):
        h_c, w_c = ys_c.shape[1], xs_c.shape[2]
        cells_c = subregion_index(boxes[idx], r1[idx], r2[idx], ys_c, xs_c)
        feats = feats.view(len(idx), h_c * w_c, channels)
        chunk = _cell_logits(feats, coef[idx], cells_c.flatten(1), (r1 * r2)[idx], mode)
        logits.append(F.pad(chunk.view(len(idx), h_c, w_c), (0, win_w - w_c, 0, win_h - h_c)))
    if logits:
        out = torch.cat(logits)[torch.argsort(order)]
    else:
        out = (coef.sum() * 0 + bases.sum() * 0).expand(0, win_h, win_w)
    return MaskWindows(logits=out, valid=valid, origin=origin)


def blend_full(
    bases: torch.Tensor,
    im_inds: torch.Tensor,
    boxes: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    mode: str = "subregion",
) -> torch.Tensor:
    """The same masks computed on the whole base map (memory N·R·h·w): (N, h, w)
    probabilities, 0 outside the boxes. Arguments as in :func:`blend`."""
    _check_mode(mode)
    _, channels, height, width = bases.shape
    ys = torch.arange(height, device=bases.device)[None, :, None]
    xs = torch.arange(width, device=bases.device)[None, None, :]
    cells = subregion_index(boxes, r1, r2, ys, xs)
    feats = bases[im_inds].flatten(2).transpose(1, 2)  # (N, h·w, K)
    logits = _cell_logits(feats, coef, cells.flatten(1), r1 * r2, mode)
    return torch.where(cells >= 0, logits.view(-1, height, width).sigmoid(), 0.0)


def gt_masks_on_basis(gts: list[Instances], height: int, width: int, stride: int) -> torch.Tensor:
    """The GT masks of every image (``gt_masks`` BitMasks at the image's input size), padded
    to the (height, width) batch input and sampled at the centres of the basis-map pixels of
    stride ``stride``: (M, height / stride, width / stride) float, images in order."""
    masks = torch.cat(
        [
            F.pad(
                g.gt_masks.tensor.float(), (0, width - g.image_size[1], 0, height - g.image_size[0])
            )
            for g in gts
        ]
    )
    return masks[:, stride // 2 :: stride, stride // 2 :: stride]


def gt_windows(gt_masks: torch.Tensor, gt_inds: torch.Tensor, windows: MaskWindows) -> torch.Tensor:
    """GT masks (M, h, w) at base-map resolution and each instance's GT index (N,) →
    (N, Hw, Ww) float targets on the instances' windows (0 off the map)."""
    _, height, width = gt_masks.shape
    ys, xs = windows.pixel_coords()
    on_map = (ys < height) & (xs < width)
    values = gt_masks[gt_inds[:, None, None], ys.clamp(max=height - 1), xs.clamp(max=width - 1)]
    return torch.where(on_map, values.to(windows.logits.dtype), 0.0)


def mask_loss(
    windows: MaskWindows, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE-with-logits against ``targets`` (N, Hw, Ww) over the valid (in-box) pixels, averaged
    per instance, then over the instances that have a valid pixel (weighted by ``weights``
    (N,) when given: Σ w_i ℓ_i / n); a zero connected to the graph when there is none."""
    valid = windows.valid
    counts = valid.flatten(1).sum(dim=1)
    has_pixels = counts > 0
    if not bool(has_pixels.any()):
        return windows.logits.sum() * 0
    bce = F.binary_cross_entropy_with_logits(windows.logits, targets, reduction="none")
    per_instance = torch.where(valid, bce, 0.0).flatten(1).sum(dim=1)
    per_instance = per_instance[has_pixels] / counts[has_pixels]
    if weights is not None:
        per_instance = per_instance * weights[has_pixels]
    return per_instance.mean()


def paste_windows(windows: MaskWindows, height: int, width: int) -> torch.Tensor:
    """(N, height, width) base-map probabilities: each window's :meth:`MaskWindows.probs`
    placed at its origin, 0 outside the box."""
    probs = windows.probs()
    ys, xs = windows.pixel_coords()
    keep = windows.valid & (ys < height) & (xs < width)
    inst, i, j = keep.nonzero(as_tuple=True)
    out = probs.new_zeros((len(probs), height, width))
    return out.index_put((inst, ys[inst, i, 0], xs[inst, 0, j]), probs[inst, i, j])


def resize_matrix(
    size: int, stride: int, crop: int, out_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """(out_size, size) matrix of the resizes that bring one axis of the base map to the
    output: ×``stride`` linear upsampling, the first ``crop`` samples kept (the unpadded input),
    then a linear resize to ``out_size`` (both ``align_corners=False``, as ``F.interpolate``)."""
    eye = torch.eye(size, device=device)[None]
    up = F.interpolate(eye, scale_factor=stride, mode="linear", align_corners=False)[0, :, :crop]
    eye = torch.eye(crop, device=device)[None]
    down = F.interpolate(eye, size=out_size, mode="linear", align_corners=False)[0]
    return (up @ down).t()


def _output_span(
    matrix: torch.Tensor, first: torch.Tensor, last: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For a banded, monotone resize ``matrix`` (out, in) and source ranges [first, last] (N,):
    the first and last output index (N,) with a non-zero weight on the range (last < first
    when none has)."""
    touched = matrix != 0
    index = torch.arange(len(matrix), device=matrix.device)[:, None]
    lowest = torch.where(touched, index, len(matrix)).amin(dim=0)
    highest = torch.where(touched, index, -1).amax(dim=0)
    reach = int(touched.any(dim=0).nonzero().max())  # sources past it are cropped away
    return lowest[first.clamp(max=reach)], highest[last.clamp(max=reach)].where(first <= reach, -1)


def output_masks(
    windows: MaskWindows,
    basis_size: tuple[int, int],
    stride: int,
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    threshold: float,
) -> torch.Tensor:
    """Bool masks (N, H, W) at the ``output_size`` (H, W) of the windows on an (h, w)
    ``basis_size`` map of stride ``stride``, for an ``input_size`` network input: upsampled
    ×stride, cropped to the input, resized to the output and thresholded (:func:`frame_masks`)."""
    device = windows.logits.device
    rows = resize_matrix(basis_size[0], stride, input_size[0], output_size[0], device)
    cols = resize_matrix(basis_size[1], stride, input_size[1], output_size[1], device)
    return frame_masks(windows, rows, cols, threshold)


def frame_masks(
    windows: MaskWindows, rows: torch.Tensor, cols: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Bool masks (N, H, W) at output resolution: each window's :meth:`MaskWindows.probs`
    resized by the (H, h) ``rows`` and (W, w) ``cols`` matrices of :func:`resize_matrix`
    (h, w: the base map) and compared with ``threshold`` (> 0). Equal to pasting the windows
    on the base map, resizing whole maps and thresholding, but only the output pixels a window
    reaches are computed, so the cost follows the instances' sizes, not N·H·W."""
    if threshold <= 0:
        raise ValueError(f"the mask threshold must be positive, not {threshold}")
    probs = windows.probs()
    num, win_h, win_w = probs.shape
    out_h, base_h = rows.shape
    out_w, base_w = cols.shape
    device = probs.device
    masks = torch.zeros(num, out_h, out_w, dtype=torch.bool, device=device)
    if num == 0:
        return masks
    # off-map window pixels have probability 0, so clamping their source index adds nothing
    ys = (windows.origin[:, 0, None] + torch.arange(win_h, device=device)).clamp(max=base_h - 1)
    xs = (windows.origin[:, 1, None] + torch.arange(win_w, device=device)).clamp(max=base_w - 1)
    in_box_rows, in_box_cols = windows.valid.any(dim=2), windows.valid.any(dim=1)
    has_pixels = in_box_rows.any(dim=1)
    height = torch.where(in_box_rows, torch.arange(win_h, device=device), -1).amax(dim=1) + 1
    width = torch.where(in_box_cols, torch.arange(win_w, device=device), -1).amax(dim=1) + 1
    last_y = ys.gather(1, (height - 1).clamp(min=0)[:, None])[:, 0]
    last_x = xs.gather(1, (width - 1).clamp(min=0)[:, None])[:, 0]
    top, bottom = _output_span(rows, ys[:, 0], last_y)
    left, right = _output_span(cols, xs[:, 0], last_x)
    visible = has_pixels & (bottom >= top) & (right >= left)
    if not bool(visible.any()):
        return masks
    span_h = int((bottom - top + 1)[visible].max())
    span_w = int((right - left + 1)[visible].max())
    out_rows = (top[:, None] + torch.arange(span_h, device=device)).clamp(max=out_h - 1)
    out_cols = (left[:, None] + torch.arange(span_w, device=device)).clamp(max=out_w - 1)
    row_weights = rows[out_rows[:, :, None], ys[:, None, :]]  # (N, span_h, win_h)
    col_weights = cols[out_cols[:, :, None], xs[:, None, :]]  # (N, span_w, win_w)
    resized = row_weights @ probs @ col_weights.transpose(1, 2)
    inst = torch.arange(num, device=device)[:, None, None]
    # clamped duplicates at the border carry the same value, so write order does not matter
    masks[inst, out_rows[:, :, None], out_cols[:, None, :]] = resized >= threshold
    return masks
