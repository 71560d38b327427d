"""SG-Net's benchmark adapter."""

from __future__ import annotations

from detectron2.config import CfgNode

from ..modeling.sgnet import SGNet
from ..modeling.sgnet.graphs import HEAD_OUTPUTS
from .adapter import BenchmarkAdapter, register_benchmark_adapter
from .fcos import force_fcos_box_sizes, force_fcos_detections
from .random_init import BoxSizes
from .timing import Probe

__all__ = ["SGNetAdapter"]


@register_benchmark_adapter("SGNet")
class SGNetAdapter(BenchmarkAdapter):
    label = "SG-Net"
    layout = [
        ("backbone", "backbone + FPN"),
        ("fcos", "FCOS head + post-processing"),
        ("fcos/head", "- head (cls, box, ctr towers)"),
        ("fcos/postprocess", "- post-processing (top-k, boxes, NMS)"),
        ("mask", "mask head"),
        ("mask/bases", "- base masks"),
        ("mask/sam_tower", "- SAM tower (dense)"),
        ("mask/sam_coefficients", "- SAM coefficients (at detections)"),
        ("mask/assemble", "- grids, blend, paste, resize"),
        ("movement", "movement head"),
        ("movement/tower", "- tower (dense, two frames)"),
        ("movement/readout", "- 1x1 conv (at detections)"),
        ("tracker", "tracker"),
        ("other", "other (preprocessing, glue)"),
    ]
    head_groups = ("mask", "movement", "tracker")
    postprocess_part = "fcos/postprocess"
    assembly_part = "mask/assemble"

    def force_detections(self, cfg: CfgNode, num: int) -> CfgNode:
        return force_fcos_detections(cfg, num)

    def force_box_sizes(self, model: SGNet, sizes: BoxSizes) -> str:
        first = HEAD_OUTPUTS.index("reg") * len(model.fcos.strides)
        return force_fcos_box_sizes(model, sizes, model.fcos.strides, first)

    def probes(self, model: SGNet) -> list[Probe]:
        """Parts of :meth:`SGNet.inference_frame`: ``backbone`` (ResNet + FPN), ``fcos/head``,
        ``fcos/postprocess`` (top-k, boxes, NMS), ``mask/*`` (``bases``: the base mask
        module, ``sam_tower``: the SAM's dense tower, ``sam_coefficients``: its second conv
        read at the detections, ``assemble``: grids, pooling, blending, pasting, resizing and
        thresholding), ``movement/tower`` (its dense tower on two frames),
        ``movement/readout`` (its 1×1 conv at the detections), ``tracker`` and ``other``
        (preprocessing and glue)."""
        probes = [
            Probe(model.backbone, "backbone", "other"),
            Probe(model.fcos.head, "fcos/head", "other"),
            Probe(model.fcos, "fcos/postprocess", "mask/assemble", "detect"),
            Probe(model.base_mask, "mask/bases", "mask/assemble"),
            Probe(model.sam, "mask/sam_tower", "mask/assemble", "forward_towers"),
            Probe(model.sam, "mask/sam_coefficients", "mask/assemble", "coefficients"),
            Probe(model.tracker, "tracker", "other", "update"),
        ]
        if model.movement_head is not None:
            probes += [
                Probe(model.movement_head, "movement/tower", "movement/readout", "forward_towers"),
                Probe(model.movement_head, "movement/readout", "other", "predict"),
            ]
        return probes
