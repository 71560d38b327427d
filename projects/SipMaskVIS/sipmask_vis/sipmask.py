"""SipMask-VIS: FCOS with feature alignment, spatial coefficients over basis masks and an
embedding track branch, as one META_ARCH."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage
from torch import nn

from vis_d2.modeling.common import box_iou_with_offset, cap_per_image, read_at_centres
from vis_d2.modeling.fcos import (
    FCOS,
    FCOSTargets,
    flatten_levels,
)
from vis_d2.modeling.mask_windows import (
    CELL_RULES,
    MASK_RESIZES,
    assemble_masks,
    blend,
    gt_masks_on_basis,
    gt_windows,
    mask_loss,
)
from vis_d2.modeling.meta_arch import VISModel, inference_amp_from_config
from vis_d2.modeling.tracking import Tracker, build_tracker

from .basis import BasisModule
from .feature_align import FeatureAlign
from .graphs import FrameGraph, split_frame_outputs
from .losses import alignment_weights, jitter_boxes, track_loss
from .spatial_coefficients import SpatialCoefficients
from .track_head import TrackHead

__all__ = ["SipMaskVIS"]

BASIS_STRIDE = 2  # the basis masks' stride in input pixels
TRACK_LOSS_AVERAGES = ("mean", "per_image")


def _boxes_of(locations: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """(N, 2) points and (N, 4) distances in px → (N, 4) XYXY boxes."""
    return torch.cat((locations - ltrb[:, :2], locations + ltrb[:, 2:]), dim=1)


@META_ARCH_REGISTRY.register()
class SipMaskVIS(VISModel):
    """SipMask-VIS (Cao et al., ECCV 2020: SipMask, with a MaskTrack R-CNN-style track branch
    for YouTube-VIS) on a ResNet-FPN backbone.

    Per frame: the FCOS towers; FeatureAlign resamples the class tower towards the regressed
    box; class logits and S × S spatial coefficients come from the aligned tower, boxes and
    centerness from the box tower; basis masks at stride 2 from the box towers of P3-P5; an
    embedding map at stride 8 from a track tower on P3-P5. A detection's mask is assembled on
    its box window (:func:`vis_d2.modeling.mask_windows.blend` on the S × S grid: CropSplit);
    detections are associated across frames by :class:`vis_d2.modeling.tracking
    .EmbeddingTracker` (``MODEL.TRACKER.NAME``) from the embeddings at their box centres.

    Training input and output as for every :class:`VISModel`; the losses are FCOS's, the mask
    BCE weighted by the mask alignment weights, and the track cross-entropy of the current
    frame's positives against the reference frame's (jittered) instances.
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
        track_head: TrackHead,
        tracker: Tracker,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        inference_amp: bool = False,
        basis_levels: int = 3,
        track_levels: int = 3,
        ref_box_jitter: float = 0.05,
        mask_align_weight: bool = True,
        max_mask_pos_per_image: int = 0,
        ref_frame_losses: bool = False,
        mask_loss_weight: float = 1.0,
        track_loss_weight: float = 1.0,
        mask_thresh: float = 0.5,
        align_iou_offset: float = 0.0,
        track_min_box_area: bool = False,
        track_loss_average: str = "mean",
        cell_rule: str = "centre",
        mask_resize: str = "crop_then_resize",
    ):
        super().__init__(pixel_mean, pixel_std, inference_amp=inference_amp)
        for name, value, choices in (
            ("TRACK_LOSS_AVERAGE", track_loss_average, TRACK_LOSS_AVERAGES),
            ("CELL_RULE", cell_rule, CELL_RULES),
            ("MASK_RESIZE", mask_resize, MASK_RESIZES),
        ):
            if value not in choices:
                raise ValueError(f"MODEL.SIPMASK.{name} '{value}' is not one of {choices}")
        num_levels = len(fcos.in_features)
        for name, value in (("BASIS_LEVELS", basis_levels), ("TRACK_LEVELS", track_levels)):
            if not 1 <= value <= num_levels:
                raise ValueError(
                    f"MODEL.SIPMASK.{name} {value} must be between 1 and the {num_levels} "
                    "FCOS levels"
                )
        self.backbone = backbone
        self.fcos = fcos
        self.feature_align = feature_align
        self.coefficients = coefficients
        self.basis = basis
        self.track_head = track_head
        self.tracker = tracker
        self.basis_levels = basis_levels
        self.track_levels = track_levels
        self.ref_box_jitter = ref_box_jitter
        self.mask_align_weight = mask_align_weight
        self.max_mask_pos_per_image = max_mask_pos_per_image
        self.ref_frame_losses = ref_frame_losses
        self.mask_loss_weight = mask_loss_weight
        self.track_loss_weight = track_loss_weight
        self.mask_thresh = mask_thresh
        self.align_iou_offset = align_iou_offset
        self.track_min_box_area = track_min_box_area
        self.track_loss_average = track_loss_average
        self.cell_rule = cell_rule
        self.mask_resize = mask_resize

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        fcos = FCOS(cfg, shapes)
        channels = shapes[fcos.in_features[0]].channels
        sp = cfg.MODEL.SIPMASK
        norm = cfg.MODEL.FCOS.NORM
        return {
            "backbone": backbone,
            "fcos": fcos,
            "feature_align": FeatureAlign(channels, sp.DEFORM_GROUPS, norm)
            if sp.FEATURE_ALIGN
            else None,
            "coefficients": SpatialCoefficients(channels, sp.SUB_REGIONS, sp.NUM_BASES),
            "basis": BasisModule(
                channels * sp.BASIS_LEVELS,
                sp.BASIS_DIM,
                sp.NUM_BASES,
                upsample=fcos.strides[0] // BASIS_STRIDE,
            ),
            "track_head": TrackHead(channels, sp.TRACK_LEVELS, sp.TRACK_CONVS, sp.EMBED_DIM, norm),
            "tracker": build_tracker(cfg),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "inference_amp": inference_amp_from_config(cfg),
            "basis_levels": sp.BASIS_LEVELS,
            "track_levels": sp.TRACK_LEVELS,
            "ref_box_jitter": sp.REF_BOX_JITTER,
            "mask_align_weight": sp.MASK_ALIGN_WEIGHT,
            "max_mask_pos_per_image": sp.MAX_MASK_POS_PER_IMAGE,
            "ref_frame_losses": sp.REF_FRAME_LOSSES,
            "mask_loss_weight": sp.LOSS_WEIGHTS.MASK,
            "track_loss_weight": sp.LOSS_WEIGHTS.TRACK,
            "mask_thresh": sp.MASK_THRESH,
            "align_iou_offset": sp.ALIGN_IOU_OFFSET,
            "track_min_box_area": sp.TRACK_MIN_BOX_AREA,
            "track_loss_average": sp.TRACK_LOSS_AVERAGE,
            "cell_rule": sp.CELL_RULE,
            "mask_resize": sp.MASK_RESIZE,
        }

    @property
    def num_classes(self) -> int:
        return self.fcos.num_classes

    @property
    def sub_regions(self) -> int:
        return self.coefficients.sub_regions

    @property
    def embedding_stride(self) -> int:
        return self.fcos.strides[0]

    # ----------------------------------------------------------------------- dense outputs
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

    def embeddings(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The track embedding map (B, D, H_0, W_0) from the FCOS levels."""
        return self.track_head(features[: self.track_levels])

    # ----------------------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        num = len(batched_inputs)
        images, gts = self.preprocess_pairs(batched_inputs)
        features = self.backbone(images.tensor)
        levels = [features[f] for f in self.fcos.in_features]
        learn = 2 * num if self.ref_frame_losses else num  # the frames with detection losses
        head = self.head_outputs([f[:learn] for f in levels])
        locations = self.fcos.locations(levels)
        losses, targets = self.fcos.losses(head, locations, gts[:learn])
        pos = targets.positive(self.fcos.num_classes)
        boxes = _boxes_of(
            targets.locations[pos],
            flatten_levels(head["reg"])[pos].detach() * targets.strides[pos, None],
        )
        losses["loss_mask"] = self.mask_loss_weight * self._mask_loss(
            images, head, gts[:learn], targets, pos, boxes
        )
        is_key = targets.im_inds[pos] < num
        if self.track_min_box_area:
            is_key &= _basis_area(boxes) > 1
        losses["loss_track"] = self.track_loss_weight * self._track_loss(
            self.embeddings(levels), gts, num, targets, pos[is_key], boxes[is_key]
        )
        return losses

    def _mask_loss(
        self,
        images: ImageList,
        head: dict[str, list[torch.Tensor]],
        gts: list[Instances],
        targets: FCOSTargets,
        pos: torch.Tensor,
        boxes: torch.Tensor,
    ) -> torch.Tensor:
        """The masks of the positives, assembled on their detached predicted boxes."""
        keep = cap_per_image(targets.im_inds[pos], self.max_mask_pos_per_image)
        pos, boxes = pos[keep], boxes[keep]
        # boxes with at most one basis pixel of area carry no mask to learn
        large = _basis_area(boxes) > 1
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
        return mask_loss(windows, gt_windows(gt_masks, gt_inds, windows), weights)

    def _track_loss(
        self,
        embeddings: torch.Tensor,
        gts: list[Instances],
        num: int,
        targets: FCOSTargets,
        pos: torch.Tensor,
        boxes: torch.Tensor,
    ) -> torch.Tensor:
        """Each current frame's positives, read at their predicted box centres, matched against
        the instances of its reference frame, read at their jittered GT box centres."""
        gt_ids = [g.gt_ids for g in gts]
        offsets = [0]
        for g in gts:
            offsets.append(offsets[-1] + len(g))
        im_inds = targets.im_inds[pos]
        current = read_at_centres(embeddings, im_inds, boxes, self.embedding_stride)
        losses, accuracies = [], []
        for i in range(num):
            mine = im_inds == i
            ref = gts[num + i]
            if not bool(mine.any()) or len(ref) == 0:
                continue
            ref_boxes = jitter_boxes(ref.gt_boxes.tensor, self.ref_box_jitter)
            ref_emb = read_at_centres(
                embeddings,
                torch.full((len(ref),), num + i, device=self.device),
                ref_boxes,
                self.embedding_stride,
            )
            ids = gt_ids[i][targets.gt_inds[pos[mine]] - offsets[i]]
            match = ids[:, None] == gt_ids[num + i][None]
            target = torch.where(match.any(dim=1), match.float().argmax(dim=1) + 1, 0)
            loss, accuracy = track_loss(current[mine], ref_emb, target)
            losses.append(loss)
            accuracies.append(accuracy)
        if not losses:  # still connected to the track branch, as DDP needs
            return embeddings.sum() * 0
        _log("sipmask/match_acc", torch.stack(accuracies).mean())
        if self.track_loss_average == "per_image":
            return torch.stack(losses).sum() / num
        return torch.stack(losses).mean()

    # ---------------------------------------------------------------------------- inference
    def reset(self) -> None:
        """Start a new video: empty the tracker's memory and restart track ids at 0."""
        self.tracker.reset()

    def inference(self, image: torch.Tensor, output_size: tuple[int, int]) -> Instances:
        """Also the ``embeddings`` (N, D) the tracker matches, read at the box centres."""
        head, bases, embedding_map = split_frame_outputs(
            self.graphs()["frame"](image), len(self.fcos.strides)
        )
        (in_h, in_w), (out_h, out_w) = image.shape[-2:], output_size
        det = self.fcos.detect(head, [(in_h, in_w)])[0]
        boxes = det.pred_boxes.tensor
        im_inds = torch.zeros_like(det.pred_classes)
        if len(det):
            coef = self.detection_coefficients(head["coefficients"], det)
            size = self.sub_regions
            masks = assemble_masks(
                bases,
                im_inds,
                boxes / BASIS_STRIDE,
                coef,
                size,
                size,
                stride=BASIS_STRIDE,
                input_size=(in_h, in_w),
                output_size=(out_h, out_w),
                threshold=self.mask_thresh,
                cell_rule=self.cell_rule,
                resize=self.mask_resize,
            )
        else:
            masks = torch.zeros(0, out_h, out_w, dtype=torch.bool, device=self.device)
        det.pred_masks = masks
        det.embeddings = read_at_centres(embedding_map, im_inds, boxes, self.embedding_stride)
        return det

    def detection_coefficients(self, maps: list[torch.Tensor], det: Instances) -> torch.Tensor:
        """The (N, S², K) coefficients of one frame's detections, read from the per-level
        coefficient maps (1, S²·K, H_l, W_l) at their cells (``fpn_levels``, ``loc_inds``)."""
        sizes = torch.tensor([0] + [m[0, 0].numel() for m in maps], device=det.loc_inds.device)
        return self.coefficients.read(maps, sizes.cumsum(0)[det.fpn_levels] + det.loc_inds)

    # ------------------------------------------------------------------------------- export
    def export_graphs(self) -> dict[str, nn.Module]:
        return {"frame": FrameGraph(self)}

    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"frame": (images[0].to(self.device).float(),)}

    def sparse_modules(self) -> list[str]:
        return []  # the frame graph computes every map; Python only reads them


def _basis_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N,) areas of (N, 4) XYXY input-pixel boxes in basis-map pixels."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / BASIS_STRIDE**2


def _log(name: str, value: torch.Tensor) -> None:
    """A scalar into the current EventStorage, when training runs in one."""
    try:
        storage = get_event_storage()
    except AssertionError:  # no storage: a loss computed outside a trainer
        return
    storage.put_scalar(name, float(value))
