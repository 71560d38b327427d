"""The benchmarked models: each subject is one model (a VIS model on one backend, or the
two-stage baseline), built once per forced number of detections N with the same weights, and
run frame by frame."""

from __future__ import annotations

import copy
import logging
import tempfile

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from torch import nn

from ..export import export_model, load_graphs
from ..modeling import FrameModel
from ..utils.video_io import open_frames
from .adapter import BenchmarkAdapter, MaskRCNNAdapter, benchmark_adapter
from .random_init import BoxSizes, estimate_norm_statistics
from .timing import Probe

__all__ = ["RCNNSubject", "Subject", "VISSubject", "load_frames", "resolve_device"]

logger = logging.getLogger(__name__)


class Subject:
    """One benchmarked model: its config, its adapter (how to force N detections and split a
    frame into parts), how to build it and run a frame."""

    backend = "eager"

    def __init__(self, cfg: CfgNode, adapter: BenchmarkAdapter, weights: str, seed: int):
        self.cfg = cfg
        self.adapter = adapter
        self.weights = weights
        self.seed = seed
        self.key = ""
        self.label = adapter.label
        self.layout = adapter.layout
        self.config_file = ""
        self.width = self.height = 0
        self.box_areas: list[float] = []  # the last frame's output boxes, px² at the output size
        self._state: dict[str, torch.Tensor] | None = None

    @property
    def init(self) -> str:
        if self.weights:
            return f"MODEL.WEIGHTS {self.weights}"
        return f"random (seed {self.seed}), batch-norm statistics of the first frame"

    def forced(self, num: int) -> CfgNode:
        return self.adapter.force_detections(self.cfg, num)

    def probes(self, model: nn.Module) -> list[Probe]:
        return self.adapter.probes(model)

    def start_video(self, model: nn.Module) -> None:
        """Called before the first frame of each setting."""

    def run_frame(self, model: nn.Module, image: torch.Tensor) -> int:
        """One (C, H, W) uint8 frame in the model's input format → number of detections."""
        raise NotImplementedError

    def image(self, frame: torch.Tensor) -> torch.Tensor:
        """A BGR (3, H, W) frame in the model's INPUT.FORMAT."""
        return frame.flip(0) if self.cfg.INPUT.FORMAT == "RGB" else frame

    def _first_frame(self, model: nn.Module, image: torch.Tensor) -> None:
        self.start_video(model)
        self.run_frame(model, image)

    def build(self, num: int, first: torch.Tensor) -> nn.Module:
        """The model forced to ``num`` detections, with the same weights for every ``num``."""
        torch.manual_seed(self.seed)
        model = build_model(self.forced(num)).eval()
        if self.weights:
            DetectionCheckpointer(model).load(self.weights)
        elif self._state is None:
            image = self.image(first)
            count = estimate_norm_statistics(model, lambda: self._first_frame(model, image))
            logger.info(f"{self.label}: statistics of {count} batch norms from the first frame")
            self._state = copy.deepcopy(model.state_dict())
        else:
            model.load_state_dict(self._state)
        return model


class VISSubject(Subject):
    """A vis_d2 model (:class:`~vis_d2.modeling.FrameModel`: a video model, run online, or an
    image model, image by image), its dense graphs on ``backend``."""

    def __init__(self, cfg: CfgNode, weights: str, seed: int, backend: str = "eager"):
        if backend == "amp":
            cfg = cfg.clone()
            cfg.TEST.AMP.ENABLED = True
        arch = cfg.MODEL.META_ARCHITECTURE
        if not issubclass(META_ARCH_REGISTRY.get(arch), FrameModel):
            raise SystemExit(
                f"MODEL.META_ARCHITECTURE {arch} is not a vis_d2 model "
                "(vis_d2.modeling.FrameModel)"
            )
        super().__init__(cfg, benchmark_adapter(arch), weights, seed)
        self.backend = backend
        self.key = arch.lower()
        self.box_sizes = BoxSizes()
        self.init_note = ""
        self._export_dir: tempfile.TemporaryDirectory | None = None

    @property
    def exported(self) -> bool:
        """The dense graphs run as an export: the modules' probes do not fire, and each
        graph's time is counted in the part that is open when it is called."""
        return self.backend in ("torchscript", "onnx")

    @property
    def init(self) -> str:
        note = super().init
        if not self.weights and self.init_note:
            note = f"{note}, {self.init_note}"
        if self.exported:
            note += "; the exported graphs' time falls in the part open when they run"
        return note

    def build(self, num: int, first: torch.Tensor) -> nn.Module:
        model = super().build(num, first)
        if self.exported:
            if self._export_dir is None:  # the graphs hold the weights: one export for all N
                self._export_dir = tempfile.TemporaryDirectory(prefix="vis_d2_benchmark_")
                image = self.image(first)
                export_model(model, self.forced(num), [image, image], self._export_dir.name,
                             self.backend)  # fmt: skip
            model.use_graphs(load_graphs(self._export_dir.name, model.device))
        if not self.weights:  # after use_graphs: forcing wraps the graphs the model runs
            self.init_note = self.adapter.force_box_sizes(model, self.box_sizes)
        return model

    def start_video(self, model: nn.Module) -> None:
        model.reset()

    def run_frame(self, model: nn.Module, image: torch.Tensor) -> int:
        out = model.inference_frame({"image": image, "height": self.height, "width": self.width})
        self.box_areas = out.pred_boxes.area().tolist()
        return len(out)


class RCNNSubject(Subject):
    """detectron2's Mask R-CNN, run image by image through its ``forward``."""

    def __init__(self, cfg: CfgNode, weights: str, seed: int, name: str):
        super().__init__(cfg, MaskRCNNAdapter(), weights, seed)
        self.key = "mask_rcnn"
        self.label = name

    def run_frame(self, model: nn.Module, image: torch.Tensor) -> int:
        inputs = [{"image": image, "height": self.height, "width": self.width}]
        with torch.no_grad():
            out = model(inputs)[0]["instances"]
        self.box_areas = out.pred_boxes.area().tolist()
        return len(out)


def resolve_device(requested: str | None, configured: str) -> torch.device:
    """``requested`` (e.g. ``--device``), else ``configured`` (``MODEL.DEVICE``), falling back
    to the CPU when CUDA was only configured and is not available."""
    device = torch.device(requested or configured)
    if device.type == "cuda" and not torch.cuda.is_available():
        if requested:
            raise SystemExit(f"--device {requested}: CUDA is not available")
        logger.info(f"MODEL.DEVICE is {configured} but CUDA is not available: running on the CPU")
        device = torch.device("cpu")
    return device


def load_frames(
    source: str | None, size: tuple[int, int], count: int, seed: int
) -> list[torch.Tensor]:
    """``count`` BGR uint8 (3, H, W) frames: random, or read from ``source`` and resized to
    ``size`` (W, H) (its frames repeat from the start when it has fewer)."""
    width, height = size
    if source is None:
        generator = torch.Generator().manual_seed(seed)
        return list(torch.randint(0, 256, (count, 3, height, width), generator=generator).byte())
    frames: list[torch.Tensor] = []
    for _, frame in open_frames(source):
        resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        frames.append(torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))))
        if len(frames) == count:
            break
    if len(frames) < count:
        logger.info(f"{source} has {len(frames)} frames; repeating them to make {count}")
    return [frames[i % len(frames)] for i in range(count)]
