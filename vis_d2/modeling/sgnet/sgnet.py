"""SG-Net: FCOS + spatial-granularity mask head + centerness-movement tracking, as one META_ARCH."""

from __future__ import annotations

import logging

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList, Instances
from torch import nn

from ..common import cap_per_image
from ..fcos import FCOS, FCOSOutputs, flatten_levels
from ..mask_windows import gt_masks_on_basis, gt_windows, mask_loss
from ..meta_arch import VISModel, inference_amp_from_config
from ..tracking import Tracker, build_tracker
from .base_mask import BaseMaskModule
from .blender import instance_masks, instance_windows
from .graphs import FrameGraph, MaskGraph, MovementGraph, split_frame_outputs
from .movement_head import MovementHead, movement_loss, movement_targets
from .spatial_attention import SpatialAttention

__all__ = ["SGNet"]

logger = logging.getLogger(__name__)

BASE_STRIDE = 2  # the base masks' stride in input pixels


@META_ARCH_REGISTRY.register()
class SGNet(VISModel):
    """SG-Net (Liu et al., CVPR 2021) on a ResNet-FPN backbone.

    Training input (from ``YTVISDatasetMapper``): per sample a key frame ``image``/``instances``
    and a reference frame ``ref_image``/``ref_instances`` of the same video. Detection and mask
    losses run on both frames, the movement loss on the later frame of each pair.

    Inference input (from ``YTVISTestMapper``): per video ``frames``; the output per video is
    ``{"frames": [Instances]}`` with ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks``
    (bool, original resolution) and ``track_ids``. For streaming use, :meth:`reset` then
    :meth:`inference_frame` frame after frame.
    """

    num_classes_key = "MODEL.FCOS.NUM_CLASSES"
    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        fcos: FCOS,
        base_mask: BaseMaskModule,
        sam: SpatialAttention,
        movement_head: MovementHead | None,
        tracker: Tracker,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        inference_amp: bool = False,
        max_div: int = 6,
        unit: float = 50.0,
        master_grid: int = 6,
        blender: str = "subregion",
        mask_box: str = "pred",
        max_mask_pos_per_image: int = 100,
        mask_loss_weight: float = 1.0,
        track_loss_weight: float = 1.0,
        mask_thresh: float = 0.5,
    ):
        super().__init__(pixel_mean, pixel_std, inference_amp=inference_amp)
        if mask_box not in ("pred", "gt"):
            raise ValueError(f"MODEL.SGNET.MASK_BOX must be 'pred' or 'gt', not '{mask_box}'")
        self.backbone = backbone
        self.fcos = fcos
        self.base_mask = base_mask
        self.sam = sam
        self.movement_head = movement_head
        self.tracker = tracker
        self.max_div = max_div
        self.unit = unit
        self.master_grid = master_grid
        self.blender = blender
        self.mask_box = mask_box
        self.max_mask_pos_per_image = max_mask_pos_per_image
        self.mask_loss_weight = mask_loss_weight
        self.track_loss_weight = track_loss_weight
        self.mask_thresh = mask_thresh
        self._prev_towers: list[torch.Tensor] | None = None

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        fcos = FCOS(cfg, shapes)
        level_shapes = [shapes[f] for f in cfg.MODEL.FCOS.IN_FEATURES]
        sg = cfg.MODEL.SGNET
        return {
            "backbone": backbone,
            "fcos": fcos,
            "base_mask": BaseMaskModule(cfg, shapes),
            "sam": SpatialAttention(cfg, level_shapes),
            "movement_head": MovementHead(cfg, level_shapes) if sg.TRACK.ON else None,
            "tracker": build_tracker(cfg),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "inference_amp": inference_amp_from_config(cfg),
            "max_div": sg.SAM.MAX_DIV,
            "unit": sg.SAM.UNIT,
            "master_grid": sg.SAM.MASTER_GRID,
            "blender": sg.BLENDER,
            "mask_box": sg.MASK_BOX,
            "max_mask_pos_per_image": sg.MAX_MASK_POS_PER_IMAGE,
            "mask_loss_weight": sg.LOSS_WEIGHTS.MASK,
            "track_loss_weight": sg.LOSS_WEIGHTS.TRACK,
            "mask_thresh": sg.MASK_THRESH,
        }

    @property
    def num_classes(self) -> int:
        return self.fcos.num_classes

    def _masks(
        self,
        features: dict[str, torch.Tensor],
        bases: torch.Tensor,
        im_inds: torch.Tensor,
        levels: torch.Tensor,
        loc_inds: torch.Tensor,
        boxes: torch.Tensor,
    ):
        """Mask windows of N instances read at FCOS cells, for (N, 4) boxes in input px."""
        towers = self.sam.forward_towers([features[f] for f in self.fcos.in_features])
        coef = self.sam.coefficients(towers, im_inds, levels, loc_inds)
        return instance_windows(
            bases,
            coef,
            im_inds,
            boxes,
            max_div=self.max_div,
            unit=self.unit,
            master_grid=self.master_grid,
            mode=self.blender,
            base_stride=BASE_STRIDE,
        )

    # ----------------------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        num = len(batched_inputs)
        images, gts = self.preprocess_pairs(batched_inputs)
        features = self.backbone(images.tensor)
        _, losses, out = self.fcos(images, features, gts)
        losses["loss_mask"] = self.mask_loss_weight * self._mask_loss(images, features, gts, out)
        if self.movement_head is not None:
            frame_idx = [x["frame_idx"] for x in batched_inputs]
            ref_idx = [x["ref_frame_idx"] for x in batched_inputs]
            later = [i if frame_idx[i] >= ref_idx[i] else i + num for i in range(num)]
            earlier = [i + num if frame_idx[i] >= ref_idx[i] else i for i in range(num)]
            losses["loss_track"] = self.track_loss_weight * self._track_loss(
                gts, out, later, earlier
            )
        return losses

    def _mask_loss(self, images: ImageList, features, gts: list[Instances], out: FCOSOutputs):
        t = out.targets
        pos = t.positive(self.fcos.num_classes)
        pos = pos[cap_per_image(t.im_inds[pos], self.max_mask_pos_per_image)]
        gt_boxes = torch.cat([g.gt_boxes.tensor for g in gts])
        if self.mask_box == "gt":
            boxes = gt_boxes[t.gt_inds[pos]]
        else:  # the detached predicted box of each positive location
            ltrb = flatten_levels(out.head["reg"])[pos].detach() * t.strides[pos, None]
            xy = t.locations[pos]
            boxes = torch.cat((xy - ltrb[:, :2], xy + ltrb[:, 2:]), dim=1)
        # boxes with at most one base-map pixel of area carry no mask to learn
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / BASE_STRIDE**2
        pos, boxes = pos[area > 1], boxes[area > 1]
        bases = self.base_mask(features)
        windows = self._masks(
            features, bases, t.im_inds[pos], t.levels[pos], t.loc_inds[pos], boxes
        )
        height, width = images.tensor.shape[-2:]
        gt_masks = gt_masks_on_basis(gts, height, width, BASE_STRIDE)
        return mask_loss(windows, gt_windows(gt_masks, t.gt_inds[pos], windows))

    def _track_loss(
        self, gts: list[Instances], out: FCOSOutputs, later: list[int], earlier: list[int]
    ) -> torch.Tensor:
        t = out.targets
        pos = t.positive(self.fcos.num_classes)
        is_later = torch.zeros(len(gts), dtype=torch.bool, device=self.device)
        is_later[later] = True
        pos = pos[is_later[t.im_inds[pos]]]
        towers = self.movement_head.forward_towers(
            [bt[later] for bt in out.head["bbox_towers"]],
            [bt[earlier] for bt in out.head["bbox_towers"]],
        )
        pair_of = torch.full((len(gts),), -1, dtype=torch.int64, device=self.device)
        pair_of[later] = torch.arange(len(later), device=self.device)
        pred = self.movement_head.predict(
            towers, pair_of[t.im_inds[pos]], t.levels[pos], t.loc_inds[pos]
        )
        # each positive's instance centre now and, found by instance id, in the earlier frame
        gt_boxes = torch.cat([g.gt_boxes.tensor for g in gts])
        gt_ids = torch.cat([g.gt_ids for g in gts])
        gt_image = torch.repeat_interleave(
            torch.arange(len(gts), device=self.device),
            torch.tensor([len(g) for g in gts], device=self.device),
        )
        centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        cur = t.gt_inds[pos]
        prev_image = torch.tensor(earlier, device=self.device)[pair_of[t.im_inds[pos]]]
        match = (gt_ids[cur, None] == gt_ids[None]) & (prev_image[:, None] == gt_image[None])
        rows, cols = match.nonzero(as_tuple=True)  # ids are unique within a frame: one at most
        prev_centres = centres.new_full((len(cur), 2), float("nan"))  # nan: absent there
        prev_centres[rows] = centres[cols]
        target, valid = movement_targets(centres[cur], prev_centres, t.strides[pos])
        return movement_loss(pred, target, valid)

    # ---------------------------------------------------------------------------- inference
    def reset(self) -> None:
        """Start a new video: forget the previous frame and restart track ids at 0."""
        self.tracker.reset()
        self._prev_towers = None

    def inference(self, image: torch.Tensor, output_size: tuple[int, int]) -> Instances:
        graphs = self.graphs()
        head, features = split_frame_outputs(graphs["frame"](image), len(self.fcos.strides))
        (in_h, in_w), (out_h, out_w) = image.shape[-2:], output_size
        det = self.fcos.detect(head, [(in_h, in_w)])[0]
        im_inds = torch.zeros_like(det.pred_classes)
        if len(det):
            *towers, bases = graphs["mask"](*features)
            coef = self.sam.coefficients(towers, im_inds, det.fpn_levels, det.loc_inds)
            masks = instance_masks(
                bases,
                coef,
                im_inds,
                det.pred_boxes.tensor,
                max_div=self.max_div,
                unit=self.unit,
                master_grid=self.master_grid,
                mode=self.blender,
                base_stride=BASE_STRIDE,
                input_size=(in_h, in_w),
                output_size=(out_h, out_w),
                threshold=self.mask_thresh,
            )
        else:
            masks = torch.zeros(0, out_h, out_w, dtype=torch.bool, device=self.device)
        displacements = None
        if self.movement_head is not None:
            cur = head["bbox_towers"]
            if self._prev_towers is not None and len(det):
                towers = list(graphs["movement"](*cur, *self._prev_towers))
                strides = torch.tensor(self.fcos.strides, device=self.device)[det.fpn_levels]
                displacements = (
                    self.movement_head.predict(towers, im_inds, det.fpn_levels, det.loc_inds)
                    * strides[:, None]
                )
            self._prev_towers = cur
        det.pred_masks = masks
        if displacements is not None:
            det.displacements = displacements
        return det

    # ------------------------------------------------------------------------------- export
    def export_graphs(self) -> dict[str, nn.Module]:
        graphs = {"frame": FrameGraph(self), "mask": MaskGraph(self)}
        if self.movement_head is not None:
            graphs["movement"] = MovementGraph(self)
        return graphs

    @torch.no_grad()
    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        frame = FrameGraph(self)
        num_levels = len(self.fcos.strides)
        first = images[0].to(self.device).float()
        head, features = split_frame_outputs(frame(first), num_levels)
        inputs = {"frame": (first,), "mask": tuple(features)}
        if self.movement_head is not None:
            previous = current = head["bbox_towers"]
            if len(images) > 1:
                later = frame(images[1].to(self.device).float())
                current = split_frame_outputs(later, num_levels)[0]["bbox_towers"]
            inputs["movement"] = (*current, *previous)
        return inputs

    def sparse_modules(self) -> list[str]:
        # the SAM's second conv and the movement head's 1x1 conv run at the detections only
        return ["sam"] + (["movement_head"] if self.movement_head is not None else [])
