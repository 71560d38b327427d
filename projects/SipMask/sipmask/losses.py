"""SipMask's mask training signals besides the BCE: the mask alignment weights and, for
SipMask++'s mask re-scoring, the mask IoU targets and their loss."""

from __future__ import annotations

import torch

__all__ = ["alignment_weights", "mask_iou_loss", "mask_iou_targets"]


def alignment_weights(
    scores: torch.Tensor, ious: torch.Tensor, im_inds: torch.Tensor, eps: float = 1e-4
) -> torch.Tensor:
    """Mask alignment weights of N positives: w = score × IoU (score: the class probability of
    the GT class, IoU: predicted vs GT box), detached and normalised per image to mean 1,
    w ← w / (Σ_image w + eps) · n_image. ``im_inds`` (N,) is each positive's image."""
    w = (scores * ious).detach()
    num_images = int(im_inds.max()) + 1 if len(im_inds) else 0
    sums = w.new_zeros(num_images).index_add_(0, im_inds, w)
    counts = w.new_zeros(num_images).index_add_(0, im_inds, torch.ones_like(w))
    return w / (sums[im_inds] + eps) * counts[im_inds]


def mask_iou_targets(
    probs: torch.Tensor,
    gt_masks: torch.Tensor,
    threshold: float,
    *,
    min_gt_area: float = 100.0,
    min_iou: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU targets of N predicted masks (N, H, W) probabilities (0 outside their boxes) against
    their GT masks (N, H, W) in {0, 1}, on the same map: the IoU of ``probs > threshold`` with
    the whole GT mask, ε = 0.1 in the union, and (N,) weights 1 where the target is in
    (``min_iou``, 1] and the GT has at least ``min_gt_area`` pixels, else 0."""
    pred = (probs > threshold).to(gt_masks.dtype)
    overlap = (pred * gt_masks).flatten(1).sum(dim=1)
    gt_area = gt_masks.flatten(1).sum(dim=1)
    ious = overlap / (pred.flatten(1).sum(dim=1) + gt_area - overlap + 0.1)
    weights = ((ious > min_iou) & (ious <= 1.0) & (gt_area >= min_gt_area)).to(ious.dtype)
    return ious, weights


def mask_iou_loss(
    predicted: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Σ w (predicted − target)² / (Σ w + 0.1) over the (N,) re-scoring predictions."""
    return (weights * (predicted - targets) ** 2).sum() / (weights.sum() + 0.1)
