"""STMask's frame-level network as one META_ARCH: ResNet-FPN, protonet, the kernel-shaped
anchor head (FCA) with feature calibration (FCB), and its losses."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from torch import nn

from vis_d2.modeling.mask_windows import gt_masks_on_basis
from vis_d2.modeling.meta_arch import VISModel, inference_amp_from_config
from vis_d2.modeling.tracking import MemoryTracker, Tracker, build_tracker

from .anchors import KernelAnchorGenerator
from .criterion import PROTO_STRIDE, STMaskCriterion
from .graphs import FrameGraph, split_frame_outputs
from .losses import box_coder
from .mask_crop import MASK_CROP_RULES
from .postprocessing import CLIP_BOXES, STMaskDetector, prototype_masks
from .prediction_head import PredictionHead
from .protonet import ProtoNet
from .temporal_fusion import (
    TemporalNet,
    correlation,
    cross_frame_masks,
    shift_boxes,
    shift_coefficients,
    temporal_features,
)

__all__ = ["STMask"]


@META_ARCH_REGISTRY.register()
class STMask(VISModel):
    """STMask (Li et al., CVPR 2021) on a ResNet-FPN P3–P7 backbone.

    Per frame: the prediction head gives, for each of the three kernel-shaped anchors of a
    location, softmax class logits (background first), SSD box deltas, a tanh centerness, an
    L2-normalised track embedding and mask coefficients; the protonet gives prototypes at
    stride 4 from P3. A detection's mask is σ(prototypes · tanh(coefficients)) inside its box,
    assembled on the box window (:func:`vis_d2.modeling.mask_windows.blend` with one cell).

    Training: the losses of :class:`~.criterion.STMaskCriterion` (frame, track and temporal
    losses); inference: :class:`~.postprocessing.STMaskDetector`, then tracking with the
    memory that temporal fusion carries from frame to frame (:meth:`inference`).
    """

    num_classes_key = "MODEL.STMASK.NUM_CLASSES"
    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        in_features: list[str],
        anchor_generator: KernelAnchorGenerator,
        head: PredictionHead,
        protonet: ProtoNet,
        temporal_net: TemporalNet | None,
        tracker: Tracker,
        coder: Box2BoxTransform,
        num_classes: int,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        criterion: STMaskCriterion,
        detector: STMaskDetector,
        inference_amp: bool = False,
        mask_thresh: float = 0.5,
        corr_feature: str = "p4",
        corr_patch: int = 11,
        mask_crop: tuple[str, float] = ("centre", 0),
        clip_boxes: str = "all",
    ):
        super().__init__(pixel_mean, pixel_std, inference_amp=inference_amp)
        if clip_boxes not in CLIP_BOXES:
            raise ValueError(
                f"MODEL.STMASK.TEST.CLIP_BOXES {clip_boxes!r} is not one of {CLIP_BOXES}"
            )
        if mask_crop[0] not in MASK_CROP_RULES:
            raise ValueError(
                f"MODEL.STMASK.MASK_CROP.RULE {mask_crop[0]!r} is not one of {MASK_CROP_RULES}"
            )
        if corr_feature not in in_features:
            raise ValueError(
                f"MODEL.STMASK.TF.CORR_FEATURE {corr_feature} is not among {in_features}"
            )
        self.backbone = backbone
        self.in_features = in_features
        self.anchor_generator = anchor_generator
        self.head = head
        self.protonet = protonet
        self.temporal_net = temporal_net
        self.tracker = tracker
        self.coder = coder
        self._num_classes = num_classes
        self.criterion = criterion
        self.detector = detector
        self.mask_thresh = mask_thresh
        self.corr_feature = corr_feature
        self.corr_patch = corr_patch
        self.mask_crop = mask_crop
        self.clip_boxes = clip_boxes
        self._previous = None

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        st = cfg.MODEL.STMASK
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        missing = [f for f in st.IN_FEATURES if f not in shapes]
        if missing:
            raise ValueError(f"MODEL.STMASK.IN_FEATURES {missing} are not among {list(shapes)}")
        levels = [shapes[f] for f in st.IN_FEATURES]
        channels = levels[0].channels
        tf = st.TF
        temporal_net = None
        if tf.ON:
            temporal_net = TemporalNet(
                tf.PATCH**2 + 2 * channels, tuple(tf.CHANNELS), st.NUM_PROTOS, tf.POOL
            )
        coder = box_coder(tuple(st.BOX_VARIANCES))
        return {
            "backbone": backbone,
            "in_features": list(st.IN_FEATURES),
            "anchor_generator": build_anchor_generator(cfg, levels),
            "head": PredictionHead(
                channels,
                st.NUM_CLASSES,
                [tuple(s) for s in st.ANCHOR_SHAPES],
                embed_dim=st.EMBED_DIM,
                num_coefficients=st.NUM_PROTOS,
                extra_convs=st.EXTRA_CONVS,
                fcb=st.FCB,
                fcb_branches=tuple(st.FCB_BRANCHES),
                centerness_order=st.CENTERNESS_ORDER,
            ),
            "protonet": ProtoNet(channels, st.PROTO_DIM, st.PROTO_CONVS, st.NUM_PROTOS),
            "temporal_net": temporal_net,
            "tracker": build_tracker(cfg),
            "coder": coder,
            "num_classes": st.NUM_CLASSES,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "inference_amp": inference_amp_from_config(cfg),
            "criterion": STMaskCriterion(
                coder,
                pos_iou=st.POS_IOU,
                neg_iou=st.NEG_IOU,
                class_aware_matching=st.CLASS_AWARE_MATCHING,
                forced_matches=st.FORCED_MATCHES,
                ohem_ratio=st.OHEM_RATIO,
                mask_box_enlarge=st.MASK_BOX_ENLARGE,
                loss_weights={k.lower(): v for k, v in st.LOSS_WEIGHTS.items()},
            ),
            "detector": STMaskDetector(
                coder,
                score_thresh=st.TEST.SCORE_THRESH,
                nms_thresh=st.TEST.NMS_THRESH,
                nms_topk=st.TEST.NMS_TOPK,
                detections_per_frame=st.TEST.DETECTIONS_PER_FRAME,
                positive_centerness=st.TEST.POSITIVE_CENTERNESS,
                clip_boxes=st.TEST.CLIP_BOXES == "all",
            ),
            "mask_thresh": st.MASK_THRESH,
            "corr_feature": tf.CORR_FEATURE,
            "corr_patch": tf.PATCH,
            "mask_crop": (st.MASK_CROP.RULE, st.MASK_CROP.PADDING),
            "clip_boxes": st.TEST.CLIP_BOXES,
        }

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def dense_outputs(
        self, features: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Backbone features → the head's rows of all levels concatenated (``cls`` (B, A,
        K + 1), ``box`` (B, A, 4), ``ctr`` (B, A), ``track`` (B, A, D), ``mask`` (B, A, M)),
        the per-level ``t2s`` maps (B, C, H_l, W_l) and the prototypes (B, M, H/4, W/4)."""
        levels = [features[f] for f in self.in_features]
        per_level = self.head(levels)
        rows = {
            key: torch.cat([out[key] for out in per_level], dim=1)
            for key in ("cls", "box", "ctr", "track", "mask")
        }
        return rows, [out["t2s"] for out in per_level], self.protonet(levels[0])

    def anchors(self, t2s: list[torch.Tensor]) -> torch.Tensor:
        """All anchors (A, 4) XYXY px, in the order of the head's rows."""
        return Boxes.cat(self.anchor_generator(t2s)).tensor

    # ----------------------------------------------------------------------------- training
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        num = len(batched_inputs)
        images, gts = self.preprocess_pairs(batched_inputs)
        features = self.backbone(images.tensor)
        rows, t2s, protos = self.dense_outputs(features)
        anchors = self.anchors(t2s)
        height, width = images.tensor.shape[-2:]
        gt_masks = gt_masks_on_basis(gts, height, width, PROTO_STRIDE)
        offsets = [0]
        for g in gts:
            offsets.append(offsets[-1] + len(g))
        losses, positives = self.criterion.frame_losses(
            rows, anchors, protos, gts, gt_masks, offsets
        )
        losses.update(self.criterion.track_loss(rows["track"], gts, positives))
        if self.temporal_net is not None:
            frame_idx = [x["frame_idx"] for x in batched_inputs]
            ref_idx = [x["ref_frame_idx"] for x in batched_inputs]
            earlier = [num + i if ref_idx[i] <= frame_idx[i] else i for i in range(num)]
            later = [i if ref_idx[i] <= frame_idx[i] else num + i for i in range(num)]
            corr_maps = (features[self.corr_feature], t2s[self.corr_level])
            losses.update(
                self.criterion.temporal_losses(
                    self.temporal_shift, corr_maps, rows, protos, anchors, gts, gt_masks,
                    offsets, positives, earlier, later,
                )  # fmt: skip
            )
        return losses

    @property
    def corr_level(self) -> int:
        """The index among the levels of the one that temporal fusion correlates."""
        return self.in_features.index(self.corr_feature)

    def temporal_shift(
        self,
        prev: tuple[torch.Tensor, torch.Tensor],
        cur: tuple[torch.Tensor, torch.Tensor],
        boxes: torch.Tensor,
        pair_inds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TF (Sec. 3.3): ``prev`` and ``cur`` the (FPN feature, T2S feature) maps (B, C, H, W)
        of the correlated level in B frame pairs, ``boxes`` (N, 4) px in the earlier frame of
        pair ``pair_inds`` (N,) → box and coefficient shifts (N, 4), (N, M) to the later."""
        stride = self.anchor_generator.strides[self.corr_level]
        corr = correlation(prev[0], cur[0], self.corr_patch)
        x = temporal_features(corr, prev[1], cur[1])
        rois = torch.cat((pair_inds[:, None].to(boxes), boxes / stride), dim=1)
        return self.temporal_net(x, rois)

    # ---------------------------------------------------------------------------- inference
    def reset(self) -> None:
        """Start a new video: empty the tracker, forget the previous frame, restart ids at 0."""
        self.tracker.reset()
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def inference(self, image: torch.Tensor, output_size: tuple[int, int]) -> Instances:
        """With the ``MemoryTracker`` (STMask's tracking) every object of the video's memory is
        first carried from the previous frame by temporal fusion; the output then also holds
        the missed objects it still shows, with their propagated boxes and masks, all with
        their ``track_ids`` (without temporal fusion, ``MODEL.STMASK.TF.ON False``, only the
        frame's detections). With another tracker, the detections and their ``embeddings``."""
        rows, t2s, protos, corr_map = split_frame_outputs(
            self.graphs()["frame"](image), len(self.in_features)
        )
        input_size = tuple(image.shape[-2:])
        det = self.detector.detect(rows, self.anchors(t2s), input_size)
        if not isinstance(self.tracker, MemoryTracker):
            return self._output_masks(det, protos, input_size, output_size)
        current = (corr_map, t2s[self.corr_level])
        zeros = torch.zeros(len(det), dtype=torch.int64, device=self.device)
        det.mask_probs = cross_frame_masks(
            protos, det.coefficients, det.pred_boxes.tensor, zeros, crop=self.mask_crop
        )
        if self._previous is not None and len(self.tracker) and self.temporal_net is not None:
            self._propagate(self._previous, current, protos, input_size)
        self._previous = current
        det.track_ids = self.tracker.update(det)
        # with the "memory" output the tracker's shown entries include this frame's detections
        shown = [det[det.track_ids >= 0]] if self.tracker.output == "detections" else []
        # missed objects are shown where temporal fusion carried them to this frame
        carried, carried_ids = self.tracker.carried()
        if self.temporal_net is not None and carried is not None and len(carried):
            carried.track_ids = carried_ids.to(self.device)
            shown.append(carried)
        fields = ("pred_boxes", "scores", "pred_classes", "class_scores", "coefficients")
        fields += ("track_ids",)
        out = (
            Instances.cat([Instances(input_size, **{f: x.get(f) for f in fields}) for x in shown])
            if shown
            else Instances(input_size, **{f: det.get(f)[:0] for f in fields})
        )
        return self._output_masks(out, protos, input_size, output_size)

    def _output_masks(
        self, out: Instances, protos: torch.Tensor, input_size, output_size
    ) -> Instances:
        """The frame's output: its ``pred_masks`` at the output size and, with
        ``clip_boxes`` "output", its boxes clipped to the input after the masks are cropped."""
        out.pred_masks = prototype_masks(
            protos, out, input_size, output_size, self.mask_thresh, self.mask_crop
        )
        if self.clip_boxes == "output":
            out.pred_boxes.clip(input_size)
        return out

    def _propagate(self, previous, current, protos: torch.Tensor, image_size) -> None:
        """Carry every memory entry from the previous frame to this one (Eq. 11-14): TF pools
        at the entry's box clipped to the input and shifts the box as it is (unclipped with
        ``clip_boxes`` "output", as the authors' code)."""
        memory = self.tracker.memory
        zeros = torch.zeros(len(memory), dtype=torch.int64, device=self.device)
        pooled = memory.pred_boxes.clone()
        pooled.clip(image_size)
        delta_box, delta_coef = self.temporal_shift(previous, current, pooled.tensor, zeros)
        boxes = Boxes(shift_boxes(memory.pred_boxes.tensor, delta_box))
        if self.clip_boxes == "all":
            boxes.clip(image_size)
        coefficients = shift_coefficients(memory.coefficients, delta_coef)
        masks = cross_frame_masks(protos, coefficients, boxes.tensor, zeros, crop=self.mask_crop)
        self.tracker.propagate(boxes.tensor, coefficients, masks)

    # ------------------------------------------------------------------------------- export
    def export_graphs(self) -> dict[str, nn.Module]:
        return {"frame": FrameGraph(self)}

    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"frame": (images[0].to(self.device).float(),)}

    def sparse_modules(self) -> list[str]:
        # the anchors, and temporal fusion, which runs at the memory's boxes
        return ["anchor_generator"] + (["temporal_net"] if self.temporal_net is not None else [])
