"""STMask's frame-level training signals (YOLACT++'s, with STMask's box and centerness losses):
anchor matching, SSD box coding, softmax classification with OHEM, 1 − DIoU box loss,
centerness regressed to the DIoU, and the enlarged predicted boxes that crop the mask loss
(the masks are assembled and their loss computed by :mod:`vis_d2.modeling.mask_windows`, with
a 1 × 1 grid: one coefficient vector per box)."""

from __future__ import annotations

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, pairwise_iou
from torch.nn import functional as F
from torchvision.ops import distance_box_iou_loss

__all__ = [
    "BACKGROUND",
    "FORCED_MATCHES",
    "box_coder",
    "box_losses",
    "enlarge_boxes",
    "match_anchors",
    "ohem_cross_entropy",
]

BACKGROUND = 0  # the softmax's class 0; dataset class c is logit c + 1


def box_coder(variances: tuple[float, float] = (0.1, 0.2)) -> Box2BoxTransform:
    """SSD box coding with variances (v_c, v_s): t_x = (g_x − a_x) / (v_c·a_w), t_w =
    ln(g_w / a_w) / v_s: detectron2's transform with weights 1 / v."""
    centre, size = (1.0 / v for v in variances)
    return Box2BoxTransform(weights=(centre, centre, size, size))


# the anchors forced positive for their GT (MODEL.STMASK.FORCED_MATCHES, see match_anchors)
FORCED_MATCHES = ("all_ties", "greedy_first")


def match_anchors(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    class_logits: torch.Tensor | None = None,
    forced: str = "all_ties",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's anchors (A, 4) against its GT (G, 4) XYXY px with classes (G,): anchors with
    IoU ≥ ``pos_iou`` are positive, < ``neg_iou`` negative, in between ignored, and each GT
    also takes its best anchor (detectron2's Matcher with low-quality matches). Returns
    ``labels`` (A,) int64: dataset class + 1 for positives, 0 for background, −1 ignored, and
    ``matched`` (A,) the GT index of each anchor (meaningful where labels > 0).

    With ``class_logits`` (A, K+1), the classification-aware matching of the authors' code
    (not in the paper): an anchor whose IoU exceeds ``pos_iou`` − 0.1 with two or more GTs
    gets the score (pos + neg) / 2; anchors above ``pos_iou`` add q = 2p / (1 + p) to their
    score, p the softmax probability of their GT's class (detached), and both thresholds
    rise by the mean q; then each GT takes its best-IoU anchors: ``forced`` "all_ties", every
    anchor tied at its highest IoU (> 0), as without; "greedy_first", GT by GT in descending
    order of their best IoU, the first arg-max among the anchors no earlier GT took (the
    authors' code)."""
    if forced not in FORCED_MATCHES:
        raise ValueError(f"MODEL.STMASK.FORCED_MATCHES {forced!r} is not one of {FORCED_MATCHES}")
    if len(gt_boxes) == 0:
        zeros = torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device)
        return zeros, zeros.clone()
    iou = pairwise_iou(Boxes(gt_boxes), Boxes(anchors))
    if class_logits is None:
        matcher = Matcher([neg_iou, pos_iou], [0, -1, 1], allow_low_quality_matches=True)
        matched, match_labels = matcher(iou)
        labels = torch.where(match_labels == 1, gt_classes[matched] + 1, match_labels.clamp(max=0))
        return labels, matched
    score, matched = iou.max(dim=0)
    ambiguous = (iou > pos_iou - 0.1).sum(dim=0) > 1
    score = torch.where(ambiguous, torch.full_like(score, (pos_iou + neg_iou) / 2), score)
    confident = score > pos_iou
    if confident.any():
        ce = F.cross_entropy(
            class_logits[confident].detach(), gt_classes[matched[confident]] + 1, reduction="none"
        )
        quality = 2 / (1 + ce.exp())  # = 2p / (1 + p) in [0, 1]
        score = score.masked_scatter(confident, score[confident] + quality)
        pos_iou, neg_iou = pos_iou + quality.mean(), neg_iou + quality.mean()
    # each GT's best anchors are positive for it
    if forced == "all_ties":
        highest = iou.max(dim=1, keepdim=True).values
        forced_gt, forced_anchor = ((iou == highest) & (highest > 0)).nonzero(as_tuple=True)
    else:
        forced_gt, forced_anchor = _greedy_best_anchors(iou)
    score[forced_anchor] = float("inf")
    matched[forced_anchor] = forced_gt
    labels = torch.where(score >= pos_iou, gt_classes[matched] + 1, -1)
    return labels.masked_fill(score < neg_iou, BACKGROUND), matched


def _greedy_best_anchors(iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, A) IoU → the GTs (G,) and the anchor (G,) each is forced on: repeatedly the GT with
    the highest IoU left (first on ties) takes its first arg-max anchor, and both leave."""
    iou = iou.clone()
    gts, anchors = [], []
    for _ in range(len(iou)):
        best, best_anchor = iou.max(dim=1)
        gt = int(best.argmax())
        anchor = int(best_anchor[gt])
        iou[:, anchor] = -1
        iou[gt, :] = -1
        gts.append(gt)
        anchors.append(anchor)
    device = iou.device
    return torch.tensor(gts, device=device), torch.tensor(anchors, device=device)


def ohem_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, negative_ratio: float = 3.0
) -> torch.Tensor:
    """One image's softmax cross-entropy with online hard negative mining: ``logits`` (A, K+1),
    ``labels`` (A,) (> 0 positive, 0 background, −1 ignored). All positives count; of the
    background anchors, the ``negative_ratio``·P with the highest background loss (at least
    one when there is no positive). Returns the sum over the kept anchors / max(P, 1)."""
    positive = labels > 0
    num_pos = int(positive.sum())
    losses = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    negative_loss = torch.where(labels == BACKGROUND, losses.detach(), -1.0)
    num_neg = min(int((labels == BACKGROUND).sum()), max(int(negative_ratio * num_pos), 1))
    hardest = negative_loss.topk(num_neg).indices
    kept = positive.clone()
    kept[hardest] = True
    return (losses * kept).sum() / max(num_pos, 1)


def box_losses(
    deltas: torch.Tensor,
    centerness: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    coder: Box2BoxTransform,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positives' box and centerness losses: ``deltas`` (P, 4) SSD deltas of their
    anchors (P, 4), ``centerness`` (P,) tanh outputs, ``gt_boxes`` (P, 4) their matched GT.
    Returns (1 − DIoU of the decoded boxes, smooth-L1 of the centerness against the detached
    DIoU), each (P,)."""
    boxes = coder.apply_deltas(deltas, anchors)
    diou_loss = distance_box_iou_loss(boxes, gt_boxes)
    target = (1 - diou_loss).detach()
    return diou_loss, F.smooth_l1_loss(centerness, target, reduction="none")


def enlarge_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """(N, 4) XYXY boxes scaled by ``factor`` about their centres."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * factor / 2
    return torch.cat((centres - half, centres + half), dim=1)
