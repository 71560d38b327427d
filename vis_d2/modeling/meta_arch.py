"""The interfaces every vis_d2 META_ARCH implements, through which the tools (training,
evaluation, demo, export, benchmark) run any method without knowing which it is: the per-frame
contract :class:`FrameModel` (one image in, its instances out, dense graphs that export), and the
online video contract :class:`VISModel` on top of it (training on frame pairs, tracking)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ..utils.precision import use_autocast
from .tracking import Tracker

__all__ = [
    "AutocastGraph",
    "FrameModel",
    "Graph",
    "VISModel",
    "inference_amp_from_config",
    "is_video_model",
    "normalize_and_pad",
]

Graph = Callable[..., tuple[torch.Tensor, ...]]


def normalize_and_pad(
    image: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, size_divisibility: int
) -> torch.Tensor:
    """One resized frame (3, H, W) float 0-255 in ``INPUT.FORMAT`` → the normalised network
    input (1, 3, H', W'), zero-padded to a multiple of ``size_divisibility``. Under autocast it
    is channels-last, which the convolutions then keep: oneDNN's bf16 (AMX) and cuDNN's fp16
    kernels are fastest in that layout."""
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


class FrameModel(nn.Module, metaclass=ABCMeta):
    """A model that segments the instances of one image (or video frame) at a time.

    Inference: :meth:`inference_frame` on one resized image returns its ``Instances`` at the
    original resolution: ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks`` (bool)
    and what the method adds. Image models (e.g. SipMask) take detectron2's batch in
    ``forward``; video models are :class:`VISModel`.

    Export: the per-frame work is split into dense graphs with flat tensor inputs and outputs
    (:meth:`export_graphs`), which :meth:`inference_frame` calls through :meth:`graphs`, and
    the data-dependent rest (thresholds, NMS, reads at the detections, mask assembly,
    tracking) in Python. :meth:`use_graphs` swaps in traced graphs, so an exported model runs
    the same post-processing code as the eager one.
    """

    num_classes: int
    # the config key that sets num_classes, for error messages
    num_classes_key: ClassVar[str]

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
        self._own_graphs: dict[str, Graph] | None = None
        self._inference_amp = inference_amp

    @property
    def inference_amp(self) -> bool:
        """``TEST.AMP.ENABLED``: the model's own dense graphs run as :class:`AutocastGraph`."""
        return self._inference_amp

    @inference_amp.setter
    def inference_amp(self, enabled: bool) -> None:
        self._inference_amp = enabled
        self._own_graphs = None

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: list[torch.Tensor]) -> ImageList:
        """Resized frames (C, H_i, W_i) 0-255 → normalised, padded to the backbone's size
        divisibility, on the model's device."""
        images = [(x.to(self.device).float() - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def reset(self) -> None:
        """Start a new video: a model without state between frames has nothing to forget."""

    @torch.no_grad()
    def inference_frame(self, frame: dict) -> Instances:
        """One frame (``image`` (C, H, W) resized input, ``height``/``width`` original size,
        optional ``is_first``, which resets first) → its instances at the original size:
        :meth:`inference` on the input, then :meth:`_postprocess`."""
        if frame.get("is_first", False):
            self.reset()
        image = frame["image"].to(self.device).float()
        in_h, in_w = image.shape[-2:]
        output_size = (frame.get("height", in_h), frame.get("width", in_w))
        return self._postprocess(self.inference(image, output_size), output_size)

    @abstractmethod
    def inference(self, image: torch.Tensor, output_size: tuple[int, int]) -> Instances:
        """One resized frame (3, H, W) float 0-255 on the model's device → its detections on
        the (H, W) input: ``pred_boxes`` (XYXY input px), ``scores``, ``pred_classes``,
        optionally ``class_scores`` (N, C), ``pred_masks`` (N, H_out, W_out) bool at
        ``output_size``, and what a tracker reads (``displacements`` (N, 2) input px,
        ``embeddings`` (N, D)), or their ``track_ids`` where the model tracked them itself."""

    # the fields :meth:`_postprocess` passes on unchanged
    output_fields: ClassVar[tuple[str, ...]] = (
        "scores",
        "pred_classes",
        "class_scores",
        "pred_masks",
        "embeddings",
        "box_scores",
    )

    def _postprocess(self, det: Instances, output_size: tuple[int, int]) -> Instances:
        """Detections on the input (:meth:`inference`) → the frame's output at ``output_size``
        (H_out, W_out): boxes scaled and clipped, ``displacements`` scaled, the
        :attr:`output_fields` as they are."""
        (in_h, in_w), (out_h, out_w) = det.image_size, output_size
        scale = torch.tensor([out_w / in_w, out_h / in_h] * 2, device=self.device)
        result = Instances((out_h, out_w))
        result.pred_boxes = Boxes(det.pred_boxes.tensor * scale)
        result.pred_boxes.clip((out_h, out_w))
        for name in self.output_fields:
            if det.has(name):
                result.set(name, det.get(name))
        if det.has("displacements"):
            result.displacements = det.displacements * scale[:2]
        if det.has("track_ids"):
            result.track_ids = det.track_ids
        return result

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
        """The graphs :meth:`inference_frame` runs: those given to :meth:`use_graphs` (e.g.
        traced ones), else this model's own modules (under autocast with ``inference_amp``),
        built once."""
        if self._graphs is not None:
            return self._graphs
        if self._own_graphs is None:
            graphs = self.export_graphs()
            if self.inference_amp:
                graphs = {name: AutocastGraph(graph) for name, graph in graphs.items()}
            self._own_graphs = graphs
        return self._own_graphs

    def _apply(self, fn, *args, **kwargs):
        # the own graphs hold the buffers that .to() and .cuda() replace: built anew after
        self._own_graphs = None
        return super()._apply(fn, *args, **kwargs)

    def use_graphs(self, graphs: dict[str, Graph] | None) -> None:
        """Run frames through ``graphs`` (e.g. loaded from an export), or through the model's
        own modules again (None)."""
        if graphs is not None:
            missing = set(self.export_graphs()) - set(graphs)
            if missing:
                raise ValueError(f"graphs {sorted(missing)} are missing")
        self._graphs = graphs


class VISModel(FrameModel):
    """An online video instance segmentation model: a :class:`FrameModel` whose frames are
    associated into tracks.

    Training: ``forward(batched_inputs)`` on the samples of ``YTVISDatasetMapper`` returns the
    loss dict (:meth:`losses`). Inference runs online: :meth:`reset` at a new video, then
    :meth:`inference_frame` frame after frame (``forward`` in eval mode does this per video
    of ``YTVISTestMapper``). A frame's output ``Instances`` at the original resolution has
    ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks`` (bool) and ``track_ids``.
    """

    # gives the detections of a video their track ids (unless the model tracks them itself)
    tracker: Tracker

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

    def _postprocess(self, det: Instances, output_size: tuple[int, int]) -> Instances:
        """:meth:`FrameModel._postprocess`, then the ``track_ids`` that :attr:`tracker` gives
        the detections (unless they have theirs)."""
        result = super()._postprocess(det, output_size)
        if not result.has("track_ids"):
            result.track_ids = self.tracker.update(result)
        return result

    def inference_video(self, video: dict) -> dict:
        """A whole video (``frames``: per-frame inputs) → ``{"frames": [Instances]}``."""
        self.reset()
        return {"frames": [self.inference_frame(frame) for frame in video["frames"]]}


def is_video_model(meta_architecture: str) -> bool:
    """Whether the registered META_ARCH ``meta_architecture`` is a :class:`VISModel` (trained on
    videos and tracking), rather than an image model."""
    return issubclass(META_ARCH_REGISTRY.get(meta_architecture), VISModel)
