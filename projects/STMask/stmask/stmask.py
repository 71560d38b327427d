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
from torch.nn import functional as F

from vis_d2.layers import fast_nms
from vis_d2.modeling.common import tracked_frame
from vis_d2.modeling.mask_windows import (
    assemble_masks,
    blend,
    gt_masks_on_basis,
    gt_windows,
    mask_loss,
)
from vis_d2.modeling.meta_arch import VISModel, inference_amp_from_config
from vis_d2.modeling.tracking import MemoryTracker, Tracker, build_tracker
from vis_d2.utils.benchmark import BoxSizes, Probe

from .anchors import KernelAnchorGenerator
from .graphs import FrameGraph, split_frame_outputs
from .losses import box_coder, box_losses, enlarge_boxes, match_anchors, ohem_cross_entropy
from .prediction_head import PredictionHead
from .protonet import ProtoNet
from .temporal_fusion import (
    TemporalNet,
    box_shift_loss,
    correlation,
    cross_frame_masks,
    shift_boxes,
    shift_coefficients,
    temporal_features,
)

__all__ = ["STMask"]

PROTO_STRIDE = 4  # the prototypes' stride in input pixels


@META_ARCH_REGISTRY.register()
class STMask(VISModel):
    """STMask (Li et al., CVPR 2021) on a ResNet-FPN P3–P7 backbone.

    Per frame: the prediction head gives, for each of the three kernel-shaped anchors of a
    location, softmax class logits (background first), SSD box deltas, a tanh centerness, an
    L2-normalised track embedding and mask coefficients; the protonet gives prototypes at
    stride 4 from P3. A detection's mask is σ(prototypes · tanh(coefficients)) inside its box,
    assembled on the box window (:func:`vis_d2.modeling.mask_windows.blend` with one cell).

    Training: anchors matched to the GT by IoU (or, with ``CLASS_AWARE_MATCHING``, by IoU and
    class probability as in the authors' code); softmax cross-entropy with OHEM, 1 − DIoU,
    centerness to the DIoU, the mask BCE cropped by the enlarged predicted box, and the track
    loss between the positives of the two frames of each pair, each weighted by
    ``MODEL.STMASK.LOSS_WEIGHTS``.
    """

    num_classes_key = "MODEL.STMASK.NUM_CLASSES"
    display_name = "STMask"
    benchmark_layout = [
        ("backbone", "backbone + FPN"),
        ("head", "prediction head + protonet (dense)"),
        ("postprocess", "decoding, scores, Fast NMS"),
        ("mask", "mask assembly, paste, resize"),
        ("temporal", "temporal fusion of the memory (TemporalNet, masks)"),
        ("tracker", "tracker"),
        ("other", "other (preprocessing, glue)"),
    ]
    benchmark_head_groups = ("mask", "temporal", "tracker")
    benchmark_postprocess_part = "postprocess"
    benchmark_assembly_part = "mask"

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
        inference_amp: bool = False,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        class_aware_matching: bool = False,
        ohem_ratio: float = 3.0,
        mask_box_enlarge: float = 1.2,
        loss_weights: dict[str, float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        nms_topk: int = 200,
        detections_per_frame: int = 100,
        mask_thresh: float = 0.5,
        corr_feature: str = "p4",
        corr_patch: int = 11,
        tf_weights: tuple[float, float] = (5.0, 6.125),
    ):
        super().__init__(pixel_mean, pixel_std, inference_amp=inference_amp)
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
        self.pos_iou = pos_iou
        self.neg_iou = neg_iou
        self.class_aware_matching = class_aware_matching
        self.ohem_ratio = ohem_ratio
        self.mask_box_enlarge = mask_box_enlarge
        self.loss_weights = {"cls": 1.0, "box": 1.0, "ctr": 1.0, "mask": 1.0, "track": 1.0}
        self.loss_weights.update(loss_weights or {})
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.nms_topk = nms_topk
        self.detections_per_frame = detections_per_frame
        self.mask_thresh = mask_thresh
        self.corr_feature = corr_feature
        self.corr_patch = corr_patch
        self.tf_weights = tf_weights
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
            ),
            "protonet": ProtoNet(channels, st.PROTO_DIM, st.PROTO_CONVS, st.NUM_PROTOS),
            "temporal_net": temporal_net,
            "tracker": build_tracker(cfg),
            "coder": box_coder(tuple(st.BOX_VARIANCES)),
            "num_classes": st.NUM_CLASSES,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "inference_amp": inference_amp_from_config(cfg),
            "pos_iou": st.POS_IOU,
            "neg_iou": st.NEG_IOU,
            "class_aware_matching": st.CLASS_AWARE_MATCHING,
            "ohem_ratio": st.OHEM_RATIO,
            "mask_box_enlarge": st.MASK_BOX_ENLARGE,
            "loss_weights": {k.lower(): v for k, v in st.LOSS_WEIGHTS.items()},
            "score_thresh": st.TEST.SCORE_THRESH,
            "nms_thresh": st.TEST.NMS_THRESH,
            "nms_topk": st.TEST.NMS_TOPK,
            "detections_per_frame": st.TEST.DETECTIONS_PER_FRAME,
            "mask_thresh": st.TEST.MASK_THRESH,
            "corr_feature": tf.CORR_FEATURE,
            "corr_patch": tf.PATCH,
            "tf_weights": (tf.BOX_WEIGHT, tf.MASK_WEIGHT),
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
        losses["loss_track"] = self.loss_weights["track"] * self._track_loss(
            rows["track"], gts, positives, num
        )
        if self.temporal_net is not None:
            frame_idx = [x["frame_idx"] for x in batched_inputs]
            ref_idx = [x["ref_frame_idx"] for x in batched_inputs]
            earlier = [num + i if ref_idx[i] <= frame_idx[i] else i for i in range(num)]
            later = [i if ref_idx[i] <= frame_idx[i] else num + i for i in range(num)]
            box_shift, mask_shift = self._temporal_losses(
                features, rows, t2s, protos, anchors, gts, gt_masks, offsets, positives,
                earlier, later,
            )  # fmt: skip
            losses["loss_box_shift"] = self.tf_weights[0] * box_shift
            losses["loss_mask_shift"] = self.tf_weights[1] * mask_shift
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

    def _temporal_losses(
        self,
        features: dict[str, torch.Tensor],
        rows: dict[str, torch.Tensor],
        t2s: list[torch.Tensor],
        protos: torch.Tensor,
        anchors: torch.Tensor,
        gts: list[Instances],
        gt_masks: torch.Tensor,
        offsets: list[int],
        positives: list[tuple[torch.Tensor, torch.Tensor]],
        earlier: list[int],
        later: list[int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """B_shift and M_shift: the positives of each earlier frame whose instance is also in
        the later frame, shifted by TF from their detached predicted boxes and coefficients;
        the box shift against the GT pair's, the shifted mask (on the later frame's prototypes,
        cropped by its GT box) against the later GT mask; means over those positives."""
        boxes, coefs, pair_inds, prev_gt, cur_gt = [], [], [], [], []
        for k, (a, b) in enumerate(zip(earlier, later, strict=True)):
            pos, matched = positives[a]
            ids_a, ids_b = gts[a].gt_ids[matched], gts[b].gt_ids
            # ids are unique within a frame: each positive has at most one instance there
            rows_a, cols_b = (ids_a[:, None] == ids_b[None]).nonzero(as_tuple=True)
            pos, matched = pos[rows_a], matched[rows_a]
            boxes.append(self.coder.apply_deltas(rows["box"][a, pos].detach(), anchors[pos]))
            coefs.append(rows["mask"][a, pos].detach())
            pair_inds.append(torch.full((len(pos),), k, device=self.device))
            prev_gt.append(gts[a].gt_boxes.tensor[matched])
            cur_gt.append(offsets[b] + cols_b)
        boxes, coefs, pair_inds = torch.cat(boxes), torch.cat(coefs), torch.cat(pair_inds)
        prev_gt, cur_gt = torch.cat(prev_gt), torch.cat(cur_gt)
        feature, t2s_level = features[self.corr_feature], t2s[self.corr_level]
        delta_box, delta_coef = self.temporal_shift(
            (feature[earlier], t2s_level[earlier]),
            (feature[later], t2s_level[later]),
            boxes,
            pair_inds,
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
        return box_loss, mask_loss(windows, gt_windows(gt_masks, cur_gt, windows))

    def _track_loss(
        self,
        embeddings: torch.Tensor,
        gts: list[Instances],
        positives: list[tuple[torch.Tensor, torch.Tensor]],
        num: int,
    ) -> torch.Tensor:
        """Between the positives of the two frames of each pair: p = (cos + 1) / 2, −log p for
        the same instance and −log(1 − p) otherwise, averaged over the pairs of anchors, then
        over the frame pairs."""
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
            return embeddings.sum() * 0
        return torch.stack(losses).mean()

    # ---------------------------------------------------------------------------- inference
    def reset(self) -> None:
        """Start a new video: empty the tracker, forget the previous frame, restart ids at 0."""
        self.tracker.reset()
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def detect(self, rows: dict[str, torch.Tensor], anchors: torch.Tensor, image_size):
        """One frame's detections from its head rows (batch of one): candidates whose best
        foreground probability exceeds the score threshold and whose centerness is positive
        (tanh can be negative, which would rank a detection below every positive score),
        score = that probability × the centerness, cross-class Fast NMS, the best
        ``detections_per_frame``."""
        probs = rows["cls"][0].softmax(dim=1)[:, 1:]
        best, classes = probs.max(dim=1)
        keep = ((best > self.score_thresh) & (rows["ctr"][0] > 0)).nonzero().squeeze(1)
        scores = best[keep] * rows["ctr"][0, keep]
        boxes = self.coder.apply_deltas(rows["box"][0, keep], anchors[keep])
        boxes = Boxes(boxes)
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

    @torch.no_grad()
    def inference_frame(self, frame: dict) -> Instances:
        """One frame (``image`` (C, H, W) resized input, ``height``/``width`` original size,
        optional ``is_first``) → its tracked instances at the original resolution.

        With the ``MemoryTracker`` (STMask's tracking) every object of the video's memory is
        first carried from the previous frame by temporal fusion; the output then also holds
        the missed objects it still shows, with their propagated boxes and masks (without
        temporal fusion, ``MODEL.STMASK.TF.ON False``, only the frame's detections)."""
        if frame.get("is_first", False):
            self.reset()
        image = frame["image"].to(self.device).float()
        rows, t2s, protos, corr_map = split_frame_outputs(
            self.graphs()["frame"](image), len(self.in_features)
        )
        in_h, in_w = image.shape[-2:]
        out_h, out_w = frame.get("height", in_h), frame.get("width", in_w)
        det = self.detect(rows, self.anchors(t2s), (in_h, in_w))
        if not isinstance(self.tracker, MemoryTracker):
            masks = self._masks(det, protos, (in_h, in_w), (out_h, out_w))
            return tracked_frame(
                det, masks, (in_h, in_w), (out_h, out_w), self.tracker, embeddings=det.embeddings
            )
        current = (corr_map, t2s[self.corr_level])
        zeros = torch.zeros(len(det), dtype=torch.int64, device=self.device)
        det.mask_probs = cross_frame_masks(protos, det.coefficients, det.pred_boxes.tensor, zeros)
        if self._previous is not None and len(self.tracker) and self.temporal_net is not None:
            self._propagate(self._previous, current, protos, (in_h, in_w))
        self._previous = current
        det.track_ids = self.tracker.update(det)
        shown = [det]
        # missed objects are shown where temporal fusion carried them to this frame
        carried, carried_ids = self.tracker.carried()
        if self.temporal_net is not None and carried is not None and len(carried):
            carried.track_ids = carried_ids.to(self.device)
            shown.append(carried)
        fields = (
            "pred_boxes",
            "scores",
            "pred_classes",
            "class_scores",
            "coefficients",
            "track_ids",
        )
        out = Instances.cat(
            [Instances((in_h, in_w), **{f: x.get(f) for f in fields}) for x in shown]
        )
        result = Instances((out_h, out_w))
        scale = torch.tensor([out_w / in_w, out_h / in_h] * 2, device=self.device)
        result.pred_boxes = Boxes(out.pred_boxes.tensor * scale)
        result.pred_boxes.clip((out_h, out_w))
        result.scores = out.scores
        result.pred_classes = out.pred_classes
        result.class_scores = out.class_scores
        result.pred_masks = self._masks(out, protos, (in_h, in_w), (out_h, out_w))
        result.track_ids = out.track_ids
        return result

    def _propagate(self, previous, current, protos: torch.Tensor, image_size) -> None:
        """Carry every memory entry from the previous frame to this one (Eq. 11-14)."""
        memory = self.tracker.memory
        zeros = torch.zeros(len(memory), dtype=torch.int64, device=self.device)
        delta_box, delta_coef = self.temporal_shift(
            previous, current, memory.pred_boxes.tensor, zeros
        )
        boxes = Boxes(shift_boxes(memory.pred_boxes.tensor, delta_box))
        boxes.clip(image_size)
        coefficients = shift_coefficients(memory.coefficients, delta_coef)
        masks = cross_frame_masks(protos, coefficients, boxes.tensor, zeros)
        self.tracker.propagate(boxes.tensor, coefficients, masks)

    def _masks(self, instances: Instances, protos: torch.Tensor, input_size, output_size):
        """Bool masks at the output size of σ(prototypes · tanh(coefficients)) in the boxes."""
        return assemble_masks(
            protos,
            0,
            instances.pred_boxes.tensor / PROTO_STRIDE,
            torch.tanh(instances.coefficients)[:, None],
            1,
            1,
            stride=PROTO_STRIDE,
            input_size=input_size,
            output_size=output_size,
            threshold=self.mask_thresh,
        )

    # ------------------------------------------------------------------------------- export
    def export_graphs(self) -> dict[str, nn.Module]:
        return {"frame": FrameGraph(self)}

    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"frame": (images[0].to(self.device).float(),)}

    def sparse_modules(self) -> list[str]:
        # the anchors, and temporal fusion, which runs at the memory's boxes
        return ["anchor_generator"] + (["temporal_net"] if self.temporal_net is not None else [])

    # ---------------------------------------------------------------------------- benchmark
    @classmethod
    def force_detections(cls, cfg: CfgNode, num: int) -> CfgNode:
        cfg = cfg.clone()
        test = cfg.MODEL.STMASK.TEST
        test.SCORE_THRESH = -1.0  # every anchor is a candidate
        test.NMS_THRESH = 1.0  # IoU > 1 never happens
        test.NMS_TOPK = max(test.NMS_TOPK, num)
        test.DETECTIONS_PER_FRAME = num
        return cfg

    def init_for_benchmark(self, sizes: BoxSizes) -> str:
        # every anchor's deltas replaced by those of a box of ``sizes`` on the anchor's centre
        detect = self.detect
        cache: dict[int, torch.Tensor] = {}

        def forced(rows: dict[str, torch.Tensor], anchors: torch.Tensor, image_size):
            if len(anchors) not in cache:
                half = sizes.sample(len(anchors)).to(anchors) / 2
                centre = (anchors[:, :2] + anchors[:, 2:]) / 2
                boxes = torch.cat((centre - half, centre + half), dim=1)
                cache[len(anchors)] = self.coder.get_deltas(anchors, boxes)[None]
            return detect({**rows, "box": cache[len(anchors)]}, anchors, image_size)

        self.detect = forced
        return sizes.describe()

    def benchmark_probes(self) -> list[Probe]:
        """Parts of :meth:`inference_frame`: ``backbone``, ``head`` (prediction head and
        protonet), ``postprocess`` (decoding, scores, Fast NMS), ``mask`` (assembly on the box
        windows, resizing, thresholding), ``temporal`` (every memory entry carried to the frame
        by temporal fusion), ``tracker`` and ``other``."""
        return [
            Probe(self.backbone, "backbone", "other"),
            Probe(self.head, "head", "other"),
            Probe(self.protonet, "head", "other"),
            Probe(self, "postprocess", "mask", "detect"),
            Probe(self, "temporal", "mask", "_propagate"),
            Probe(self.tracker, "tracker", "other", "update"),
        ]
