"""FCOS losses: focal classification, centerness BCE and IoU-family box losses on ltrb distances."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torchvision.ops import sigmoid_focal_loss

from .targets import FCOSTargets, centerness_targets

__all__ = ["reduce_mean", "ltrb_iou_giou", "box_loss", "fcos_losses", "LOC_LOSS_TYPES"]

LOC_LOSS_TYPES = ("iou", "linear_iou", "giou", "log_giou")


def reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over all processes (the identity for one process)."""
    world = comm.get_world_size()
    if world == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world


def ltrb_iou_giou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of boxes given as (N, 4) ltrb distances from a shared point.

    The IoU is smoothed by +1 in numerator and denominator (in the units of the inputs, strides
    for FCOS), as AdelaiDet does; the GIoU uses the smoothed IoU and the unsmoothed enclosure.
    Negative predicted distances (a linear box regression) count as 0: an inverted box
    overlaps nothing, as for the decoded boxes of mmdetection's IoU loss.
    """
    pred = pred.clamp(min=0)
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    w_inter = torch.min(pred[:, 0], target[:, 0]) + torch.min(pred[:, 2], target[:, 2])
    h_inter = torch.min(pred[:, 1], target[:, 1]) + torch.min(pred[:, 3], target[:, 3])
    w_enclose = torch.max(pred[:, 0], target[:, 0]) + torch.max(pred[:, 2], target[:, 2])
    h_enclose = torch.max(pred[:, 1], target[:, 1]) + torch.max(pred[:, 3], target[:, 3])
    inter = w_inter * h_inter
    union = pred_area + target_area - inter
    enclose = w_enclose * h_enclose + 1e-7
    iou = (inter + 1.0) / (union + 1.0)
    giou = iou - (enclose - union) / enclose
    return iou, giou


def box_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Per-box loss (N,) for ltrb boxes: ``iou`` −ln IoU, ``linear_iou`` 1 − IoU, ``giou`` 1 − GIoU,
    ``log_giou`` −ln((1 + GIoU) / 2) (SG-Net Eq. 5; the ratio clamped at 1e-6 to stay finite)."""
    iou, giou = ltrb_iou_giou(pred, target)
    if loss_type == "iou":
        return -torch.log(iou)
    if loss_type == "linear_iou":
        return 1 - iou
    if loss_type == "giou":
        return 1 - giou
    if loss_type == "log_giou":
        return -torch.log(((1 + giou) / 2).clamp(min=1e-6))
    raise ValueError(f"unknown box loss '{loss_type}'; choose one of {LOC_LOSS_TYPES}")


def fcos_losses(
    logits: torch.Tensor,
    reg_pred: torch.Tensor,
    ctr_pred: torch.Tensor,
    targets: FCOSTargets,
    num_classes: int,
    *,
    loc_loss_type: str = "giou",
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    cls_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """FCOS losses over all locations (flattened level-first like ``targets``).

    logits: (L, C); reg_pred: (L, 4) ltrb in strides; ctr_pred: (L,) logits. The classification
    loss is a sum normalised by the mean positive count over processes (at least 1); the box loss
    is weighted by the centerness targets and normalised by their mean sum over processes; the
    centerness BCE is normalised like the classification loss.
    """
    pos = targets.positive(num_classes)
    num_pos = reduce_mean(torch.tensor(float(len(pos)), device=logits.device)).clamp(min=1.0)
    onehot = torch.zeros_like(logits)
    onehot[pos, targets.labels[pos]] = 1.0
    loss_cls = (
        sigmoid_focal_loss(logits, onehot, alpha=focal_alpha, gamma=focal_gamma, reduction="sum")
        / num_pos
    )
    # no early exit without positives: every process must reach the same collective calls
    reg_t = targets.reg[pos]
    ctr_t = centerness_targets(reg_t)
    denorm = reduce_mean(ctr_t.sum().detach()).clamp(min=1e-6)
    loss_loc = (box_loss(reg_pred[pos], reg_t, loc_loss_type) * ctr_t).sum() / denorm
    loss_ctr = F.binary_cross_entropy_with_logits(ctr_pred[pos], ctr_t, reduction="sum") / num_pos
    return {
        "loss_fcos_cls": cls_weight * loss_cls,
        "loss_fcos_loc": loss_loc,
        "loss_fcos_ctr": loss_ctr,
    }
