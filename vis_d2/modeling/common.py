"""Pieces every vis_d2 method's meta-architecture uses: sampling positives per image and
reading dense maps at boxes."""

from __future__ import annotations

import torch

__all__ = ["cap_per_image", "read_at_centres"]


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
