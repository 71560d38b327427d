"""YOLACT's Fast NMS (Bolya et al. 2019, Sec. 3.4), class-wise."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

__all__ = ["fast_nms"]


def fast_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    iou_threshold: float,
    top_k: int = 200,
) -> torch.Tensor:
    """Fast NMS within each group (class) of boxes; boxes of different groups never suppress
    each other.

    Within each group the boxes are sorted by descending score (ties: lower input index
    first) and only the first ``top_k`` are considered (the rest are dropped and suppress
    nothing). A considered box is suppressed if its IoU with any higher-ranked box of its
    group is > ``iou_threshold``, whether or not that box is itself suppressed: unlike
    standard NMS, suppressed boxes still suppress others. All groups are done at once on
    one IoU matrix of the considered boxes, masked to same-group pairs above the diagonal.

    ``boxes`` (N, 4) XYXY, ``scores`` (N,), ``groups`` (N,) int. Returns the indices into the
    input of the kept boxes, int64 sorted by descending score (ties: lower index first).
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {tuple(boxes.shape)}")
    n = boxes.shape[0]
    if scores.shape != (n,) or groups.shape != (n,):
        raise ValueError(
            f"scores and groups must be ({n},), got {tuple(scores.shape)} and {tuple(groups.shape)}"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)

    # rank of each box within its group: sort by score, then (stably) by group
    by_score = torch.sort(scores, descending=True, stable=True).indices
    by_group = by_score[torch.sort(groups[by_score], stable=True).indices]
    _, counts = torch.unique_consecutive(groups[by_group], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=boxes.device) - torch.repeat_interleave(starts, counts)
    considered = torch.sort(by_group[rank < top_k]).values

    # the considered boxes in descending score, ties by index: ranks in a group keep their order
    order = considered[torch.sort(scores[considered], descending=True, stable=True).indices]
    iou = box_iou(boxes[order].float(), boxes[order].float())
    g = groups[order]
    higher = torch.ones_like(iou, dtype=torch.bool).triu_(diagonal=1) & (g[:, None] == g[None])
    # iou[i, j] for i ranked above j in j's group; nan (0 / 0 from empty boxes) suppresses not
    overlap = torch.where(higher, iou, torch.zeros_like(iou)).nan_to_num_(nan=0.0)
    keep = overlap.amax(dim=0) <= iou_threshold
    return order[keep]
