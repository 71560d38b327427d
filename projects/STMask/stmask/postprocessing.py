"""STMask's inference after the dense graph: a frame's detections from the head's rows
(scores, box decoding, cross-class Fast NMS) and their masks at the output size."""

from __future__ import annotations

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances

from vis_d2.layers import fast_nms
from vis_d2.modeling.mask_windows import assemble_masks

from .criterion import PROTO_STRIDE
from .mask_crop import crop_boxes

__all__ = ["CLIP_BOXES", "STMaskDetector", "prototype_masks"]

# where boxes are clipped to the input (MODEL.STMASK.TEST.CLIP_BOXES)
CLIP_BOXES = ("all", "output")


class STMaskDetector:
    """One frame's detections from its head rows (batch of one): candidates whose best
    foreground probability exceeds ``score_thresh`` and whose centerness is positive (tanh
    can be negative, which would rank a detection below every positive score), score = that
    probability × the centerness, cross-class Fast NMS at ``nms_thresh`` over the
    ``nms_topk`` best, the best ``detections_per_frame``. ``positive_centerness`` False keeps
    candidates of any centerness; ``clip_boxes`` False leaves the decoded boxes unclipped (NMS
    then compares the boxes as decoded)."""

    def __init__(
        self,
        coder: Box2BoxTransform,
        *,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        nms_topk: int = 200,
        detections_per_frame: int = 100,
        positive_centerness: bool = True,
        clip_boxes: bool = True,
    ) -> None:
        self.coder = coder
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.nms_topk = nms_topk
        self.detections_per_frame = detections_per_frame
        self.positive_centerness = positive_centerness
        self.clip_boxes = clip_boxes

    def detect(
        self, rows: dict[str, torch.Tensor], anchors: torch.Tensor, image_size: tuple[int, int]
    ) -> Instances:
        """``rows`` the frame's head rows (each (1, A, ·)), ``anchors`` (A, 4) px on an
        ``image_size`` input → ``Instances`` with ``pred_boxes`` (clipped to the input),
        ``scores``, ``pred_classes``, ``class_scores`` (N, C), ``embeddings`` (N, D) and
        ``coefficients`` (N, M) (pre-tanh)."""
        probs = rows["cls"][0].softmax(dim=1)[:, 1:]
        best, classes = probs.max(dim=1)
        candidates = best > self.score_thresh
        if self.positive_centerness:
            candidates &= rows["ctr"][0] > 0
        keep = candidates.nonzero().squeeze(1)
        scores = best[keep] * rows["ctr"][0, keep]
        boxes = Boxes(self.coder.apply_deltas(rows["box"][0, keep], anchors[keep]))
        if self.clip_boxes:
            boxes.clip(image_size)
        kept = fast_nms(
            boxes.tensor, scores, torch.zeros_like(keep), self.nms_thresh, self.nms_topk
        )[: self.detections_per_frame]
        det = Instances(image_size)
        det.pred_boxes = boxes[kept]
        det.scores = scores[kept]
        det.pred_classes = classes[keep][kept]
        det.class_scores = probs[keep][kept] * rows["ctr"][0, keep][kept, None]
        rows_kept = keep[kept]
        det.embeddings = rows["track"][0, rows_kept]
        det.coefficients = rows["mask"][0, rows_kept]
        return det


def prototype_masks(
    protos: torch.Tensor,
    instances: Instances,
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    threshold: float,
    crop: tuple[str, float] = ("centre", 0),
) -> torch.Tensor:
    """Bool masks (N, H_out, W_out) of σ(prototypes · tanh(coefficients)) inside the boxes:
    ``protos`` (1, M, H/4, W/4) of an ``input_size`` frame, ``instances`` with ``pred_boxes``
    (input px) and ``coefficients`` (N, M) pre-tanh; ``crop`` the cell rule and padding of
    ``MODEL.STMASK.MASK_CROP`` (:mod:`.mask_crop`)."""
    return assemble_masks(
        protos,
        0,
        crop_boxes(instances.pred_boxes.tensor, PROTO_STRIDE, crop[1]),
        torch.tanh(instances.coefficients)[:, None],
        1,
        1,
        stride=PROTO_STRIDE,
        input_size=input_size,
        output_size=output_size,
        threshold=threshold,
        cell_rule=crop[0],
    )
