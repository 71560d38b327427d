"""SipMask-VIS: FCOS with feature alignment, spatial coefficients over basis masks and an
embedding track branch, as one META_ARCH."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from sipmask.basis import BasisModule
from sipmask.feature_align import FeatureAlign
from sipmask.sipmask import (
    SipMaskParts,
    basis_area,
    check_choices,
    sipmask_modules,
)
from sipmask.spatial_coefficients import SpatialCoefficients
from torch import nn

from vis_d2.modeling.common import read_at_centres
from vis_d2.modeling.fcos import FCOS, FCOSTargets
from vis_d2.modeling.mask_windows import mask_loss
from vis_d2.modeling.meta_arch import VISModel, inference_amp_from_config
from vis_d2.modeling.tracking import Tracker, build_tracker

from .graphs import FrameGraph, split_frame_outputs
from .losses import jitter_boxes, track_loss
from .track_head import TrackHead

__all__ = ["SipMaskVIS"]

TRACK_LOSS_AVERAGES = ("mean", "per_image")


@META_ARCH_REGISTRY.register()
class SipMaskVIS(SipMaskParts, VISModel):
    """SipMask-VIS (Cao et al., ECCV 2020: SipMask, with a MaskTrack R-CNN-style track branch
    for YouTube-VIS) on a ResNet-FPN backbone: the image model :class:`sipmask.SipMask`'s
    parts (:class:`sipmask.SipMaskParts`) plus a track head and a tracker.

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
        check_choices(cell_rule, mask_resize)
        if track_loss_average not in TRACK_LOSS_AVERAGES:
            raise ValueError(
                f"MODEL.SIPMASK.TRACK_LOSS_AVERAGE '{track_loss_average}' is not one of "
                f"{TRACK_LOSS_AVERAGES}"
            )
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
        sp = cfg.MODEL.SIPMASK
        if sp.RESCORING.ENABLED:
            raise ValueError("MODEL.SIPMASK.RESCORING is SipMask++'s, not part of SipMaskVIS")
        parts = sipmask_modules(cfg, build_backbone(cfg))
        channels = parts["coefficients"].conv.in_channels
        return {
            **parts,
            "track_head": TrackHead(
                channels, sp.TRACK_LEVELS, sp.TRACK_CONVS, sp.EMBED_DIM, cfg.MODEL.FCOS.NORM
            ),
            "tracker": build_tracker(cfg),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "inference_amp": inference_amp_from_config(cfg),
            "track_levels": sp.TRACK_LEVELS,
            "ref_box_jitter": sp.REF_BOX_JITTER,
            "ref_frame_losses": sp.REF_FRAME_LOSSES,
            "track_loss_weight": sp.LOSS_WEIGHTS.TRACK,
            "track_min_box_area": sp.TRACK_MIN_BOX_AREA,
            "track_loss_average": sp.TRACK_LOSS_AVERAGE,
        }

    @property
    def num_classes(self) -> int:
        return self.fcos.num_classes

    @property
    def embedding_stride(self) -> int:
        return self.fcos.strides[0]

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
        boxes = self.positive_boxes(head, targets, pos)
        masks = self.positive_masks(images, head, gts[:learn], targets, pos, boxes)
        losses["loss_mask"] = self.mask_loss_weight * mask_loss(
            masks.windows, masks.targets, masks.weights
        )
        is_key = targets.im_inds[pos] < num
        if self.track_min_box_area:
            is_key &= basis_area(boxes) > 1
        losses["loss_track"] = self.track_loss_weight * self._track_loss(
            self.embeddings(levels), gts, num, targets, pos[is_key], boxes[is_key]
        )
        return losses

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
        det.pred_masks = self.detection_masks(
            head["coefficients"], bases, det, (in_h, in_w), (out_h, out_w)
        )
        im_inds = torch.zeros_like(det.pred_classes)
        det.embeddings = read_at_centres(
            embedding_map, im_inds, det.pred_boxes.tensor, self.embedding_stride
        )
        return det

    # ------------------------------------------------------------------------------- export
    def export_graphs(self) -> dict[str, nn.Module]:
        return {"frame": FrameGraph(self)}

    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"frame": (images[0].to(self.device).float(),)}

    def sparse_modules(self) -> list[str]:
        return []  # the frame graph computes every map; Python only reads them


def _log(name: str, value: torch.Tensor) -> None:
    """A scalar into the current EventStorage, when training runs in one."""
    try:
        storage = get_event_storage()
    except AssertionError:  # no storage: a loss computed outside a trainer
        return
    storage.put_scalar(name, float(value))
