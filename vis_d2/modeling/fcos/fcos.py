"""FCOS on FPN levels: head, target assignment, losses and inference as one module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec, batched_nms
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ...layers import fast_nms
from .head import FCOSHead
from .losses import LOC_LOSS_TYPES, fcos_losses
from .targets import FCOSTargets, assign_targets, compute_locations, level_size_ranges

__all__ = [
    "FCOS",
    "FCOSOutputs",
    "flatten_levels",
    "fcos_inference",
]


NMS_TYPES = ("standard", "fast")
# PRE_NMS_CANDIDATES: the per-level top-k of "pairs" ((location, class) pairs above the score
# threshold) or of "locations" (by their best class score × centerness, each with every class
# of it above the threshold: mmdetection's FCOS-style heads)
PRE_NMS_CANDIDATES = ("pairs", "locations")
# NMS_IOU_OFFSET_UNIT: the pixels the NMS IoU offset is counted in: "input" (the network
# input's) or "output" (the output image's, per axis: mmdetection v1 detectors rescale their
# boxes to the original image before their NMS, whose + 1 is then an original-image pixel)
NMS_IOU_OFFSET_UNITS = ("input", "output")


def _clip(boxes: torch.Tensor, image_size: tuple[int, int], offset: float) -> torch.Tensor:
    """(N, 4) XYXY boxes clamped to [0, W − offset] × [0, H − offset] for ``image_size``
    (H, W); ``offset`` 1 clamps to the last pixel index (mmdetection v1's ``distance2bbox``)."""
    height, width = image_size
    x = boxes[:, 0::2].clamp(0, width - offset)
    y = boxes[:, 1::2].clamp(0, height - offset)
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)


def _nms_offsets(
    offset: float,
    unit: str,
    image_size: tuple[int, int],
    output_size: tuple[int, int] | None,
) -> tuple[float, float]:
    """The (x, y) offsets in input pixels of an NMS IoU ``offset`` counted in ``unit`` pixels
    (:data:`NMS_IOU_OFFSET_UNITS`), for an image of input size ``image_size`` (H, W) shown at
    ``output_size`` (H, W): "output" pixels are input/output input pixels on each axis, as
    the IoU of boxes scaled by that ratio with ``offset`` is their IoU at input scale with
    these offsets."""
    if unit == "input":
        return offset, offset
    if output_size is None:
        raise ValueError("MODEL.FCOS.NMS_IOU_OFFSET_UNIT 'output' needs the output sizes")
    (in_h, in_w), (out_h, out_w) = image_size, output_size
    return offset * in_w / out_w, offset * in_h / out_h


def flatten_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-level (N, C, H_l, W_l) maps → (L, C) rows in level-first order (level, image, y, x),
    the order of :class:`FCOSTargets`."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in maps])


@dataclass
class FCOSOutputs:
    """What FCOS hands to the heads built on it.

    head: per-level head outputs (``logits``, ``reg``, ``ctr``, ``bbox_towers``);
    locations: per-level (H_l·W_l, 2) cell centres in input pixels; strides: per level;
    targets: the training assignment (None at inference).
    """

    head: dict[str, list[torch.Tensor]]
    locations: list[torch.Tensor]
    strides: list[int]
    targets: FCOSTargets | None


def fcos_inference(
    head: dict[str, list[torch.Tensor]],
    locations: list[torch.Tensor],
    strides: list[int],
    image_sizes: list[tuple[int, int]],
    *,
    score_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_thresh: float,
    thresh_with_ctr: bool,
    class_agnostic_nms: bool = False,
    nms_type: str = "standard",
    fast_nms_topk: int = 200,
    sqrt_score: bool = True,
    pre_nms_candidates: str = "pairs",
    clip_before_nms: bool = False,
    clip_offset: float = 0.0,
    nms_iou_offset: float = 0.0,
    nms_iou_offset_unit: str = "input",
    output_sizes: list[tuple[int, int]] | None = None,
) -> list[Instances]:
    """Detections per image: ``pred_boxes`` (XYXY, input pixels, clipped), ``scores``
    (sqrt(cls·ctr), or cls·ctr without ``sqrt_score``), ``pred_classes``, ``class_scores``
    (N, C) (the same score of every class at the detection's cell), and where they came
    from: ``fpn_levels``, ``locations`` (x, y) and ``loc_inds`` (index of the cell in its
    level's H_l·W_l map). NMS runs per class, or over all classes with
    ``class_agnostic_nms``; ``nms_type`` "fast" is YOLACT's Fast NMS over the
    ``fast_nms_topk`` best boxes of each group (:func:`vis_d2.layers.fast_nms`).

    ``pre_nms_candidates`` (:data:`PRE_NMS_CANDIDATES`): what the per-level ``pre_nms_topk``
    counts. Boxes are clipped to [0, W − ``clip_offset``] × [0, H − ``clip_offset``] of their
    image, after NMS or, with ``clip_before_nms``, before it (as the IoUs then see them).
    ``nms_iou_offset`` is added to the widths and heights of the boxes and of their
    intersections in the NMS IoU (1: mmdetection v1's ``nms`` op), in the pixels of
    ``nms_iou_offset_unit`` (:data:`NMS_IOU_OFFSET_UNITS`; "output" needs ``output_sizes``,
    (H, W) per image)."""
    if nms_type not in NMS_TYPES:
        raise ValueError(f"unknown NMS type '{nms_type}'; choose one of {NMS_TYPES}")
    if pre_nms_candidates not in PRE_NMS_CANDIDATES:
        raise ValueError(
            f"MODEL.FCOS.PRE_NMS_CANDIDATES '{pre_nms_candidates}' is not one of "
            f"{PRE_NMS_CANDIDATES}"
        )
    if nms_iou_offset_unit not in NMS_IOU_OFFSET_UNITS:
        raise ValueError(
            f"MODEL.FCOS.NMS_IOU_OFFSET_UNIT '{nms_iou_offset_unit}' is not one of "
            f"{NMS_IOU_OFFSET_UNITS}"
        )
    results = []
    for i, image_size in enumerate(image_sizes):
        per_level = []
        for level, (loc, stride) in enumerate(zip(locations, strides, strict=True)):
            num_classes = head["logits"][level].shape[1]
            cls = head["logits"][level][i].permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
            ctr = head["ctr"][level][i].reshape(-1).sigmoid()
            reg = head["reg"][level][i].permute(1, 2, 0).reshape(-1, 4)
            if thresh_with_ctr:
                cls = cls * ctr[:, None]
            candidates = cls > score_thresh
            if not thresh_with_ctr:
                cls = cls * ctr[:, None]
            if pre_nms_candidates == "locations":
                best = cls.amax(dim=1)
                top = best.topk(min(pre_nms_topk, len(best))).indices
                candidates &= torch.zeros_like(candidates[:, 0]).index_fill_(0, top, True)[:, None]
            scores = cls[candidates]
            loc_ind, label = candidates.nonzero(as_tuple=True)
            if pre_nms_candidates == "pairs":
                keep = scores.topk(min(pre_nms_topk, len(scores))).indices
                loc_ind, label, scores = loc_ind[keep], label[keep], scores[keep]
            xy, ltrb = loc[loc_ind], reg[loc_ind] * stride
            boxes = torch.cat((xy - ltrb[:, :2], xy + ltrb[:, 2:]), dim=1)
            if clip_before_nms:
                boxes = _clip(boxes, image_size, clip_offset)
            class_scores = cls[loc_ind]
            if sqrt_score:
                scores, class_scores = scores.sqrt(), class_scores.sqrt()
            per_level.append(
                (
                    boxes,
                    scores,
                    label,
                    class_scores,
                    loc_ind,
                    xy,
                    torch.full_like(label, level),
                )
            )
        merged = (torch.cat(x) for x in zip(*per_level, strict=True))
        boxes, scores, labels, class_scores, loc_inds, xys, levels = merged
        groups = torch.zeros_like(labels) if class_agnostic_nms else labels
        # (x2, y2) + o on both boxes adds o to each width and height and to their overlap
        output_size = output_sizes[i] if output_sizes is not None else None
        offsets = _nms_offsets(nms_iou_offset, nms_iou_offset_unit, image_size, output_size)
        nms_boxes = boxes + boxes.new_tensor([0, 0, *offsets])
        if nms_type == "fast":
            keep = fast_nms(nms_boxes, scores, groups, nms_thresh, fast_nms_topk)
        else:
            keep = batched_nms(nms_boxes, scores, groups, nms_thresh)
        keep = keep[:post_nms_topk]
        inst = Instances(image_size)
        inst.pred_boxes = Boxes(_clip(boxes[keep], image_size, clip_offset))
        inst.scores = scores[keep]
        inst.pred_classes = labels[keep]
        inst.class_scores = class_scores[keep]
        inst.fpn_levels = levels[keep]
        inst.locations = xys[keep]
        inst.loc_inds = loc_inds[keep]
        results.append(inst)
    return results


class FCOS(nn.Module):
    """FCOS (AdelaiDet behaviour) over ``in_features`` of a backbone.

    ``forward(images, features, gt_instances)`` returns ``(detections, losses, outputs)``:
    detections per image at inference (None in training), the
    loss dict in training (``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``), and the
    :class:`FCOSOutputs` the mask/track heads read.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: list[str],
        strides: list[int],
        head: FCOSHead,
        num_classes: int,
        sizes_of_interest: list[float],
        center_sample: bool = True,
        pos_radius: float = 1.5,
        loc_loss_type: str = "giou",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        cls_weight: float = 1.0,
        thresh_with_ctr: bool = False,
        score_thresh: tuple[float, float] = (0.05, 0.05),
        pre_nms_topk: tuple[int, int] = (1000, 1000),
        post_nms_topk: tuple[int, int] = (100, 100),
        nms_thresh: float = 0.6,
        class_agnostic_nms: bool = False,
        nms_type: str = "standard",
        fast_nms_topk: int = 200,
        sqrt_score: bool = True,
        pre_nms_candidates: str = "pairs",
        clip_before_nms: bool = False,
        clip_offset: float = 0.0,
        nms_iou_offset: float = 0.0,
        nms_iou_offset_unit: str = "input",
    ):
        super().__init__()
        if nms_type not in NMS_TYPES:
            raise ValueError(f"MODEL.FCOS.NMS_TYPE '{nms_type}' is not one of {NMS_TYPES}")
        if nms_iou_offset_unit not in NMS_IOU_OFFSET_UNITS:
            raise ValueError(
                f"MODEL.FCOS.NMS_IOU_OFFSET_UNIT '{nms_iou_offset_unit}' is not one of "
                f"{NMS_IOU_OFFSET_UNITS}"
            )
        if loc_loss_type not in LOC_LOSS_TYPES:
            raise ValueError(f"unknown box loss '{loc_loss_type}'; choose one of {LOC_LOSS_TYPES}")
        size_ranges = level_size_ranges(sizes_of_interest)
        if not len(in_features) == len(strides) == len(size_ranges):
            raise ValueError(
                f"{len(in_features)} features, {len(strides)} strides and "
                f"{len(size_ranges)} size ranges must agree"
            )
        self.in_features = in_features
        self.strides = strides
        self.head = head
        self.num_classes = num_classes
        self.size_ranges = size_ranges
        self.center_sample = center_sample
        self.pos_radius = pos_radius
        self.loc_loss_type = loc_loss_type
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.cls_weight = cls_weight
        self.thresh_with_ctr = thresh_with_ctr
        # (train, test) values of the inference parameters
        self.score_thresh = score_thresh
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.nms_thresh = nms_thresh
        self.class_agnostic_nms = class_agnostic_nms
        self.nms_type = nms_type
        self.fast_nms_topk = fast_nms_topk
        self.sqrt_score = sqrt_score
        self.pre_nms_candidates = pre_nms_candidates
        self.clip_before_nms = clip_before_nms
        self.clip_offset = clip_offset
        self.nms_iou_offset = nms_iou_offset
        self.nms_iou_offset_unit = nms_iou_offset_unit

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        fcos = cfg.MODEL.FCOS
        shapes = [input_shape[f] for f in fcos.IN_FEATURES]
        strides = [s.stride for s in shapes]
        if strides != list(fcos.FPN_STRIDES):
            raise ValueError(
                f"MODEL.FCOS.FPN_STRIDES {list(fcos.FPN_STRIDES)} differ from the "
                f"backbone's strides {strides} for {list(fcos.IN_FEATURES)}"
            )
        return {
            "in_features": list(fcos.IN_FEATURES),
            "strides": strides,
            "head": FCOSHead(cfg, shapes),
            "num_classes": fcos.NUM_CLASSES,
            "sizes_of_interest": list(fcos.SIZES_OF_INTEREST),
            "center_sample": fcos.CENTER_SAMPLE,
            "pos_radius": fcos.POS_RADIUS,
            "loc_loss_type": fcos.LOC_LOSS_TYPE,
            "focal_alpha": fcos.LOSS_ALPHA,
            "focal_gamma": fcos.LOSS_GAMMA,
            "cls_weight": fcos.LOSS_WEIGHT_CLS,
            "thresh_with_ctr": fcos.THRESH_WITH_CTR,
            "score_thresh": (fcos.INFERENCE_TH_TRAIN, fcos.INFERENCE_TH_TEST),
            "pre_nms_topk": (fcos.PRE_NMS_TOPK_TRAIN, fcos.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (fcos.POST_NMS_TOPK_TRAIN, fcos.POST_NMS_TOPK_TEST),
            "nms_thresh": fcos.NMS_TH,
            "class_agnostic_nms": fcos.NMS_CLASS_AGNOSTIC,
            "nms_type": fcos.NMS_TYPE,
            "fast_nms_topk": fcos.FAST_NMS_TOPK,
            "sqrt_score": fcos.SQRT_SCORE,
            "pre_nms_candidates": fcos.PRE_NMS_CANDIDATES,
            "clip_before_nms": fcos.CLIP_BEFORE_NMS,
            "clip_offset": fcos.CLIP_OFFSET,
            "nms_iou_offset": fcos.NMS_IOU_OFFSET,
            "nms_iou_offset_unit": fcos.NMS_IOU_OFFSET_UNIT,
        }

    def locations(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [
            compute_locations(f.shape[-2], f.shape[-1], s, f.device)
            for f, s in zip(features, self.strides, strict=True)
        ]

    def losses(
        self,
        head: dict[str, list[torch.Tensor]],
        locations: list[torch.Tensor],
        gt_instances: list[Instances],
    ) -> tuple[dict[str, torch.Tensor], FCOSTargets]:
        """The FCOS losses of the head outputs ``head`` (``logits``, ``reg``, ``ctr`` per level)
        for the targets assigned to ``gt_instances``, and that assignment."""
        targets = assign_targets(
            locations,
            self.strides,
            self.size_ranges,
            gt_instances,
            self.num_classes,
            self.center_sample,
            self.pos_radius,
        )
        losses = fcos_losses(
            flatten_levels(head["logits"]),
            flatten_levels(head["reg"]),
            flatten_levels(head["ctr"]).squeeze(1),
            targets,
            self.num_classes,
            loc_loss_type=self.loc_loss_type,
            focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma,
            cls_weight=self.cls_weight,
        )
        return losses, targets

    @torch.no_grad()
    def detect(
        self,
        head: dict[str, list[torch.Tensor]],
        image_sizes: list[tuple[int, int]],
        output_sizes: list[tuple[int, int]] | None = None,
    ) -> list[Instances]:
        """Detections per image (see :func:`fcos_inference`) from the head outputs, with the
        training or test thresholds as the module is in training or eval mode;
        ``output_sizes`` (H, W) per image for ``MODEL.FCOS.NMS_IOU_OFFSET_UNIT`` "output"."""
        phase = 0 if self.training else 1
        return fcos_inference(
            {k: [t.detach() for t in v] for k, v in head.items()},
            self.locations(head["logits"]),
            self.strides,
            image_sizes,
            score_thresh=self.score_thresh[phase],
            pre_nms_topk=self.pre_nms_topk[phase],
            post_nms_topk=self.post_nms_topk[phase],
            nms_thresh=self.nms_thresh,
            thresh_with_ctr=self.thresh_with_ctr,
            class_agnostic_nms=self.class_agnostic_nms,
            nms_type=self.nms_type,
            fast_nms_topk=self.fast_nms_topk,
            sqrt_score=self.sqrt_score,
            pre_nms_candidates=self.pre_nms_candidates,
            clip_before_nms=self.clip_before_nms,
            clip_offset=self.clip_offset,
            nms_iou_offset=self.nms_iou_offset,
            nms_iou_offset_unit=self.nms_iou_offset_unit,
            output_sizes=output_sizes,
        )

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        gt_instances: list[Instances] | None = None,
    ) -> tuple[list[Instances] | None, dict[str, torch.Tensor], FCOSOutputs]:
        feats = [features[f] for f in self.in_features]
        head = self.head(feats)
        locations = self.locations(feats)
        losses: dict[str, torch.Tensor] = {}
        targets = None
        if self.training:
            losses, targets = self.losses(head, locations, gt_instances)
        detections = None
        if not self.training:
            detections = self.detect(head, images.image_sizes)
        return detections, losses, FCOSOutputs(head, locations, self.strides, targets)
