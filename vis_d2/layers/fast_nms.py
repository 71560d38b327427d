"""YOLACT's Fast NMS (Bolya et al. 2019, Sec. 3.4), class-wise."""

from __future__ import annotations

import torch

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
    standard NMS, suppressed boxes still suppress others. All groups are done at once, as a
    batch of one IoU matrix per group (G × top_k × top_k, YOLACT's layout: memory grows with
    the groups, not with the square of all considered boxes).

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
    group = torch.repeat_interleave(torch.arange(len(counts), device=boxes.device), counts)
    considered = rank < top_k
    index, rank, group = by_group[considered], rank[considered], group[considered]

    # each group's considered boxes in descending score, padded to (G, K)
    size = (len(counts), min(top_k, int(counts.max())))
    padded = boxes.new_zeros((*size, 4), dtype=torch.float32)
    padded[group, rank] = boxes[index].float()
    valid = torch.zeros(size, dtype=torch.bool, device=boxes.device)
    valid[group, rank] = True
    iou = _batched_iou(padded)
    # iou[g, i, j] for i ranked above j; nan (0 / 0 from empty boxes) suppresses not
    higher = torch.ones(size[1], size[1], dtype=torch.bool, device=boxes.device).triu_(1)
    overlap = torch.where(higher, iou, torch.zeros_like(iou)).nan_to_num_(nan=0.0)
    keep = valid & (overlap.amax(dim=1) <= iou_threshold)
    kept = index[keep[group, rank]].sort().values
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def _batched_iou(boxes: torch.Tensor) -> torch.Tensor:
    """(G, K, 4) XYXY → (G, K, K) pairwise IoU within each group, computed as torchvision's
    ``box_iou`` computes it (inter / (area_i + area_j − inter))."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    lt = torch.max(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.min(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, :, None] + area[:, None, :] - inter)
