"""SipMask for images: FCOS with feature alignment and spatial coefficients over basis masks
(Cao et al., ECCV 2020), optionally with SipMask++'s mask re-scoring, as one META_ARCH; and
the per-image computations it shares with SipMask-VIS (:class:`SipMaskParts`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from torch import nn

from vis_d2.modeling.common import box_iou_with_offset, cap_per_image
from vis_d2.modeling.fcos import FCOS, FCOSTargets, flatten_levels
from vis_d2.modeling.mask_windows import (
    CELL_RULES,
    MASK_RESIZES,
    MaskWindows,
    assemble_masks,
    blend,
    gt_masks_on_basis,
    gt_windows,
    mask_loss,
    paste_windows,
)
from vis_d2.modeling.meta_arch import FrameModel, inference_amp_from_config

from .basis import BasisModule
from .feature_align import FeatureAlign
from .graphs import FrameGraph, split_frame_outputs
from .losses import alignment_weights, mask_iou_loss, mask_iou_targets
from .mask_rescoring import MaskRescoring
from .spatial_coefficients import SpatialCoefficients

__all__ = ["BASIS_STRIDE", "PositiveMasks", "SipMask", "SipMaskParts"]

BASIS_STRIDE = 2  # the basis masks' stride in input pixels


@dataclass
class PositiveMasks:
    """The masks of a batch's training positives on their box windows: ``windows`` (N
    windows), ``targets`` (N, Hw, Ww) their GT on the windows, ``weights`` (N,) their mask
    alignment weights or None, ``pos`` (N,) their rows among the FCOS locations and
    ``gt_masks`` (M, H/2, W/2) the batch's GT masks on the basis map."""

    windows: MaskWindows
    targets: torch.Tensor
    weights: torch.Tensor | None
    pos: torch.Tensor
    gt_masks: torch.Tensor


class SipMaskParts:
    """SipMask's per-image computations, shared by :class:`SipMask` and SipMask-VIS: the dense
    head outputs, the masks of the training positives with their loss, and the masks of
    detections. A model using them has ``fcos`` (:class:`vis_d2.modeling.fcos.FCOS`),
    ``feature_align`` (:class:`FeatureAlign` or None), ``coefficients``
    (:class:`SpatialCoefficients`), ``basis`` (:class:`BasisModule`) and the attributes
    ``basis_levels``, ``mask_align_weight``, ``max_mask_pos_per_image``, ``align_iou_offset``,
    ``mask_thresh``, ``cell_rule``, ``mask_resize``."""

    fcos: FCOS
    feature_align: FeatureAlign | None
    coefficients: SpatialCoefficients
    basis: BasisModule
    basis_levels: int
    mask_align_weight: bool
    max_mask_pos_per_image: int
    align_iou_offset: float
    mask_thresh: float
    cell_rule: str
    mask_resize: str

    @property
    def sub_regions(self) -> int:
        return self.coefficients.sub_regions

    def head_outputs(self, features: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """The FCOS levels (B, C, H_l, W_l) → per level ``logits`` (B, K, ...), ``reg`` (B, 4,
        ...) ltrb in strides, ``ctr`` (B, 1, ...), ``bbox_towers`` (B, C, ...) and
        ``coefficients`` (B, S²·num_bases, ...)."""
        cls_towers, bbox_towers = self.fcos.head.forward_towers(features)
        reg, ctr = self.fcos.head.box_outputs(bbox_towers)
        if self.feature_align is not None:
            cls_towers = [self.feature_align(c, r) for c, r in zip(cls_towers, reg, strict=True)]
        return {
            "logits": self.fcos.head.class_logits(cls_towers),
            "reg": reg,
            "ctr": ctr,
            "bbox_towers": bbox_towers,
            "coefficients": self.coefficients(cls_towers),
        }

    def positive_boxes(
        self, head: dict[str, list[torch.Tensor]], targets: FCOSTargets, pos: torch.Tensor
    ) -> torch.Tensor:
        """(N, 4) XYXY input-pixel boxes the positives ``pos`` regress, detached."""
        ltrb = flatten_levels(head["reg"])[pos].detach() * targets.strides[pos, None]
        xy = targets.locations[pos]
        return torch.cat((xy - ltrb[:, :2], xy + ltrb[:, 2:]), dim=1)

    def positive_masks(
        self,
        images: ImageList,
        head: dict[str, list[torch.Tensor]],
        gts: list[Instances],
        targets: FCOSTargets,
        pos: torch.Tensor,
        boxes: torch.Tensor,
    ) -> PositiveMasks:
        """The masks of the positives ``pos`` (at most ``max_mask_pos_per_image`` per image,
        boxes of more than one basis pixel of area), assembled on their predicted ``boxes``."""
        keep = cap_per_image(targets.im_inds[pos], self.max_mask_pos_per_image)
        pos, boxes = pos[keep], boxes[keep]
        # boxes with at most one basis pixel of area carry no mask to learn
        large = basis_area(boxes) > 1
        pos, boxes = pos[large], boxes[large]
        im_inds, gt_inds = targets.im_inds[pos], targets.gt_inds[pos]
        bases = self.basis(head["bbox_towers"][: self.basis_levels])
        coef = self.coefficients.read(head["coefficients"], pos)
        size = self.sub_regions
        windows = blend(
            bases, im_inds, boxes / BASIS_STRIDE, coef, size, size, cell_rule=self.cell_rule
        )
        height, width = images.tensor.shape[-2:]
        gt_masks = gt_masks_on_basis(gts, height, width, BASIS_STRIDE)
        weights = None
        if self.mask_align_weight and len(pos):
            gt_boxes = torch.cat([g.gt_boxes.tensor for g in gts])[gt_inds]
            if self.align_iou_offset:
                ious = box_iou_with_offset(boxes, gt_boxes, self.align_iou_offset).diagonal()
            else:
                ious = pairwise_iou(Boxes(boxes), Boxes(gt_boxes)).diagonal()
            logits = flatten_levels(head["logits"])[pos, targets.labels[pos]]
            weights = alignment_weights(logits.sigmoid(), ious, im_inds)
        return PositiveMasks(
            windows, gt_windows(gt_masks, gt_inds, windows), weights, pos, gt_masks
        )

    def detection_coefficients(self, maps: list[torch.Tensor], det: Instances) -> torch.Tensor:
        """The (N, S², K) coefficients of one image's detections, read from its per-level
        coefficient maps (1, S²·K, H_l, W_l) at their cells (``fpn_levels``, ``loc_inds``)."""
        sizes = torch.tensor([0] + [m[0, 0].numel() for m in maps], device=det.loc_inds.device)
        return self.coefficients.read(maps, sizes.cumsum(0)[det.fpn_levels] + det.loc_inds)

    def detection_masks(
        self,
        coefficient_maps: list[torch.Tensor],
        bases: torch.Tensor,
        det: Instances,
        input_size: tuple[int, int],
        output_size: tuple[int, int],
    ) -> torch.Tensor:
        """Bool masks (N, H_out, W_out) at ``output_size`` of one image's detections ``det``
        (boxes on its ``input_size`` input), from its coefficient maps (1, S²·K, H_l, W_l) and
        basis masks (1, K, H/2, W/2)."""
        if not len(det):
            return torch.zeros(0, *output_size, dtype=torch.bool, device=bases.device)
        size = self.sub_regions
        return assemble_masks(
            bases,
            0,
            det.pred_boxes.tensor / BASIS_STRIDE,
            self.detection_coefficients(coefficient_maps, det),
            size,
            size,
            stride=BASIS_STRIDE,
            input_size=input_size,
            output_size=output_size,
            threshold=self.mask_thresh,
            cell_rule=self.cell_rule,
            resize=self.mask_resize,
        )


def basis_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N,) areas of (N, 4) XYXY input-pixel boxes in basis-map pixels."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / BASIS_STRIDE**2


@META_ARCH_REGISTRY.register()
class SipMask(SipMaskParts, FrameModel):
    """SipMask (Cao et al., ECCV 2020) for image instance segmentation on a ResNet-FPN backbone;
    SipMask++ with the mask re-scoring (``MODEL.SIPMASK.RESCORING``) and a deformable backbone.

    Per image: the FCOS towers; FeatureAlign resamples the class tower towards the regressed
    box; class logits and S × S spatial coefficients come from the aligned tower, boxes and
    centerness from the box tower; basis masks at stride 2 from the box towers of P3-P5. A
    detection's mask is assembled on its box window (CropSplit,
    :func:`vis_d2.modeling.mask_windows.blend`).

    Input and output as detectron2's ``GeneralizedRCNN``: a list of dicts with ``image`` (C,
    H, W) in ``INPUT.FORMAT`` 0-255, ``instances`` (``gt_boxes``, ``gt_classes``,
    ``gt_masks`` BitMasks) in training, optional ``height``/``width`` (the output size). In
    training the loss dict: FCOS's, ``loss_mask`` (BCE weighted by the mask alignment
    weights) and, with re-scoring, ``loss_mask_iou``; at inference ``[{"instances":
    Instances}]`` at the output size: ``pred_boxes``, ``scores``, ``pred_classes``,
    ``pred_masks`` (bool), with re-scoring also ``box_scores`` (the detection scores; then
    ``scores`` = predicted mask IoU × detection score). Each image runs through
    :meth:`~vis_d2.modeling.FrameModel.inference_frame`, the path the demo, the export and the
    benchmark take.
    """

    num_classes_key = "MODEL.FCOS.NUM_CLASSES"

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        fcos: FCOS,
        feature_align: FeatureAlign | None,
        coefficients: SpatialCoefficients,
        basis: BasisModule,
        rescoring: MaskRescoring | None,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        inference_amp: bool = False,
        basis_levels: int = 3,
        mask_align_weight: bool = True,
        max_mask_pos_per_image: int = 0,
        mask_loss_weight: float = 1.0,
        mask_iou_loss_weight: float = 10.0,
        mask_thresh: float = 0.5,
        align_iou_offset: float = 0.0,
        cell_rule: str = "centre",
        mask_resize: str = "crop_then_resize",
        rescoring_min_iou: float = 0.1,
        rescoring_min_gt_area: float = 100.0,
    ):
        super().__init__(pixel_mean, pixel_std, inference_amp=inference_amp)
        check_choices(cell_rule, mask_resize)
        num_levels = len(fcos.in_features)
        if not 1 <= basis_levels <= num_levels:
            raise ValueError(
                f"MODEL.SIPMASK.BASIS_LEVELS {basis_levels} must be between 1 and the "
                f"{num_levels} FCOS levels"
            )
        self.backbone = backbone
        self.fcos = fcos
        self.feature_align = feature_align
        self.coefficients = coefficients
        self.basis = basis
        self.rescoring = rescoring
        self.basis_levels = basis_levels
        self.mask_align_weight = mask_align_weight
        self.max_mask_pos_per_image = max_mask_pos_per_image
        self.mask_loss_weight = mask_loss_weight
        self.mask_iou_loss_weight = mask_iou_loss_weight
        self.mask_thresh = mask_thresh
        self.align_iou_offset = align_iou_offset
        self.cell_rule = cell_rule
        self.mask_resize = mask_resize
        self.rescoring_min_iou = rescoring_min_iou
        self.rescoring_min_gt_area = rescoring_min_gt_area

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        parts = sipmask_modules(cfg, build_backbone(cfg))
        sp = cfg.MODEL.SIPMASK
        return {
            **parts,
            "rescoring": MaskRescoring(cfg.MODEL.FCOS.NUM_CLASSES)
            if sp.RESCORING.ENABLED
            else None,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "inference_amp": inference_amp_from_config(cfg),
            "mask_iou_loss_weight": sp.LOSS_WEIGHTS.MASK_IOU,
            "rescoring_min_iou": sp.RESCORING.MIN_IOU,
            "rescoring_min_gt_area": sp.RESCORING.MIN_GT_AREA,
        }

    @property
    def num_classes(self) -> int:
        return self.fcos.num_classes

    def forward(self, batched_inputs: list[dict]):
        if self.training:
            return self.losses(batched_inputs)
        return [{"instances": self.inference_frame(x)} for x in batched_inputs]

    # ----------------------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """The loss dict of a batch of training images (see the class docstring)."""
        images = self.preprocess([x["image"] for x in batched_inputs])
        gts = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        levels = [features[f] for f in self.fcos.in_features]
        head = self.head_outputs(levels)
        losses, targets = self.fcos.losses(head, self.fcos.locations(levels), gts)
        pos = targets.positive(self.fcos.num_classes)
        masks = self.positive_masks(
            images, head, gts, targets, pos, self.positive_boxes(head, targets, pos)
        )
        losses["loss_mask"] = self.mask_loss_weight * mask_loss(
            masks.windows, masks.targets, masks.weights
        )
        if self.rescoring is not None:
            losses["loss_mask_iou"] = self.mask_iou_loss_weight * self._rescoring_loss(
                masks, targets
            )
        return losses

    def _rescoring_loss(self, masks: PositiveMasks, targets: FCOSTargets) -> torch.Tensor:
        """The re-scoring loss on the positives' detached soft masks (whole basis map) against
        their IoU with their GT masks."""
        height, width = masks.gt_masks.shape[-2:]
        probs = paste_windows(masks.windows, height, width).detach()
        gt = masks.gt_masks[targets.gt_inds[masks.pos]]
        ious, weights = mask_iou_targets(
            probs,
            gt,
            self.mask_thresh,
            min_gt_area=self.rescoring_min_gt_area,
            min_iou=self.rescoring_min_iou,
        )
        labels = targets.labels[masks.pos]
        predicted = self.rescoring(probs)[torch.arange(len(labels)), labels]
        return mask_iou_loss(predicted, ious, weights)

    # ---------------------------------------------------------------------------- inference
    def inference(self, image: torch.Tensor, output_size: tuple[int, int]) -> Instances:
        """Detections on the input with masks at ``output_size`` (and, with re-scoring,
        ``box_scores``; ``scores`` re-scored)."""
        head, bases, _ = split_frame_outputs(self.graphs()["frame"](image), len(self.fcos.strides))
        if self.rescoring is not None:
            self.rescoring.check_map_size(*bases.shape[-2:])
        in_size = tuple(image.shape[-2:])
        # with MODEL.FCOS.NMS_IOU_OFFSET_UNIT "output" the NMS offset is counted at that size
        det = self.fcos.detect(head, [in_size], [output_size])[0]
        det.pred_masks = self.detection_masks(
            head["coefficients"], bases, det, in_size, output_size
        )
        if self.rescoring is not None:
            det = self._rescore(det, head["coefficients"], bases)
        return det

    def _rescore(self, det: Instances, maps: list[torch.Tensor], bases: torch.Tensor) -> Instances:
        """``box_scores`` ← ``scores``; ``scores`` ← predicted mask IoU × detection score."""
        det.box_scores = det.scores
        if not len(det):
            return det
        size = self.sub_regions
        windows = blend(
            bases,
            0,
            det.pred_boxes.tensor / BASIS_STRIDE,
            self.detection_coefficients(maps, det),
            size,
            size,
            cell_rule=self.cell_rule,
        )
        probs = paste_windows(windows, *bases.shape[-2:])
        ious = self.rescoring(probs)[torch.arange(len(det)), det.pred_classes]
        det.scores = ious * det.scores
        return det

    # ------------------------------------------------------------------------------- export
    def export_graphs(self) -> dict[str, nn.Module]:
        return {"frame": FrameGraph(self)}

    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"frame": (images[0].to(self.device).float(),)}

    def sparse_modules(self) -> list[str]:
        # the frame graph computes every map; the re-scoring net runs on the assembled masks
        return ["rescoring"] if self.rescoring is not None else []


def check_choices(cell_rule: str, mask_resize: str) -> None:
    """Raise ValueError naming the key when ``MODEL.SIPMASK.CELL_RULE``/``MASK_RESIZE`` is
    not one of its choices."""
    for name, value, choices in (
        ("CELL_RULE", cell_rule, CELL_RULES),
        ("MASK_RESIZE", mask_resize, MASK_RESIZES),
    ):
        if value not in choices:
            raise ValueError(f"MODEL.SIPMASK.{name} '{value}' is not one of {choices}")


def sipmask_modules(cfg: CfgNode, backbone: Backbone) -> dict:
    """The constructor arguments of :class:`SipMaskParts`' modules and settings from
    ``MODEL.FCOS`` and ``MODEL.SIPMASK``, over ``backbone``: ``backbone``, ``fcos``,
    ``feature_align``, ``coefficients``, ``basis`` and the mask settings."""
    shapes = backbone.output_shape()
    fcos = FCOS(cfg, shapes)
    channels = shapes[fcos.in_features[0]].channels
    sp = cfg.MODEL.SIPMASK
    return {
        "backbone": backbone,
        "fcos": fcos,
        "feature_align": FeatureAlign(
            channels, sp.DEFORM_GROUPS, cfg.MODEL.FCOS.NORM, bias=sp.FEATURE_ALIGN_BIAS
        )
        if sp.FEATURE_ALIGN
        else None,
        "coefficients": SpatialCoefficients(
            channels, sp.SUB_REGIONS, sp.NUM_BASES, init_std=sp.COEFFICIENTS_INIT_STD
        ),
        "basis": BasisModule(
            channels * sp.BASIS_LEVELS,
            sp.BASIS_DIM,
            sp.NUM_BASES,
            upsample=fcos.strides[0] // BASIS_STRIDE,
        ),
        "basis_levels": sp.BASIS_LEVELS,
        "mask_align_weight": sp.MASK_ALIGN_WEIGHT,
        "max_mask_pos_per_image": sp.MAX_MASK_POS_PER_IMAGE,
        "mask_loss_weight": sp.LOSS_WEIGHTS.MASK,
        "mask_thresh": sp.MASK_THRESH,
        "align_iou_offset": sp.ALIGN_IOU_OFFSET,
        "cell_rule": sp.CELL_RULE,
        "mask_resize": sp.MASK_RESIZE,
    }
