"""Inference masks at the output resolution: each instance blended on its box and resized by
the bands of the resize matrices that reach it, then thresholded."""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from .grids import (
    band,
    check_cell_rule,
    check_mode,
    first_inside,
    instance_values,
    pixel_logits,
    row_cells,
)

__all__ = ["MASK_RESIZES", "assemble_masks"]

# "crop_then_resize": ×stride, cropped to the input, resized to the output;
# "resize_then_crop": one resize by stride · output / input, then cropped (or zero-padded) to
# the output, as mmdetection-based codes paste their masks
MASK_RESIZES = ("crop_then_resize", "resize_then_crop")


@functools.lru_cache(maxsize=16)
def _resize_matrix(
    size: int, stride: int, crop: int, out_size: int, device: str, resize: str
) -> torch.Tensor:
    """(out_size, size) matrix of the resizes that bring one axis of the base map to the
    output (``align_corners=False``, as ``F.interpolate``). ``crop_then_resize``: ×``stride``
    linear upsampling, the first ``crop`` samples kept (the unpadded input), then a linear
    resize to ``out_size``; ``resize_then_crop``: a linear resize by the factor
    stride / (crop / out_size) (``F.interpolate``'s ``scale_factor``: floor(size · factor)
    samples), its first ``out_size`` kept, zero past its end. Cached per setting (a video's
    frames share it): read-only."""
    eye = torch.eye(size, device=device)[None]
    if resize == "resize_then_crop":
        factor = stride / (crop / out_size)
        scaled = F.interpolate(eye, scale_factor=factor, mode="linear", align_corners=False)[0]
        return F.pad(scaled[:, :out_size], (0, max(0, out_size - scaled.shape[1]))).t()
    up = F.interpolate(eye, scale_factor=stride, mode="linear", align_corners=False)[0, :, :crop]
    eye = torch.eye(crop, device=device)[None]
    down = F.interpolate(eye, size=out_size, mode="linear", align_corners=False)[0]
    return (up @ down).t()


@functools.lru_cache(maxsize=16)
def _reach(
    size: int, stride: int, crop: int, out_size: int, device: str, resize: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For each source index of :func:`_resize_matrix`: the first and last output index with
    a non-zero weight on it (in,); and the last source with any (sources past it are cropped
    away)."""
    touched = _resize_matrix(size, stride, crop, out_size, device, resize) != 0
    index = torch.arange(out_size, device=device)[:, None]
    lowest = torch.where(touched, index, out_size).amin(dim=0)
    highest = torch.where(touched, index, -1).amax(dim=0)
    return lowest, highest, int(touched.any(dim=0).nonzero().max())


def _output_span(
    key: tuple[int, int, int, int, str, str], first: torch.Tensor, last: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For the banded, monotone resize of :func:`_resize_matrix` with arguments ``key`` and
    source ranges [first, last] (N,): the first and last output index (N,) with a non-zero
    weight on the range (last < first when none has)."""
    lowest, highest, reach = _reach(*key)
    return lowest[first.clamp(max=reach)], highest[last.clamp(max=reach)].where(first <= reach, -1)


def assemble_masks(
    bases: torch.Tensor,
    im_inds: torch.Tensor | int,
    boxes: torch.Tensor,
    coef: torch.Tensor,
    r1: torch.Tensor | int,
    r2: torch.Tensor | int,
    *,
    stride: int,
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    threshold: float,
    mode: str = "subregion",
    cell_rule: str = "centre",
    resize: str = "crop_then_resize",
) -> torch.Tensor:
    """Inference: bool masks (N, H, W) at the ``output_size`` (H, W) of the instances that
    :func:`.windows.blend` describes (same arguments; ``bases`` of stride ``stride`` px, for an
    ``input_size`` network input), each blended on the base-map pixels whose centre is in its
    box, upsampled ×stride, cropped to the input, resized to the output and compared with
    ``threshold`` (> 0). Equal to :func:`.windows.blend`, :func:`.windows.paste_windows`,
    whole-map resizes and the threshold, but each instance is computed on its box alone and
    resized by the bands of the resize matrices (:func:`_resize_matrix`) that reach it, so the
    cost follows the instances' sizes, not N·H·W, and no padded window is built.

    ``cell_rule`` (:data:`.grids.CELL_RULES`): which pixels are in the box and their cells;
    ``resize`` (:data:`MASK_RESIZES`): the order of the resize and the crop."""
    check_mode(mode)
    check_cell_rule(cell_rule)
    if resize not in MASK_RESIZES:
        raise ValueError(f"mask resize '{resize}' is not one of {MASK_RESIZES}")
    if threshold <= 0:
        raise ValueError(f"the mask threshold must be positive, not {threshold}")
    if torch.is_autocast_enabled(bases.device.type):
        with torch.autocast(bases.device.type, enabled=False):
            return assemble_masks(
                bases.float(), im_inds, boxes.float(), coef.float(), r1, r2, stride=stride,
                input_size=input_size, output_size=output_size, threshold=threshold, mode=mode,
                cell_rule=cell_rule, resize=resize,
            )  # fmt: skip
    num, device = len(boxes), bases.device
    height, width = bases.shape[-2:]
    masks = torch.zeros((num, *output_size), dtype=torch.bool, device=device)
    if num == 0:
        return masks
    im_inds, r1, r2 = (instance_values(v, num, device) for v in (im_inds, r1, r2))
    row_key = (int(height), int(stride), int(input_size[0]), int(output_size[0]), str(device),
               resize)  # fmt: skip
    col_key = (int(width), int(stride), int(input_size[1]), int(output_size[1]), str(device),
               resize)  # fmt: skip
    rows_m, cols_m = _resize_matrix(*row_key), _resize_matrix(*col_key)
    # the pixels in the box (centre rule: x1 ≤ u + 0.5 < x2), on the map
    x0, y0, x_end, y_end = (
        first_inside(boxes[:, i], cell_rule).clamp(0, size).long()
        for i, size in enumerate((width, height, width, height))
    )
    heights, widths = (y_end - y0).clamp(min=0), (x_end - x0).clamp(min=0)
    top, bottom = _output_span(row_key, y0.clamp(max=height - 1), (y_end - 1).clamp(min=0))
    left, right = _output_span(col_key, x0.clamp(max=width - 1), (x_end - 1).clamp(min=0))
    visible = (heights > 0) & (widths > 0) & (bottom >= top) & (right >= left)
    if not bool(visible.any()):
        return masks
    # each box row's band cells and column's band (every one is in the box)
    ys = y0[:, None] + torch.arange(int(heights.max()), device=device)
    xs = x0[:, None] + torch.arange(int(widths.max()), device=device)
    rows = band(boxes[:, 1, None], boxes[:, 3, None], r2[:, None], ys, cell_rule)
    cells = row_cells(rows, r1, int(r1.max()), coef.shape[1])
    cols = band(boxes[:, 0, None], boxes[:, 2, None], r1[:, None], xs, cell_rule).clamp(min=0)
    maps = bases.permute(0, 2, 3, 1)  # (B, h, w, K)
    if int((heights * widths).sum()) * 4 > height * width:
        # boxes covering more than a quarter of a map: one channels-last copy of the maps
        # (none when they are channels-last already, as the base modules return them) makes
        # their rows contiguous; smaller ones are copied by the products themselves
        maps = maps.contiguous()
    spans = torch.stack((im_inds, y0, x0, heights, widths, r1, r1 * r2, top, bottom + 1,
                         left, right + 1), dim=1)  # fmt: skip
    # a tensor: a Python float would be made one at each comparison
    limit = torch.tensor(threshold, dtype=rows_m.dtype, device=device)
    # a loop, not one batched product: boxes differ in size, and padding them to one size
    # copies the features of several times their pixels
    for i, (image, row, col, h, w, r, c, out_t, out_b, out_l, out_r) in zip(
        visible.nonzero()[:, 0].tolist(), spans[visible].tolist(), strict=True
    ):
        window = maps[image, row : row + h, col : col + w]
        logits = pixel_logits(window[None], coef[i : i + 1, :c], cells[i : i + 1, :h, :r],
                              cols[i : i + 1, :w], mode)  # fmt: skip
        rows_i, cols_i = rows_m[out_t:out_b, row : row + h], cols_m[out_l:out_r, col : col + w]
        resized = rows_i @ logits[0].sigmoid_() @ cols_i.t()
        torch.ge(resized, limit, out=masks[i, out_t:out_b, out_l:out_r])
    return masks
