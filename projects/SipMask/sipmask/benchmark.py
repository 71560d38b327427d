"""SipMask's benchmark adapter (``tools/benchmark.py``)."""

from __future__ import annotations

from detectron2.config import CfgNode

from vis_d2.benchmark import (
    BenchmarkAdapter,
    BoxSizes,
    Probe,
    force_fcos_box_sizes,
    force_fcos_detections,
    register_benchmark_adapter,
)

from .graphs import HEAD_OUTPUTS
from .sipmask import SipMaskParts

__all__ = ["SipMaskAdapter"]


@register_benchmark_adapter("SipMask")
class SipMaskAdapter(BenchmarkAdapter):
    label = "SipMask"
    layout = [
        ("backbone", "backbone + FPN"),
        ("fcos", "FCOS head + post-processing"),
        ("fcos/head", "- towers, FeatureAlign, cls/box/ctr, coefficients (dense)"),
        ("fcos/postprocess", "- post-processing (top-k, boxes, NMS)"),
        ("mask", "mask head"),
        ("mask/bases", "- basis masks"),
        ("mask/assemble", "- CropSplit, paste, resize"),
        ("mask/rescoring", "- mask re-scoring (SipMask++)"),
        ("other", "other (preprocessing, glue)"),
    ]
    head_groups = ("mask",)
    postprocess_part = "fcos/postprocess"
    assembly_part = "mask/assemble"

    def force_detections(self, cfg: CfgNode, num: int) -> CfgNode:
        cfg = force_fcos_detections(cfg, num)
        cfg.MODEL.FCOS.FAST_NMS_TOPK = max(cfg.MODEL.FCOS.FAST_NMS_TOPK, num)
        return cfg

    def force_box_sizes(self, model: SipMaskParts, sizes: BoxSizes) -> str:
        first = HEAD_OUTPUTS.index("reg") * len(model.fcos.strides)
        return force_fcos_box_sizes(model, sizes, model.fcos.strides, first)

    def probes(self, model: SipMaskParts) -> list[Probe]:
        """Parts of :meth:`SipMask.inference_frame`: ``backbone``, ``fcos/head`` (towers,
        FeatureAlign, class/box/centerness and coefficient maps), ``mask/bases``,
        ``fcos/postprocess`` (top-k, boxes, NMS), ``mask/assemble`` (coefficient reads,
        CropSplit, resizing, thresholding), ``mask/rescoring`` and ``other``."""
        probes = [
            Probe(model.backbone, "backbone", "other"),
            Probe(model, "fcos/head", "other", "head_outputs"),
            Probe(model.basis, "mask/bases", "other"),
            Probe(model.fcos, "fcos/postprocess", "mask/assemble", "detect"),
        ]
        if getattr(model, "rescoring", None) is not None:
            probes.append(Probe(model, "mask/rescoring", "other", "_rescore"))
        return probes
