"""Which prototype pixels an STMask mask keeps around its box (``MODEL.STMASK.MASK_CROP``):
the box widened by ``PADDING`` prototype pixels a side, its pixels taken by the mask windows'
cell rule ``RULE`` ("centre": pixels whose centre is in it; "index": pixels whose index is, the
authors' ``crop``)."""

from __future__ import annotations

import torch

from vis_d2.modeling.mask_windows import CELL_RULES

__all__ = ["MASK_CROP_RULES", "crop_boxes"]

MASK_CROP_RULES = CELL_RULES


def crop_boxes(boxes: torch.Tensor, stride: float, padding: float = 0) -> torch.Tensor:
    """Boxes (N, 4) XYXY px → (N, 4) in prototype pixels (px / ``stride``), widened by
    ``padding`` prototype pixels a side."""
    return boxes / stride + boxes.new_tensor([-padding, -padding, padding, padding])
