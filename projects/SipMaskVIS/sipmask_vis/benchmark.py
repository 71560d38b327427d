"""SipMask-VIS's benchmark adapter (``tools/benchmark.py``)."""

from __future__ import annotations

from detectron2.config import CfgNode
from sipmask.graphs import HEAD_OUTPUTS

from vis_d2.benchmark import (
    BenchmarkAdapter,
    BoxSizes,
    Probe,
    force_fcos_box_sizes,
    force_fcos_detections,
    register_benchmark_adapter,
)

from .sipmask import SipMaskVIS

__all__ = ["SipMaskVISAdapter"]


@register_benchmark_adapter("SipMaskVIS")
class SipMaskVISAdapter(BenchmarkAdapter):
    label = "SipMask-VIS"
    layout = [
        ("backbone", "backbone + FPN"),
        ("fcos", "FCOS head + post-processing"),
        ("fcos/head", "- towers, FeatureAlign, cls/box/ctr, coefficients (dense)"),
        ("fcos/postprocess", "- post-processing (top-k, boxes, NMS)"),
        ("mask", "mask head"),
        ("mask/bases", "- basis masks"),
        ("mask/assemble", "- CropSplit, paste, resize"),
        ("track", "track branch"),
        ("track/embeddings", "- embedding map (dense)"),
        ("tracker", "tracker"),
        ("other", "other (preprocessing, glue)"),
    ]
    head_groups = ("mask", "track", "tracker")
    postprocess_part = "fcos/postprocess"
    assembly_part = "mask/assemble"

    def force_detections(self, cfg: CfgNode, num: int) -> CfgNode:
        cfg = force_fcos_detections(cfg, num)
        cfg.MODEL.FCOS.FAST_NMS_TOPK = max(cfg.MODEL.FCOS.FAST_NMS_TOPK, num)
        return cfg

    def force_box_sizes(self, model: SipMaskVIS, sizes: BoxSizes) -> str:
        first = HEAD_OUTPUTS.index("reg") * len(model.fcos.strides)
        return force_fcos_box_sizes(model, sizes, model.fcos.strides, first)

    def probes(self, model: SipMaskVIS) -> list[Probe]:
        """Parts of :meth:`SipMaskVIS.inference_frame`: ``backbone``, ``fcos/head`` (towers,
        FeatureAlign, class/box/centerness and coefficient maps), ``mask/bases``,
        ``track/embeddings``, ``fcos/postprocess`` (top-k, boxes, NMS), ``mask/assemble``
        (coefficient reads, CropSplit, resizing, thresholding), ``tracker`` and ``other``."""
        return [
            Probe(model.backbone, "backbone", "other"),
            Probe(model, "fcos/head", "other", "head_outputs"),
            Probe(model.basis, "mask/bases", "other"),
            Probe(model.track_head, "track/embeddings", "other"),
            Probe(model.fcos, "fcos/postprocess", "mask/assemble", "detect"),
            Probe(model.tracker, "tracker", "other", "update"),
        ]
