"""SipMask-VIS's track-branch training signals: reference-box jitter and the track (embedding
matching) loss."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["jitter_boxes", "track_loss"]


def jitter_boxes(boxes: torch.Tensor, amplitude: float) -> torch.Tensor:
    """(N, 4) XYXY boxes with centre shifted and width/height scaled by independent uniform
    amounts: centre by up to ±amplitude·(w, h), sizes by a factor in [1 - a, 1 + a]."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = boxes[:, 2:] - boxes[:, :2]
    noise = (torch.rand(len(boxes), 4, device=boxes.device) * 2 - 1) * amplitude
    centres = centres + noise[:, :2] * sizes
    sizes = sizes * (1 + noise[:, 2:])
    return torch.cat((centres - sizes / 2, centres + sizes / 2), dim=1)


def track_loss(
    embeddings: torch.Tensor,
    ref_embeddings: torch.Tensor,
    targets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's matching loss: ``embeddings`` (N, D) of its positives, ``ref_embeddings``
    (M, D) of the reference frame's instances, ``targets`` (N,) int64: 0 when the positive's
    instance is not in the reference frame, k when it is the k-th (1-based) reference
    instance. Scores x_i·r_j with a zero "new" column first → (cross-entropy mean, accuracy)."""
    scores = embeddings @ ref_embeddings.T
    scores = torch.cat((scores.new_zeros(len(scores), 1), scores), dim=1)
    loss = F.cross_entropy(scores, targets)
    accuracy = (scores.argmax(dim=1) == targets).float().mean()
    return loss, accuracy.detach()
