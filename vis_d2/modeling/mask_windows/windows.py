"""Masks on box windows of the basis map: :func:`blend` (training and inference), the GT masks
on the same windows, the mask loss and :func:`paste_windows` back onto the map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from detectron2.structures import Instances
from torch.nn import functional as F

from .grids import band, check_cell_rule, check_mode, instance_values, pixel_logits, row_cells

__all__ = [
    "MaskWindows",
    "blend",
    "gt_masks_on_basis",
    "gt_windows",
    "mask_loss",
    "paste_windows",
]


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


def blend(
    bases: torch.Tensor,
    im_inds: torch.Tensor | int,
    boxes: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor | int,
    r2: torch.Tensor | int,
    mode: str = "subregion",
    max_elements: int = 2**25,
    chunk_size: int = 16,
    cell_rule: str = "centre",
) -> MaskWindows:
    """Masks of N instances on their box windows.

    bases: (B, K, h, w) basis maps; im_inds: (N,) image of each instance (an int: the same
    for all); boxes: (N, 4) x1, y1, x2, y2 in basis-map pixels (input box / stride); coef:
    (N, R, K) cell coefficients, row-major r2 × r1 in rows [0, r2·r1) (R ≥ max r2·r1); r1, r2:
    (N,) grid columns and rows (ints: the same grid for all).

    Each pixel whose centre is in the box takes the logit of :func:`.grids.pixel_logits`
    (``mode`` ``subregion`` or ``sum_sigmoid``); ``cell_rule`` "index" takes the pixels whose
    index is in the box and their cells as :mod:`.grids` says. Each window lies on the map
    (one is moved up or left where it would leave it; ``origin`` says where it is). Without
    gradients, each instance is computed on its own window, a view of the map
    (:func:`_blend_each`); with them, by chunks of similar window sizes
    (:func:`_blend_chunks`, at most ``chunk_size`` instances and ``max_elements`` window
    values and scores a chunk).
    """
    check_mode(mode)
    check_cell_rule(cell_rule)
    if torch.is_autocast_enabled(bases.device.type):
        # under bf16 autocast the logits would be bf16 products: assemble masks in fp32
        with torch.autocast(bases.device.type, enabled=False):
            return blend(bases.float(), im_inds, boxes.float(), coef.float(), r1, r2, mode,
                         max_elements, chunk_size, cell_rule)  # fmt: skip
    height, width = bases.shape[-2:]
    device = bases.device
    im_inds, r1, r2 = (instance_values(v, len(boxes), device) for v in (im_inds, r1, r2))
    x0 = boxes[:, 0].floor().clamp(0, width).long()
    y0 = boxes[:, 1].floor().clamp(0, height).long()
    x_end = boxes[:, 2].ceil().clamp(0, width).long()
    y_end = boxes[:, 3].ceil().clamp(0, height).long()
    heights, widths = (y_end - y0).clamp(min=1), (x_end - x0).clamp(min=1)
    # windows on the map: one moved up or left where it would leave it (the box stays inside)
    origin = torch.stack((y0.clamp(max=height - heights), x0.clamp(max=width - widths)), dim=1)
    training = torch.is_grad_enabled() and (bases.requires_grad or coef.requires_grad)
    if training:  # may move windows further up or left, onto the map at their chunk's size
        logits = _blend_chunks(bases, im_inds, boxes, coef, r1, r2, mode, origin, heights,
                               widths, max_elements, chunk_size, cell_rule)  # fmt: skip
    win_h = int(heights.max()) if len(boxes) else 1
    win_w = int(widths.max()) if len(boxes) else 1
    ys = origin[:, 0, None] + torch.arange(win_h, device=device)
    xs = origin[:, 1, None] + torch.arange(win_w, device=device)
    # each window row's and column's band of the grid, -1 outside the box or the map
    rows = band(boxes[:, 1, None], boxes[:, 3, None], r2[:, None], ys, cell_rule)
    cols = band(boxes[:, 0, None], boxes[:, 2, None], r1[:, None], xs, cell_rule)
    rows, cols = rows.where(ys < height, -1), cols.where(xs < width, -1)
    if not training:
        logits = _blend_each(bases, im_inds, coef, r1, r2, mode, origin, heights, widths, rows,
                             cols)  # fmt: skip
    valid = (rows >= 0)[:, :, None] & (cols >= 0)[:, None, :]
    return MaskWindows(logits=logits, valid=valid, origin=origin)


def _blend_each(
    bases: torch.Tensor,
    im_inds: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    mode: str,
    origin: torch.Tensor,
    heights: torch.Tensor,
    widths: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    """Inference: each instance's logits on its own window (``origin`` (N, 2), ``heights``,
    ``widths`` (N,)), a view of the channels-last map, no window features gathered;
    ``rows`` (N, Hw) and ``cols`` (N, Ww) the window rows' and columns' bands. (N, Hw, Ww)
    logits, arbitrary past a window."""
    num, win_h, win_w = len(coef), rows.shape[1], cols.shape[1]
    out = bases.new_empty((num, win_h, win_w))
    if num == 0:
        return out
    maps = bases.permute(0, 2, 3, 1)  # (B, h, w, K)
    if int((heights * widths).sum()) * 4 > maps[0, :, :, 0].numel():
        # windows covering more than a quarter of a map: one channels-last copy of the maps
        # makes their rows contiguous; smaller ones are copied by the products themselves
        maps = maps.contiguous()
    cells = row_cells(rows, r1, int(r1.max()), coef.shape[1])
    cols, num_cells = cols.clamp(min=0), r1 * r2  # a pixel outside the box takes any cell
    # a loop, not one batched product: windows differ in size, and padding them to one size
    # copies the features of several times their pixels
    spans = torch.stack((im_inds, origin[:, 0], origin[:, 1], heights, widths, r1, num_cells),
                        dim=1)  # fmt: skip
    for i, (image, top, left, h, w, r, c) in enumerate(spans.tolist()):
        window = maps[image, top : top + h, left : left + w]
        logits = pixel_logits(window[None], coef[i : i + 1, :c], cells[i : i + 1, :h, :r],
                              cols[i : i + 1, :w], mode)  # fmt: skip
        out[i, :h, :w] = logits[0]
    return out


def _blend_chunks(
    bases: torch.Tensor,
    im_inds: torch.Tensor,
    boxes: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    mode: str,
    origin: torch.Tensor,
    heights: torch.Tensor,
    widths: torch.Tensor,
    max_elements: int,
    chunk_size: int,
    cell_rule: str,
) -> torch.Tensor:
    """Training: instances by increasing window size in chunks of at most ``chunk_size``,
    each on windows of its largest size (moved onto the map), kept to
    n·(K + cells)·Hw·Ww ≤ ``max_elements``; the window features of all chunks in one
    ``index_select`` (its backward accumulates into one gradient of the map). ``heights``,
    ``widths`` (N,): the windows' sizes. (N, max h, max w) logits, 0 past a window; the
    windows' ``origin`` (N, 2) is updated to the chunks'."""
    num_images, channels, height, width = bases.shape
    device = bases.device
    num = len(boxes)
    win_h = int(heights.max()) if num else 1
    win_w = int(widths.max()) if num else 1
    order = torch.argsort(heights * widths)
    cells_per_pixel = coef.shape[1] if mode == "sum_sigmoid" else int(r1.max()) if num else 1
    per_element = channels + cells_per_pixel
    chunks, start = [], 0
    while start < num:
        idx = order[start : start + chunk_size]
        h_c, w_c = int(heights[idx].max()), int(widths[idx].max())
        idx = idx[: max(1, max_elements // (per_element * h_c * w_c))]
        # the chunk's windows of one size on the map
        origin[idx, 0] = origin[idx, 0].clamp(max=height - h_c)
        origin[idx, 1] = origin[idx, 1].clamp(max=width - w_c)
        chunks.append((idx, h_c, w_c))
        start += len(idx)
    out = bases.new_zeros((num, win_h, win_w))
    if not chunks:  # connected to the inputs, so that a loss on no instance back-propagates
        return out + coef.sum() * 0 + bases.sum() * 0
    table = bases.permute(0, 2, 3, 1).reshape(num_images * height * width, channels)
    pixels = []
    for idx, h_c, w_c in chunks:
        ys = origin[idx, 0, None, None] + torch.arange(h_c, device=device)[:, None]
        xs = origin[idx, 1, None, None] + torch.arange(w_c, device=device)
        pixels.append(((im_inds[idx, None, None] * height + ys) * width + xs).reshape(-1))
    gathered = table.index_select(0, torch.cat(pixels)).split([len(p) for p in pixels])
    for (idx, h_c, w_c), feats in zip(chunks, gathered, strict=True):
        ys = origin[idx, 0, None] + torch.arange(h_c, device=device)
        xs = origin[idx, 1, None] + torch.arange(w_c, device=device)
        b, r1_c = boxes[idx], r1[idx]
        rows = band(b[:, 1, None], b[:, 3, None], r2[idx, None], ys, cell_rule)
        cols = band(b[:, 0, None], b[:, 2, None], r1_c[:, None], xs, cell_rule).clamp(min=0)
        cells = row_cells(rows, r1_c, int(r1_c.max()), coef.shape[1])
        window = feats.view(len(idx), h_c, w_c, channels)
        out[idx, :h_c, :w_c] = pixel_logits(window, coef[idx], cells, cols, mode, r1_c * r2[idx])
    return out


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
