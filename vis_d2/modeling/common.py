"""Pieces every vis_d2 method's meta-architecture uses: sampling positives per image,
reading dense maps at boxes and box IoUs."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

__all__ = ["box_iou_with_offset", "cap_per_image", "read_at_centres"]


def box_iou_with_offset(a: torch.Tensor, b: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """(N, M) IoUs of XYXY boxes ``a`` (N, 4) and ``b`` (M, 4) whose widths and heights (and
    those of the intersections) are x2 − x1 + ``offset``: 0 is torchvision's ``box_iou``, 1
    mmdetection v1's ``bbox_overlaps`` (boxes whose x2 is the last pixel index they cover).
    A pair without overlap has IoU 0."""
    if offset == 0:
        return box_iou(a, b)
    area_a = (a[:, 2] - a[:, 0] + offset) * (a[:, 3] - a[:, 1] + offset)
    area_b = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt + offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None] - inter)


def cap_per_image(im_inds: torch.Tensor, cap: int) -> torch.Tensor:
    """A random subset of the indices 0..N-1 with at most ``cap`` from each image of
    ``im_inds`` (N,), sorted; ``cap`` 0 is no cap (every index).

    Raises:
        ValueError: ``cap`` is negative.
    """
    if cap < 0:
        raise ValueError(f"the cap per image must be >= 0 (0: no cap), not {cap}")
    if cap == 0:
        return torch.arange(len(im_inds), device=im_inds.device)
    order = torch.randperm(len(im_inds), device=im_inds.device)
    order = order[torch.argsort(im_inds[order], stable=True)]
    grouped = im_inds[order]
    starts = torch.searchsorted(grouped, grouped, side="left")
    rank = torch.arange(len(grouped), device=grouped.device) - starts
    return order[rank < cap].sort().values


def read_at_centres(maps: torch.Tensor, im_inds: torch.Tensor, boxes: torch.Tensor, stride: int):
    """The (N, C) vectors of ``maps`` (B, C, H, W) (stride ``stride`` px) at the cell holding
    each box centre: ``boxes`` (N, 4) XYXY input px of images ``im_inds`` (N,); the cell is
    floor(centre / stride), clamped to the map."""
    _, _, height, width = maps.shape
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    x = torch.div(centres[:, 0], stride, rounding_mode="floor").long().clamp(0, width - 1)
    y = torch.div(centres[:, 1], stride, rounding_mode="floor").long().clamp(0, height - 1)
    return maps[im_inds, :, y, x]
