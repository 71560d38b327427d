"""What the benchmark knows of a model, registered under its ``MODEL.META_ARCHITECTURE`` name:
how to make it output exactly N detections a frame, how to split its frame into parts, and
which parts the reports single out. The model classes know nothing of it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry
from torch import nn

from .random_init import BoxSizes
from .timing import Probe

__all__ = [
    "BENCHMARK_ADAPTER_REGISTRY",
    "BenchmarkAdapter",
    "MaskRCNNAdapter",
    "benchmark_adapter",
    "register_benchmark_adapter",
]

BENCHMARK_ADAPTER_REGISTRY = Registry("VIS_BENCHMARK_ADAPTER")
BENCHMARK_ADAPTER_REGISTRY.__doc__ = """:class:`BenchmarkAdapter` subclasses by the
``MODEL.META_ARCHITECTURE`` they serve (see :func:`register_benchmark_adapter`)."""


class BenchmarkAdapter(ABC):
    """The benchmark's knowledge of one META_ARCH."""

    # the method's name in reports
    label: ClassVar[str]
    # (part, label) rows of the split table, in the order of a frame; a part "group/name" is
    # counted in its group's row too
    layout: ClassVar[list[tuple[str, str]]]
    # the groups of ``layout`` on top of the detector (mask, tracking), the part that is the
    # detector's post-processing (top-k, NMS), and the part that assembles the masks
    head_groups: ClassVar[tuple[str, ...]] = ()
    postprocess_part: ClassVar[str] = ""
    assembly_part: ClassVar[str] = ""

    @abstractmethod
    def force_detections(self, cfg: CfgNode, num: int) -> CfgNode:
        """A copy of ``cfg`` whose model outputs exactly ``num`` detections a frame (every
        candidate kept, nothing suppressed), to time a frame against its detection count."""

    @abstractmethod
    def probes(self, model: nn.Module) -> list[Probe]:
        """Probes that split a frame of ``model`` into the parts of :attr:`layout`."""

    def force_box_sizes(self, model: nn.Module, sizes: BoxSizes) -> str:
        """Give a randomly initialised ``model``'s forced detections boxes of ``sizes`` (as it
        runs now: call it after any :meth:`VISModel.use_graphs`), without changing its
        weights. Returns what it did (nothing by default)."""
        return ""


def register_benchmark_adapter(
    meta_architecture: str,
) -> Callable[[type[BenchmarkAdapter]], type[BenchmarkAdapter]]:
    """Class decorator: register an adapter for the models of ``meta_architecture``."""

    def register(adapter: type[BenchmarkAdapter]) -> type[BenchmarkAdapter]:
        BENCHMARK_ADAPTER_REGISTRY._do_register(meta_architecture, adapter)
        return adapter

    return register


def benchmark_adapter(meta_architecture: str) -> BenchmarkAdapter:
    """The adapter registered for ``meta_architecture``.

    Raises:
        KeyError: none is registered (the message lists those that are).
    """
    if meta_architecture not in BENCHMARK_ADAPTER_REGISTRY:
        known = ", ".join(sorted(name for name, _ in BENCHMARK_ADAPTER_REGISTRY))
        raise KeyError(
            f"MODEL.META_ARCHITECTURE {meta_architecture} has no benchmark adapter (registered: "
            f"{known}); a method registers one with vis_d2.benchmark.register_benchmark_adapter"
        )
    return BENCHMARK_ADAPTER_REGISTRY.get(meta_architecture)()


@register_benchmark_adapter("GeneralizedRCNN")
class MaskRCNNAdapter(BenchmarkAdapter):
    """detectron2's Mask R-CNN, the two-stage baseline."""

    label = "Mask R-CNN"
    layout = [
        ("backbone", "backbone + FPN"),
        ("rpn", "RPN"),
        ("roi_heads", "ROI heads"),
        ("roi_heads/box", "- box head"),
        ("roi_heads/box_postprocess", "- box post-processing (NMS, top-k)"),
        ("roi_heads/mask", "- mask head"),
        ("postprocess", "paste masks into the image"),
        ("other", "other (preprocessing)"),
    ]
    postprocess_part = "roi_heads/box_postprocess"

    def force_detections(self, cfg: CfgNode, num: int) -> CfgNode:
        cfg = cfg.clone()
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 1.0
        cfg.TEST.DETECTIONS_PER_IMAGE = num
        return cfg

    def probes(self, model: nn.Module) -> list[Probe]:
        """Parts of ``GeneralizedRCNN.inference``: ``backbone`` (ResNet + FPN), ``rpn``,
        ``roi_heads/box`` (pooling, box head), ``roi_heads/box_postprocess`` (score filter,
        per-class NMS, top-k), ``roi_heads/mask`` (mask pooling and head), ``postprocess``
        (rescaling, pasting the masks into the image) and ``other`` (preprocessing)."""
        return [
            Probe(model.backbone, "backbone", "other"),
            Probe(model.proposal_generator, "rpn", "other"),
            Probe(model.roi_heads, "roi_heads/box", "postprocess"),
            Probe(
                model.roi_heads.box_predictor,
                "roi_heads/box_postprocess",
                "roi_heads/mask",
                "inference",
            ),
        ]
