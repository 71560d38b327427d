"""STMask's benchmark adapter (``tools/benchmark.py``)."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode

from vis_d2.benchmark import (
    BenchmarkAdapter,
    BoxSizes,
    Probe,
    force_frame_outputs,
    register_benchmark_adapter,
)

from .graphs import ROWS
from .stmask import STMask

__all__ = ["STMaskAdapter"]


@register_benchmark_adapter("STMask")
class STMaskAdapter(BenchmarkAdapter):
    label = "STMask"
    layout = [
        ("backbone", "backbone + FPN"),
        ("head", "prediction head + protonet (dense)"),
        ("postprocess", "decoding, scores, Fast NMS"),
        ("mask", "mask assembly, paste, resize"),
        ("temporal", "temporal fusion of the memory (TemporalNet, masks)"),
        ("tracker", "tracker"),
        ("other", "other (preprocessing, glue)"),
    ]
    head_groups = ("mask", "temporal", "tracker")
    postprocess_part = "postprocess"
    assembly_part = "mask"

    def force_detections(self, cfg: CfgNode, num: int) -> CfgNode:
        cfg = cfg.clone()
        test = cfg.MODEL.STMASK.TEST
        test.SCORE_THRESH = -1.0  # every anchor is a candidate
        test.NMS_THRESH = 1.0  # IoU > 1 never happens
        test.NMS_TOPK = max(test.NMS_TOPK, num)
        test.DETECTIONS_PER_FRAME = num
        return cfg

    def force_box_sizes(self, model: STMask, sizes: BoxSizes) -> str:
        """Every anchor's box deltas (the frame graph's ``box`` rows (1, A, 4)) replaced by
        those of a box of ``sizes`` on the anchor's centre."""
        box = ROWS.index("box")
        cache: dict[int, torch.Tensor] = {}

        def replace(outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            t2s = list(outputs[len(ROWS) : len(ROWS) + len(model.in_features)])
            anchors = model.anchors(t2s)
            if len(anchors) not in cache:
                half = sizes.sample(len(anchors)).to(anchors) / 2
                centre = (anchors[:, :2] + anchors[:, 2:]) / 2
                boxes = torch.cat((centre - half, centre + half), dim=1)
                cache[len(anchors)] = model.coder.get_deltas(anchors, boxes)[None]
            return (*outputs[:box], cache[len(anchors)], *outputs[box + 1 :])

        force_frame_outputs(model, replace)
        return sizes.describe()

    def probes(self, model: STMask) -> list[Probe]:
        """Parts of :meth:`STMask.inference_frame`: ``backbone``, ``head`` (prediction head and
        protonet), ``postprocess`` (decoding, scores, Fast NMS), ``mask`` (assembly on the box
        windows, resizing, thresholding), ``temporal`` (every memory entry carried to the frame
        by temporal fusion), ``tracker`` and ``other``."""
        return [
            Probe(model.backbone, "backbone", "other"),
            Probe(model.head, "head", "other"),
            Probe(model.protonet, "head", "other"),
            Probe(model.detector, "postprocess", "mask", "detect"),
            Probe(model, "temporal", "mask", "_propagate"),
            Probe(model.tracker, "tracker", "other", "update"),
        ]
