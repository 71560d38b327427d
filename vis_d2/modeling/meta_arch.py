"""The online interface every vis_d2 META_ARCH implements, through which the tools (training,
evaluation, demo, export, benchmark) run any method without knowing which it is."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from detectron2.config import CfgNode
from detectron2.structures import ImageList, Instances
from torch import nn

from ..utils.benchmark import BoxSizes, Probe
from ..utils.precision import use_autocast

__all__ = ["AutocastGraph", "Graph", "VISModel", "inference_amp_from_config", "normalize_and_pad"]

Graph = Callable[..., tuple[torch.Tensor, ...]]


def normalize_and_pad(
    image: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, size_divisibility: int
) -> torch.Tensor:
    """One resized frame (3, H, W) float 0-255 in ``INPUT.FORMAT`` → the normalised network
    input (1, 3, H', W'), zero-padded to a multiple of ``size_divisibility``. Under autocast it
    is channels-last, which the convolutions then keep: oneDNN's bf16 (AMX) and cuDNN's fp16
    kernels are fastest in that layout (an R-50 FPN at 640×384 on 2 CPU cores: 197 ms against
    446 ms channels-first under bf16 autocast, 562 ms in fp32)."""
    normalized = (image - pixel_mean) / pixel_std
    tensor = ImageList.from_tensors([normalized], size_divisibility).tensor
    if torch.is_autocast_enabled(tensor.device.type):
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def inference_amp_from_config(cfg: CfgNode) -> bool:
    """``TEST.AMP.ENABLED`` as it applies on ``MODEL.DEVICE``: on a CPU without native bf16
    the dense graphs run in fp32 (:func:`vis_d2.utils.precision.use_autocast`)."""
    return use_autocast(cfg.TEST.AMP.ENABLED, cfg.MODEL.DEVICE, "TEST.AMP.ENABLED")


class AutocastGraph(nn.Module):
    """A dense graph run under autocast (``TEST.AMP.ENABLED``): bf16 on the CPU, fp16 on
    CUDA, with 4-d inputs channels-last; its floating outputs come back as fp32 (in the
    graph's memory format: channels-last maps stay so, as the mask assembly reads them), so
    thresholds, NMS, mask assembly and tracking run in fp32 as without it."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = tuple(
            x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in inputs
        )
        with torch.autocast(inputs[0].device.type):
            outputs = self.graph(*inputs)
        return tuple(o.float() if o.is_floating_point() else o for o in outputs)


class VISModel(nn.Module, metaclass=ABCMeta):
    """An online video instance segmentation model.

    Training: ``forward(batched_inputs)`` on the samples of ``YTVISDatasetMapper`` returns the
    loss dict (:meth:`losses`). Inference runs online: :meth:`reset` at a new video, then
    :meth:`inference_frame` frame after frame (``forward`` in eval mode does this per video
    of ``YTVISTestMapper``). A frame's output ``Instances`` at the original resolution has
    ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks`` (bool) and ``track_ids``.

    Export: the per-frame work is split into dense graphs with flat tensor inputs and outputs
    (:meth:`export_graphs`), which :meth:`inference_frame` calls through :meth:`graphs`, and
    the data-dependent rest (thresholds, NMS, reads at the detections, mask assembly,
    tracking) in Python. :meth:`use_graphs` swaps in traced graphs, so an exported model runs
    the same post-processing code as the eager one.
    """

    num_classes: int
    # the config key that sets num_classes, for error messages
    num_classes_key: ClassVar[str]
    # the method's name in reports
    display_name: ClassVar[str]
    # (part, label) rows of tools/benchmark.py's split table, in the order of a frame; a part
    # "group/name" is counted in its group's row too
    benchmark_layout: ClassVar[list[tuple[str, str]]] = []
    # the groups of benchmark_layout on top of the detector (mask, tracking), and the part
    # that is the detector's post-processing (top-k, NMS)
    benchmark_head_groups: ClassVar[tuple[str, ...]] = ()
    benchmark_postprocess_part: ClassVar[str] = ""
    # the part that assembles the masks of the detections (windows, paste, resize)
    benchmark_assembly_part: ClassVar[str] = ""

    def __init__(
        self,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        *,
        inference_amp: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self._graphs: dict[str, Graph] | None = None
        # TEST.AMP.ENABLED: the model's own dense graphs run as AutocastGraph
        self.inference_amp = inference_amp

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: list[torch.Tensor]) -> ImageList:
        """Resized frames (C, H_i, W_i) 0-255 → normalised, padded to the backbone's size
        divisibility, on the model's device."""
        images = [(x.to(self.device).float() - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def preprocess_pairs(self, batched_inputs: list[dict]) -> tuple[ImageList, list[Instances]]:
        """B training pairs → the 2B frames as one batch (the key frames, then their reference
        frames in the same order) and their targets, on the model's device."""
        images = self.preprocess(
            [x["image"] for x in batched_inputs] + [x["ref_image"] for x in batched_inputs]
        )
        gts = [x["instances"] for x in batched_inputs] + [
            x["ref_instances"] for x in batched_inputs
        ]
        return images, [g.to(self.device) for g in gts]

    def forward(self, batched_inputs: list[dict]):
        if self.training:
            return self.losses(batched_inputs)
        return [self.inference_video(video) for video in batched_inputs]

    @abstractmethod
    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """The training losses of a batch of training samples."""

    @abstractmethod
    def reset(self) -> None:
        """Start a new video: forget earlier frames and restart track ids at 0."""

    @abstractmethod
    def inference_frame(self, frame: dict) -> Instances:
        """One frame (``image`` (C, H, W) resized input, ``height``/``width`` original size,
        optional ``is_first``, which resets first) → its tracked instances."""

    def inference_video(self, video: dict) -> dict:
        """A whole video (``frames``: per-frame inputs) → ``{"frames": [Instances]}``."""
        self.reset()
        return {"frames": [self.inference_frame(frame) for frame in video["frames"]]}

    # ------------------------------------------------------------------------------- export
    @abstractmethod
    def export_graphs(self) -> dict[str, nn.Module]:
        """The dense graphs of a frame by name: modules whose ``forward(*tensors)`` returns a
        tuple of tensors, with ``input_names()`` and ``output_names()``."""

    @abstractmethod
    def trace_inputs(self, images: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        """Example inputs of every graph of :meth:`export_graphs`, from one or two resized
        frames (C, H, W) 0-255 (consecutive frames where a graph reads two)."""

    @abstractmethod
    def sparse_modules(self) -> list[str]:
        """Names of the submodules whose weights the Python part of a frame reads (saved with
        an export; the rest of the weights are in the graphs)."""

    def graphs(self) -> dict[str, Graph]:
        """The graphs :meth:`inference_frame` runs: the traced ones given to
        :meth:`use_graphs`, else this model's own modules (under autocast with
        ``inference_amp``)."""
        if self._graphs is not None:
            return self._graphs
        graphs = self.export_graphs()
        if self.inference_amp:
            return {name: AutocastGraph(graph) for name, graph in graphs.items()}
        return graphs

    def use_graphs(self, graphs: dict[str, Graph] | None) -> None:
        """Run frames through ``graphs`` (e.g. loaded from an export), or through the model's
        own modules again (None)."""
        if graphs is not None:
            missing = set(self.export_graphs()) - set(graphs)
            if missing:
                raise ValueError(f"graphs {sorted(missing)} are missing")
        self._graphs = graphs

    # ---------------------------------------------------------------------------- benchmark
    @classmethod
    @abstractmethod
    def force_detections(cls, cfg: CfgNode, num: int) -> CfgNode:
        """A copy of ``cfg`` whose model outputs exactly ``num`` detections a frame (every
        candidate kept, nothing suppressed), to time a frame against its detection count."""

    def init_for_benchmark(self, sizes: BoxSizes) -> str:
        """Make a randomly initialised model's forced detections resemble a trained model's:
        boxes of ``sizes`` (where the model decodes boxes, e.g.
        :func:`vis_d2.modeling.fcos.force_box_sizes`); called on every model the benchmark
        builds, so it must not change the weights. Returns what it did (nothing by default)."""
        return ""

    def benchmark_probes(self) -> list[Probe]:
        """Probes that split a frame into the parts of :attr:`benchmark_layout`."""
        return []
