"""STMask's training losses: the frame losses of each image (softmax cross-entropy with OHEM,
1 − DIoU, centerness, the box-cropped mask BCE), the track loss between the two frames of each
pair, and temporal fusion's B_shift and M_shift (Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Instances
from torch.nn import functional as F

from vis_d2.modeling.mask_windows import blend, gt_windows, mask_loss

from .losses import (
    FORCED_MATCHES,
    box_losses,
    enlarge_boxes,
    match_anchors,
    ohem_cross_entropy,
)
from .temporal_fusion import box_shift_loss, shift_coefficients

__all__ = ["LOSS_NAMES", "PROTO_STRIDE", "STMaskCriterion"]

PROTO_STRIDE = 4  # the prototypes' stride in input pixels
# every loss, weighted by MODEL.STMASK.LOSS_WEIGHTS.<NAME> into loss_<name>
LOSS_NAMES = ("cls", "box", "ctr", "mask", "track", "box_shift", "mask_shift")

# positives of one image: anchor indices (P,) and the index of each one's GT (P,)
Positives = tuple[torch.Tensor, torch.Tensor]
# (earlier, later) maps of the correlated level, boxes (N, 4) px, pair of each (N,) → shifts
TemporalShift = Callable[
    [tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], torch.Tensor,
     torch.Tensor],
    tuple[torch.Tensor, torch.Tensor],
]  # fmt: skip


class STMaskCriterion:
    """The losses of a batch of B frame pairs (2B frames: the key frames, then their
    reference frames), each ``LOSS_WEIGHTS``-weighted.

    Frame losses (``cls``, ``box``, ``ctr``, ``mask``) are averaged over the anchors or
    positives of each frame, then summed over the frames and divided by their number; the
    track loss is averaged over the anchor pairs of each frame pair, then over the frame
    pairs; B_shift and M_shift are one mean over the positives that the two frames of every
    pair share (the authors divide per-image sums by the number of images instead)."""

    def __init__(
        self,
        coder: Box2BoxTransform,
        *,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        class_aware_matching: bool = False,
        forced_matches: str = "all_ties",
        ohem_ratio: float = 3.0,
        mask_box_enlarge: float = 1.2,
        loss_weights: dict[str, float] | None = None,
    ) -> None:
        unknown = set(loss_weights or {}) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"unknown STMask losses {sorted(unknown)}; known: {LOSS_NAMES}")
        if forced_matches not in FORCED_MATCHES:
            raise ValueError(
                f"MODEL.STMASK.FORCED_MATCHES {forced_matches!r} is not one of {FORCED_MATCHES}"
            )
        self.coder = coder
        self.pos_iou = pos_iou
        self.neg_iou = neg_iou
        self.class_aware_matching = class_aware_matching
        self.forced_matches = forced_matches
        self.ohem_ratio = ohem_ratio
        self.mask_box_enlarge = mask_box_enlarge
        self.loss_weights = dict.fromkeys(LOSS_NAMES, 1.0)
        self.loss_weights.update(loss_weights or {})

    def frame_losses(
        self,
        rows: dict[str, torch.Tensor],
        anchors: torch.Tensor,
        protos: torch.Tensor,
        gts: list[Instances],
        gt_masks: torch.Tensor,
        offsets: list[int],
    ) -> tuple[dict[str, torch.Tensor], list[Positives]]:
        """``rows`` the head's rows of the 2B frames (see ``STMask.dense_outputs``),
        ``anchors`` (A, 4) px, ``protos`` (2B, M, H/4, W/4), ``gt_masks`` (G, H/4, W/4) of all
        frames' GT in order (frame i's from ``offsets[i]``) → the weighted ``loss_cls``,
        ``loss_box``, ``loss_ctr``, ``loss_mask``, and each frame's positives."""
        # a zero connected to every output, so that every parameter gets a gradient (DDP)
        zero = sum(r.sum() for r in rows.values()) * 0 + protos.sum() * 0
        totals = dict.fromkeys(("cls", "box", "ctr", "mask"), zero)
        positives = []
        for i, gt in enumerate(gts):
            labels, matched = match_anchors(
                anchors,
                gt.gt_boxes.tensor,
                gt.gt_classes,
                self.pos_iou,
                self.neg_iou,
                rows["cls"][i] if self.class_aware_matching else None,
                self.forced_matches,
            )
            totals["cls"] = totals["cls"] + ohem_cross_entropy(
                rows["cls"][i], labels, self.ohem_ratio
            )
            pos = (labels > 0).nonzero().squeeze(1)
            positives.append((pos, matched[pos]))
            if not len(pos):
                continue
            gt_boxes = gt.gt_boxes.tensor[matched[pos]]
            diou, ctr = box_losses(
                rows["box"][i, pos], rows["ctr"][i, pos], anchors[pos], gt_boxes, self.coder
            )
            totals["box"] = totals["box"] + diou.mean()
            totals["ctr"] = totals["ctr"] + ctr.mean()
            boxes = self.coder.apply_deltas(rows["box"][i, pos].detach(), anchors[pos])
            crop = enlarge_boxes(boxes, self.mask_box_enlarge) / PROTO_STRIDE
            windows = blend(
                protos[i : i + 1], 0, crop, torch.tanh(rows["mask"][i, pos])[:, None], 1, 1
            )
            targets = gt_windows(gt_masks, offsets[i] + matched[pos], windows)
            totals["mask"] = totals["mask"] + mask_loss(windows, targets)
        losses = {f"loss_{k}": self.loss_weights[k] * v / len(gts) for k, v in totals.items()}
        return losses, positives

    def track_loss(
        self, embeddings: torch.Tensor, gts: list[Instances], positives: list[Positives]
    ) -> dict[str, torch.Tensor]:
        """Between the positives of the two frames of each pair (``embeddings`` (2B, A, D)
        L2-normalised): p = (cos + 1) / 2, −log p for the same instance and −log(1 − p)
        otherwise, averaged over the pairs of anchors, then over the frame pairs →
        ``loss_track``."""
        num = len(gts) // 2
        losses = []
        for i in range(num):
            (pos_a, gt_a), (pos_b, gt_b) = positives[i], positives[num + i]
            if not len(pos_a) or not len(pos_b):
                continue
            cos = embeddings[i, pos_a] @ embeddings[num + i, pos_b].T
            same = gts[i].gt_ids[gt_a][:, None] == gts[num + i].gt_ids[gt_b][None]
            p = ((cos + 1) / 2).clamp(1e-6, 1 - 1e-6)
            losses.append(F.binary_cross_entropy(p, same.float()))
        if not losses:  # still connected to the embeddings, as DDP needs
            loss = embeddings.sum() * 0
        else:
            loss = torch.stack(losses).mean()
        return {"loss_track": self.loss_weights["track"] * loss}

    def temporal_losses(
        self,
        temporal_shift: TemporalShift,
        corr_maps: tuple[torch.Tensor, torch.Tensor],
        rows: dict[str, torch.Tensor],
        protos: torch.Tensor,
        anchors: torch.Tensor,
        gts: list[Instances],
        gt_masks: torch.Tensor,
        offsets: list[int],
        positives: list[Positives],
        earlier: list[int],
        later: list[int],
    ) -> dict[str, torch.Tensor]:
        """B_shift and M_shift (``loss_box_shift``, ``loss_mask_shift``): the positives of
        each earlier frame whose instance is also in the later frame, shifted by TF
        (``temporal_shift``, on ``corr_maps``: the correlated level's FPN and T2S maps of the
        2B frames) from their detached predicted boxes and coefficients; the box shift
        against the GT pair's, the shifted mask (on the later frame's prototypes, cropped by
        its GT box) against the later GT mask; one mean over all those positives of the
        batch. ``earlier``/``later`` (B,): the frame indices of each pair in time order."""
        device = anchors.device
        boxes, coefs, pair_inds, prev_gt, cur_gt = [], [], [], [], []
        for k, (a, b) in enumerate(zip(earlier, later, strict=True)):
            pos, matched = positives[a]
            ids_a, ids_b = gts[a].gt_ids[matched], gts[b].gt_ids
            # ids are unique within a frame: each positive has at most one instance there
            rows_a, cols_b = (ids_a[:, None] == ids_b[None]).nonzero(as_tuple=True)
            pos, matched = pos[rows_a], matched[rows_a]
            boxes.append(self.coder.apply_deltas(rows["box"][a, pos].detach(), anchors[pos]))
            coefs.append(rows["mask"][a, pos].detach())
            pair_inds.append(torch.full((len(pos),), k, device=device))
            prev_gt.append(gts[a].gt_boxes.tensor[matched])
            cur_gt.append(offsets[b] + cols_b)
        boxes, coefs, pair_inds = torch.cat(boxes), torch.cat(coefs), torch.cat(pair_inds)
        prev_gt, cur_gt = torch.cat(prev_gt), torch.cat(cur_gt)
        feature, t2s = corr_maps
        delta_box, delta_coef = temporal_shift(
            (feature[earlier], t2s[earlier]), (feature[later], t2s[later]), boxes, pair_inds
        )
        all_gt_boxes = torch.cat([g.gt_boxes.tensor for g in gts])
        box_loss = box_shift_loss(delta_box, prev_gt, all_gt_boxes[cur_gt])
        windows = blend(
            protos[later],
            pair_inds,
            all_gt_boxes[cur_gt] / PROTO_STRIDE,
            torch.tanh(shift_coefficients(coefs, delta_coef))[:, None],
            1,
            1,
        )
        mask = mask_loss(windows, gt_windows(gt_masks, cur_gt, windows))
        return {
            "loss_box_shift": self.loss_weights["box_shift"] * box_loss,
            "loss_mask_shift": self.loss_weights["mask_shift"] * mask,
        }
