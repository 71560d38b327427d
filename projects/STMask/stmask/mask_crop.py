"""Which prototype pixels an STMask mask keeps around its box (``MODEL.STMASK.MASK_CROP``)."""

from __future__ import annotations

import torch

__all__ = ["MASK_CROP_RULES", "crop_boxes"]

# "centre": the pixels whose centre is in the box; "index": those whose index is
MASK_CROP_RULES = ("centre", "index")


def crop_boxes(
    boxes: torch.Tensor, stride: float, rule: str = "centre", padding: float = 0
) -> torch.Tensor:
    """Boxes (N, 4) XYXY px → the boxes (N, 4) in prototype pixels (px / ``stride``) whose
    pixel-centre test (x1 ≤ u + 0.5 < x2, as the mask windows take pixels) keeps the pixels
    of ``rule``: "centre", those whose centre is in the box widened by ``padding`` prototype
    pixels a side; "index", those whose index is (x1 − padding ≤ u < x2 + padding)."""
    if rule not in MASK_CROP_RULES:
        raise ValueError(f"MODEL.STMASK.MASK_CROP.RULE {rule!r} is not one of {MASK_CROP_RULES}")
    widen = boxes.new_tensor([-padding, -padding, padding, padding])
    shift = 0.5 if rule == "index" else 0.0
    return boxes / stride + widen + shift
