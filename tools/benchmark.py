#!/usr/bin/env python
"""Per-frame video inference benchmark: VIS models against detectron2's Mask R-CNN, in one run.

    python tools/benchmark.py                               # 640x360, default config vs R50-FPN
    python tools/benchmark.py --frames 10 --output out/bench   # + benchmark.json and a plot
    python tools/benchmark.py --config-file configs/SGNet_R101.yaml MODEL.WEIGHTS m.pth
    python tools/benchmark.py --config-file A.yaml --config-file B.yaml   # two methods side by side
    python tools/benchmark.py --skip-baseline --detections 100 --profile

Every model runs at batch 1 on the same frames at ``--size``; a VIS model (any registered
META_ARCH implementing ``vis_d2.modeling.VISModel``) runs online (``reset()``, then
``inference_frame`` frame after frame, so its tracking works). For each
number of detections N, every model is configured to output exactly N a frame (every candidate
passes the score threshold, NMS at IoU 1.0 suppresses nothing, the top N are kept) and the
actual count of every frame is checked. Every (model, N) setting is its own model instance,
and the settings take turns frame by frame, so that a machine whose speed drifts slows them
alike. Reported per setting, after ``--warmup`` frames: latency median / p90 / mean of
``--frames`` frames, FPS = frames / their compute time, memory (weights + the largest rise
during one frame: CUDA max_memory_allocated, or the process's peak RSS on the CPU), and the
split of the frame into parts (forward hooks and method wrappers; CUDA events on CUDA; the
parts are the model's ``benchmark_probes``). Trailing ``KEY VALUE`` options go to every VIS
model's config.

Without MODEL.WEIGHTS among the trailing options the models are randomly initialised (the
config's ImageNet backbone is not loaded). Values then change, not the work done, except where
the work depends on them, so two things are set: the batch-norm statistics are taken from the
first frame (otherwise a random ResNet's activations grow without bound, RPN proposals become
the whole image and NMS leaves few boxes), and the forced detections get realistic boxes
(``init_for_benchmark``: random weights give empty or arbitrary ones, and the mask work follows
the boxes' areas): sides log-uniform in ``--box-sides`` (32-256 px: a third in each of
YouTube-VIS's small, medium and large ranges at 640x360), aspect ratios log-uniform in 1/2-2,
one fixed size per location. The mean box area of the timed frames is reported per setting.

The exit status is 1 when a model did not output the forced number of detections.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from tabulate import tabulate
from torch import nn

from vis_d2.config import get_cfg as get_vis_cfg
from vis_d2.export import export_model, load_graphs
from vis_d2.modeling import VISModel
from vis_d2.utils.benchmark import (
    BoxSizes,
    MemoryMeter,
    PartTimer,
    Probe,
    env_summary,
    estimate_norm_statistics,
    latency_stats,
    parts_of_profile,
    rcnn_probes,
)
from vis_d2.utils.precision import cpu_info, use_autocast
from vis_d2.utils.video_io import open_frames

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "SGNet_R50.yaml"
BASELINE_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
RCNN_LAYOUT = [
    ("backbone", "backbone + FPN"),
    ("rpn", "RPN"),
    ("roi_heads", "ROI heads"),
    ("roi_heads/box", "- box head"),
    ("roi_heads/box_postprocess", "- box post-processing (NMS, top-k)"),
    ("roi_heads/mask", "- mask head"),
    ("postprocess", "paste masks into the image"),
    ("other", "other (preprocessing)"),
]
GOAL_SCALING = 1.05
GOAL_VS_BASELINE = 0.35
GOAL_HEADS_PCT = 15.0
GOAL_ASSEMBLY_PCT = 3.0
GOAL_BACKEND = 1 / 1.3
BACKENDS = ("eager", "amp", "torchscript", "onnx")
BACKEND_LABELS = {
    "amp": "autocast",
    "torchscript": "TorchScript",
    "onnx": "ONNX Runtime",
}


def backend_label(backend: str, device: torch.device) -> str:
    """The row label of ``backend``; autocast names the precision it gives on ``device`` (fp32
    on a CPU without native bf16, where TEST.AMP.ENABLED falls back)."""
    if backend != "amp":
        return BACKEND_LABELS[backend]
    if device.type != "cpu":
        return "autocast, fp16"
    if use_autocast(True, device, "--backends amp"):
        return "autocast, bf16"
    return "autocast requested, fp32: no native bf16"


def parse_size(text: str) -> tuple[int, int]:
    """``"640x360"`` → (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT, e.g. 640x360, not {text}"
        ) from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"size {text} is too small (at least 32x32)")
    return width, height


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config-file",
        action="append",
        metavar="FILE",
        help="a VIS model's config; repeat it to benchmark several models side by side "
        f"(default: {DEFAULT_CONFIG.relative_to(REPO)})",
    )
    parser.add_argument(
        "--baseline-config",
        default=BASELINE_CONFIG,
        metavar="FILE",
        help="the two-stage baseline: a config file or a detectron2 model-zoo name "
        f"(default: {BASELINE_CONFIG})",
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="benchmark the VIS models only"
    )
    parser.add_argument(
        "--size", type=parse_size, default=(640, 360), metavar="WxH", help="input size (640x360)"
    )
    parser.add_argument(
        "--detections",
        type=positive_int,
        nargs="+",
        default=[1, 10, 50, 100],
        metavar="N",
        help="detections per frame to force (default: 1 10 50 100)",
    )
    parser.add_argument(
        "--frames", type=positive_int, default=20, help="timed frames per setting (20)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first (5)")
    parser.add_argument(
        "--device",
        help="cpu, cuda or cuda:K (default: the first config's MODEL.DEVICE, cpu without GPU)",
    )
    parser.add_argument(
        "--input",
        metavar="PATH",
        help="frames from a video, image folder or glob, resized to --size (default: random)",
    )
    parser.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--output", metavar="DIR", help="write benchmark.json and a plot here")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        metavar="MODEL",
        help="also run torch.profiler on this model (its key in benchmark.json: the "
        "META_ARCHITECTURE in lower case, or mask_rcnn; default: the first VIS model) at the "
        "largest N and print the top operators, overall and per part",
    )
    parser.add_argument(
        "--goals",
        action="store_true",
        help="also check the ratios against vis_d2's speed goals (one-stage VIS time nearly "
        f"independent of the number of detections: latency(most) / latency(fewest) <= "
        f"{GOAL_SCALING}, <= {GOAL_VS_BASELINE}x Mask R-CNN, heads and tracker <= "
        f"{GOAL_HEADS_PCT:g}%% and mask assembly <= {GOAL_ASSEMBLY_PCT:g}%% of the frame, "
        f"another backend <= {GOAL_BACKEND:.2f}x eager's latency)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=["eager"],
        metavar="B",
        help="how each VIS model runs its dense graphs: eager (fp32 PyTorch), amp (autocast, "
        "TEST.AMP.ENABLED: bf16 on the CPU, fp16 on CUDA), torchscript or onnx (its export, "
        "through tools/export_model.py's exporter and ONNX Runtime); several are timed side by "
        "side (default: eager)",
    )
    parser.add_argument(
        "--box-sides",
        type=float,
        nargs=2,
        default=(BoxSizes.min_side, BoxSizes.max_side),
        metavar=("MIN", "MAX"),
        help="randomly initialised models: the sides of the forced detections' boxes, "
        "log-uniform, in network-input pixels (default: 32 256, a third in each of "
        "YouTube-VIS's small, medium and large ranges at 640x360)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random weights and frames (0)")
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="VIS config options as KEY VALUE pairs, e.g. MODEL.WEIGHTS model.pth",
    )
    return parser


# ----------------------------------------------------------------------------- the models
class Subject:
    """One benchmarked model: its config, how to force N detections, build it and run a frame."""

    key = ""
    label = ""
    layout: list[tuple[str, str]] = []
    backend = "eager"
    config_file = ""
    box_areas: list[float] = []  # the last frame's output boxes, px² at the output size

    def __init__(self, cfg: CfgNode, weights: str, seed: int):
        self.cfg = cfg
        self.weights = weights
        self.seed = seed
        self.width = self.height = 0
        self._state: dict[str, torch.Tensor] | None = None

    @property
    def init(self) -> str:
        if self.weights:
            return f"MODEL.WEIGHTS {self.weights}"
        return f"random (seed {self.seed}), batch-norm statistics of the first frame"

    def forced(self, num: int) -> CfgNode:
        raise NotImplementedError

    def probes(self, model: nn.Module) -> list[Probe]:
        raise NotImplementedError

    def start_video(self, model: nn.Module) -> None:
        """Called before the first frame of each setting."""

    def run_frame(self, model: nn.Module, image: torch.Tensor) -> int:
        """One (C, H, W) uint8 frame in the model's input format → number of detections."""
        raise NotImplementedError

    def image(self, frame: torch.Tensor) -> torch.Tensor:
        """A BGR (3, H, W) frame in the model's INPUT.FORMAT."""
        return frame.flip(0) if self.cfg.INPUT.FORMAT == "RGB" else frame

    def _random_init(self, model: nn.Module, first: torch.Tensor) -> None:
        count = estimate_norm_statistics(model, lambda: self._first_frame(model, first))
        logger.info(f"{self.label}: statistics of {count} batch norms taken from the first frame")

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
            self._random_init(model, self.image(first))
            self._state = copy.deepcopy(model.state_dict())
        else:
            model.load_state_dict(self._state)
            self._prepare_random(model)
        return model

    def _prepare_random(self, model: nn.Module) -> None:
        """What a randomly initialised model needs besides its weights (each one built)."""


class VISSubject(Subject):
    """A :class:`~vis_d2.modeling.VISModel`, run online, its dense graphs on ``backend``."""

    def __init__(self, cfg: CfgNode, weights: str, seed: int, backend: str = "eager"):
        if backend == "amp":
            cfg = cfg.clone()
            cfg.TEST.AMP.ENABLED = True
        super().__init__(cfg, weights, seed)
        self.backend = backend
        self.box_sizes = BoxSizes()
        self._export_dir: tempfile.TemporaryDirectory | None = None
        self.model_class = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
        if not issubclass(self.model_class, VISModel):
            raise SystemExit(
                f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} is not a VIS model "
                "(vis_d2.modeling.VISModel)"
            )
        self.key = cfg.MODEL.META_ARCHITECTURE.lower()
        self.label = self.model_class.display_name
        self.layout = self.model_class.benchmark_layout
        self.init_note = ""

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

    def forced(self, num: int) -> CfgNode:
        return self.model_class.force_detections(self.cfg, num)

    def build(self, num: int, first: torch.Tensor) -> nn.Module:
        model = super().build(num, first)
        if self.exported:
            if self._export_dir is None:  # the graphs hold the weights: one export for all N
                self._export_dir = tempfile.TemporaryDirectory(prefix="vis_d2_benchmark_")
                image = self.image(first)
                export_model(model, self.forced(num), [image, image], self._export_dir.name,
                             self.backend)  # fmt: skip
            model.use_graphs(load_graphs(self._export_dir.name, model.device))
        return model

    def probes(self, model: nn.Module) -> list[Probe]:
        return model.benchmark_probes()

    def start_video(self, model: nn.Module) -> None:
        model.reset()

    def run_frame(self, model: nn.Module, image: torch.Tensor) -> int:
        out = model.inference_frame({"image": image, "height": self.height, "width": self.width})
        self.box_areas = out.pred_boxes.area().tolist()
        return len(out)

    def _random_init(self, model: nn.Module, first: torch.Tensor) -> None:
        self._prepare_random(model)
        super()._random_init(model, first)

    def _prepare_random(self, model: nn.Module) -> None:
        self.init_note = model.init_for_benchmark(self.box_sizes)


class RCNNSubject(Subject):
    key = "mask_rcnn"
    layout = RCNN_LAYOUT

    def __init__(self, cfg: CfgNode, weights: str, seed: int, name: str):
        super().__init__(cfg, weights, seed)
        self.label = name

    def forced(self, num: int) -> CfgNode:
        cfg = self.cfg.clone()
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 1.0
        cfg.TEST.DETECTIONS_PER_IMAGE = num
        return cfg

    def probes(self, model: nn.Module) -> list[Probe]:
        return rcnn_probes(model)

    def run_frame(self, model: nn.Module, image: torch.Tensor) -> int:
        inputs = [{"image": image, "height": self.height, "width": self.width}]
        with torch.no_grad():
            out = model(inputs)[0]["instances"]
        self.box_areas = out.pred_boxes.area().tolist()
        return len(out)


# ------------------------------------------------------------------------------ the setup
def resolve_device(requested: str | None, configured: str) -> torch.device:
    device = torch.device(requested or configured)
    if device.type == "cuda" and not torch.cuda.is_available():
        if requested:
            raise SystemExit(f"--device {requested}: CUDA is not available")
        logger.info(f"MODEL.DEVICE is {configured} but CUDA is not available: running on the CPU")
        device = torch.device("cpu")
    return device


def option_value(opts: list[str], key: str) -> str | None:
    """The value given to ``key`` in KEY VALUE ``opts`` (the last one), or None."""
    values = [value for k, value in zip(opts[::2], opts[1::2], strict=False) if k == key]
    return values[-1] if values else None


def setup_subjects(args: argparse.Namespace) -> tuple[list[Subject], torch.device]:
    if len(args.opts) % 2:
        raise SystemExit(f"config options must be KEY VALUE pairs, got {args.opts}")
    weights = option_value(args.opts, "MODEL.WEIGHTS") or ""
    subjects: list[Subject] = []
    device = None
    for path in args.config_file or [str(DEFAULT_CONFIG)]:
        cfg = get_vis_cfg()
        cfg.merge_from_file(path)
        cfg.merge_from_list(args.opts)
        device = device or resolve_device(args.device, cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = str(device)
        arch = cfg.MODEL.META_ARCHITECTURE
        same = len({s.config_file for s in subjects if s.cfg.MODEL.META_ARCHITECTURE == arch})
        for backend in dict.fromkeys(args.backends):
            subject = VISSubject(cfg, weights, args.seed, backend)
            subject.config_file = path
            subject.box_sizes = BoxSizes(*args.box_sides, seed=args.seed)
            if same:  # a second config of the same method, e.g. another backbone
                subject.key = f"{subject.key}#{same + 1}"
                subject.label = f"{subject.label} ({Path(path).stem})"
            if backend != "eager":
                subject.key = f"{subject.key}@{backend}"
                subject.label = f"{subject.label} [{backend_label(backend, device)}]"
            subjects.append(subject)
    if not args.skip_baseline:
        path = args.baseline_config
        base = get_cfg()
        base.merge_from_file(path if os.path.isfile(path) else model_zoo.get_config_file(path))
        base.MODEL.DEVICE = str(device)
        name = Path(path).stem.replace("mask_rcnn_", "Mask R-CNN ").replace("_3x", "")
        subjects.append(RCNNSubject(base, "", args.seed, name.replace("_", "-")))
        subjects[-1].config_file = path
    for subject in subjects:
        subject.width, subject.height = args.size
    return subjects, device


def load_frames(
    source: str | None, size: tuple[int, int], count: int, seed: int
) -> list[torch.Tensor]:
    """``count`` BGR uint8 (3, H, W) frames: random, or read from ``source`` and resized (its
    frames repeat from the start when it has fewer)."""
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


# ---------------------------------------------------------------------------- measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def group_ms(parts: dict[str, float], group: str) -> float:
    return sum(v for k, v in parts.items() if k == group or k.startswith(group + "/"))


def weights_mb(model: nn.Module) -> float:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def summarize(
    num: int,
    frame_ms: list[float],
    counts: list[int],
    parts: list[dict[str, float]],
    memory: dict[str, float],
) -> dict[str, Any]:
    """One setting's record from its timed frames."""
    names = sorted({k for p in parts for k in p})
    parts_ms = {k: float(np.mean([p.get(k, 0.0) for p in parts])) for k in names}
    total = sum(parts_ms.values())
    groups_ms = {g: group_ms(parts_ms, g) for g in dict.fromkeys(k.split("/")[0] for k in names)}
    return {
        "detections": num,
        "counts": counts,
        "count_ok": all(c == num for c in counts),
        "latency_ms": latency_stats(frame_ms),
        "fps": len(frame_ms) / (sum(frame_ms) / 1e3),
        "frame_ms": frame_ms,
        "parts_ms": parts_ms,
        "groups_ms": groups_ms,
        "groups_pct": {g: 100 * v / total for g, v in groups_ms.items()},
        "memory_mb": memory,
    }


def benchmark(
    subjects: list[Subject],
    detections: list[int],
    frames: list[torch.Tensor],
    warmup: int,
    device: torch.device,
) -> dict[str, list[dict[str, Any]]]:
    """Every (model, N) setting, one frame of each in turn, so that a machine whose speed
    drifts (shared cores) slows all settings alike. Each setting is its own model instance
    and video: it sees ``frames`` in order, the first ``warmup`` of them untimed."""
    runs = [(s, num, s.build(num, frames[0])) for s in subjects for num in detections]
    images = {s.key: [s.image(f) for f in frames] for s in subjects}
    frame_ms: list[list[float]] = [[] for _ in runs]
    counts: list[list[int]] = [[] for _ in runs]
    areas: list[list[float]] = [[] for _ in runs]
    parts: list[list[dict[str, float]]] = [[] for _ in runs]
    working = [0.0] * len(runs)
    timer = PartTimer(device)
    meter = MemoryMeter(device)
    with contextlib.ExitStack() as stack:
        for subject, _, model in runs:
            stack.enter_context(timer.instrument(subject.probes(model)))
            subject.start_video(model)
        for i in range(len(frames)):
            for r, (subject, _, model) in enumerate(runs):
                with meter:
                    sync(device)
                    start = time.perf_counter()
                    with timer.frame() as frame_parts:
                        count = subject.run_frame(model, images[subject.key][i])
                    sync(device)
                    elapsed = (time.perf_counter() - start) * 1e3
                working[r] = max(working[r], meter.delta)
                if i >= warmup:
                    frame_ms[r].append(elapsed)
                    counts[r].append(count)
                    areas[r].extend(subject.box_areas)
                    parts[r].append(frame_parts)
            logger.info(f"frame {i + 1}/{len(frames)} of each setting done")
    results: dict[str, list[dict[str, Any]]] = {s.key: [] for s in subjects}
    for r, (subject, num, model) in enumerate(runs):
        weights = weights_mb(model)
        memory = {"weights": weights, "working": working[r], "peak": weights + working[r]}
        record = summarize(num, frame_ms[r], counts[r], parts[r], memory)
        record["box_area_px"] = {
            "mean": float(np.mean(areas[r])) if areas[r] else 0.0,
            "median": float(np.median(areas[r])) if areas[r] else 0.0,
        }
        results[subject.key].append(record)
    return results


def profile(
    subject: Subject,
    num: int,
    frames: list[torch.Tensor],
    args: argparse.Namespace,
    device: torch.device,
) -> str:
    """torch.profiler over a few frames of ``subject`` at ``num`` detections: the top
    operators overall, and per part."""
    model = subject.build(num, frames[0])
    images = [subject.image(f) for f in frames]
    warm = max(1, min(args.warmup, 2))
    timed = images[warm : warm + min(args.frames, 5)] or images[-1:]
    timer = PartTimer(device, profile_ranges=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    subject.start_video(model)
    with timer.instrument(subject.probes(model)):
        for image in images[:warm]:
            with timer.frame():
                subject.run_frame(model, image)
        with torch.profiler.profile(activities=activities) as prof:
            for image in timed:
                with timer.frame():
                    subject.run_frame(model, image)
            sync(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=25)
    rows = [
        [part, ", ".join(f"{op} {us / 1e3 / len(timed):.1f}" for op, us in ops)]
        for part, ops in sorted(parts_of_profile(prof.events()).items())
    ]
    per_part = tabulate(rows, headers=["part", "top operators, self CPU ms per frame"])
    return (
        f"torch.profiler: {subject.label}, {num} detections, {len(timed)} frames, "
        f"{args.size[0]}x{args.size[1]}, {device}\n{table}\n{per_part}\n"
    )


# ------------------------------------------------------------------------------ reports
def count_range(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def without_postprocess(setting: dict[str, Any], part: str) -> float:
    """Mean frame time less the mean time of ``part``: forcing N detections makes every
    (location or proposal, class) a candidate, so top-k and NMS do far more work than with a
    score threshold."""
    return setting["latency_ms"]["mean"] - setting["parts_ms"].get(part, 0.0)


def goal_ratios(
    results: dict[str, Any], subjects: list[Subject], goals: bool = False
) -> list[dict[str, Any]]:
    """The ratios within one run of every VIS model, from the settings with the fewest and
    most detections; with ``goals``, each also with its speed goal and whether it holds."""

    def ratio(name, label, value, goal, unit="x"):
        entry = {"name": name, "label": label, "value": value, "unit": unit}
        if goals:
            entry["goal"] = goal
            entry["pass"] = None if goal is None else bool(value <= goal)
        return entry

    base = results["mask_rcnn"]["settings"] if "mask_rcnn" in results else None
    ratios = []
    for subject in (s for s in subjects if isinstance(s, VISSubject)):
        key, name = subject.key, subject.label
        settings = results[key]["settings"]
        low, high = settings[0], settings[-1]
        lo_n, hi_n = low["detections"], high["detections"]
        ratios.append(
            ratio(
                f"{key}_scaling",
                f"{name} latency({hi_n}) / latency({lo_n})",
                high["latency_ms"]["median"] / low["latency_ms"]["median"],
                GOAL_SCALING,
            )
        )
        if base is not None:
            ratios.append(
                ratio(
                    f"{key}_vs_mask_rcnn",
                    f"{name} / Mask R-CNN latency at {hi_n} detections",
                    high["latency_ms"]["median"] / base[-1]["latency_ms"]["median"],
                    GOAL_VS_BASELINE,
                )
            )
            ratios.append(
                ratio(
                    f"{key}_vs_mask_rcnn_without_postprocess",
                    "- the same without detection post-processing (top-k, NMS), means",
                    without_postprocess(high, subject.model_class.benchmark_postprocess_part)
                    / without_postprocess(base[-1], "roi_heads/box_postprocess"),
                    None,
                )
            )
        eager = key.split("@")[0]
        if subject.backend != "eager" and eager in results:
            for which, n in ((0, lo_n), (-1, hi_n)):
                reference = results[eager]["settings"][which]["latency_ms"]["median"]
                ratios.append(
                    ratio(
                        f"{key}_vs_eager_{n}",
                        f"{name} / eager latency at {n} detections",
                        settings[which]["latency_ms"]["median"] / reference,
                        GOAL_BACKEND,
                    )
                )
        if subject.exported:
            continue  # its parts do not separate the graphs from the Python around them
        groups = subject.model_class.benchmark_head_groups
        ratios.append(
            ratio(
                f"{key}_heads_share",
                f"{name} ({' + '.join(groups)}) / frame at {hi_n} detections",
                sum(high["groups_pct"].get(g, 0.0) for g in groups),
                GOAL_HEADS_PCT,
                unit="%",
            )
        )
        assembly = subject.model_class.benchmark_assembly_part
        if assembly:
            ratios.append(
                ratio(
                    f"{key}_assembly_share",
                    f"{name} mask assembly / frame at {hi_n} detections",
                    100 * high["parts_ms"].get(assembly, 0.0) / sum(high["parts_ms"].values()),
                    GOAL_ASSEMBLY_PCT,
                    unit="%",
                )
            )
    if base is not None:
        ratios.append(
            ratio(
                "mask_rcnn_scaling",
                f"Mask R-CNN latency({base[-1]['detections']}) / "
                f"latency({base[0]['detections']})",
                base[-1]["latency_ms"]["median"] / base[0]["latency_ms"]["median"],
                None,
            )
        )
    return ratios


def format_ratio(value: float, unit: str) -> str:
    return f"{value:.1f}%" if unit == "%" else f"{value:.2f}x"


def latency_table(results: dict[str, Any], keys: list[str]) -> str:
    rows = []
    for key in keys:
        for s in results[key]["settings"]:
            lat = s["latency_ms"]
            counts = count_range(s["counts"])
            rows.append(
                [
                    results[key]["label"],
                    s["detections"],
                    counts if s["count_ok"] else f"{counts} (SHORT)",
                    f"{lat['median']:.1f}",
                    f"{lat['p90']:.1f}",
                    f"{lat['mean']:.1f}",
                    f"{s['fps']:.2f}",
                    f"{s['memory_mb']['weights']:.0f} + {s['memory_mb']['working']:.0f}",
                    f"{s['box_area_px']['mean']:.0f}",
                ]
            )
    headers = ["model", "forced N", "dets/frame", "median ms", "p90 ms", "mean ms", "FPS",
               "memory MiB", "mean box px²"]
    return tabulate(rows, headers=headers, tablefmt="pipe")


def split_table(result: dict[str, Any], layout: list[tuple[str, str]]) -> str:
    settings = result["settings"]
    rows = []
    for key, label in layout:
        row = [label]
        for s in settings:
            ms = group_ms(s["parts_ms"], key)
            total = sum(s["parts_ms"].values())
            row.append(f"{ms:.1f} ({100 * ms / total:.1f}%)")
        rows.append(row)
    rows.append(["frame (sum of parts)"] + [f"{sum(s['parts_ms'].values()):.1f}" for s in settings])
    headers = ["part, ms (% of frame)"] + [f"N={s['detections']}" for s in settings]
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def ratios_table(ratios: list[dict[str, Any]]) -> str:
    """The ratios, with their goal and verdict columns where they were checked."""
    goals = any("goal" in r for r in ratios)
    rows = []
    for r in ratios:
        row = [r["label"], format_ratio(r["value"], r["unit"])]
        if goals:
            row.append("-" if r["goal"] is None else f"<= {format_ratio(r['goal'], r['unit'])}")
            row.append("-" if r["pass"] is None else ("PASS" if r["pass"] else "MISS"))
        rows.append(row)
    headers = ["ratio", "value"] + (["goal", ""] if goals else [])
    return tabulate(rows, headers=headers, tablefmt="pipe")


def plot(results: dict[str, Any], keys: list[str], split: Subject, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in keys:
        settings = results[key]["settings"]
        n = [s["detections"] for s in settings]
        median = np.array([s["latency_ms"]["median"] for s in settings])
        p90 = np.array([s["latency_ms"]["p90"] for s in settings])
        left.errorbar(n, median, yerr=[np.zeros_like(median), p90 - median], marker="o",
                      capsize=3, label=results[key]["label"])
    left.set_xlabel("detections per frame")
    left.set_ylabel("latency per frame, ms (median, bar to p90)")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend()
    settings = results[split.key]["settings"]
    positions = np.arange(len(settings))
    bottom = np.zeros(len(settings))
    for group, label in ((k, v) for k, v in split.layout if "/" not in k):
        values = np.array([s["groups_ms"].get(group, 0.0) for s in settings])
        right.bar(positions, values, bottom=bottom, label=label)
        bottom += values
    right.set_xticks(positions, [str(s["detections"]) for s in settings])
    right.set_xlabel("detections per frame")
    right.set_ylabel("ms per frame (mean)")
    right.set_title(f"{split.label} frame by part")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    info = results["environment"]
    size = f"{info['size'][0]}x{info['size'][1]}"
    fig.suptitle(f"{size}, batch 1, {info['device']}, {info['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.warmup < 0:
        raise SystemExit("--warmup must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    subjects, device = setup_subjects(args)
    detections = sorted(set(args.detections))
    frames = load_frames(args.input, args.size, args.warmup + args.frames, args.seed)
    results: dict[str, Any] = {
        "environment": {
            **env_summary(device),
            "size": list(args.size),
            "warmup": args.warmup,
            "frames": args.frames,
            "input": args.input or "random",
            "memory_measure": "weights + the largest rise during one frame of the "
            + MemoryMeter(device).description,
        },
        "configs": [
            {"model": s.key, "file": s.config_file, "opts": args.opts, "backend": s.backend}
            for s in subjects
            if isinstance(s, VISSubject)
        ],
    }
    if not args.skip_baseline:
        results["baseline_config"] = args.baseline_config
    settings = benchmark(subjects, detections, frames, args.warmup, device)
    for subject in subjects:
        results[subject.key] = {
            "label": subject.label,
            "init": subject.init,
            "settings": settings[subject.key],
        }
    keys = [s.key for s in subjects]
    results["ratios"] = goal_ratios(results, subjects, args.goals)

    w, h = args.size
    print(f"\nPer-frame latency, batch 1, {w}x{h}, {device}, {torch.get_num_threads()} threads, "
          f"{args.warmup} warm-up + {args.frames} timed frames per setting, settings in turn")
    if device.type == "cpu":
        cpu = cpu_info()
        print(f"CPU: {cpu.describe()}, timings of class {cpu.cpu_class}")
    print(f"memory: {results['environment']['memory_measure']}")
    print(latency_table(results, keys))
    for subject in subjects:
        print(f"\n{subject.label}: mean time per part ({subject.init})")
        print(split_table(results[subject.key], subject.layout))
    print("\nRatios within this run" + (", against the speed goals" if args.goals else ""))
    print(ratios_table(results["ratios"]))

    if args.profile is not None:
        wanted = args.profile or subjects[0].key
        subject = next((s for s in subjects if s.key == wanted), None)
        if subject is None:
            known = ", ".join(s.key for s in subjects)
            raise SystemExit(f"--profile {wanted}: that model was not benchmarked ({known})")
        text = profile(subject, detections[-1], frames, args, device)
        print("\n" + text)
        if args.output:
            Path(args.output).mkdir(parents=True, exist_ok=True)
            (Path(args.output) / "profile.txt").write_text(text)

    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark.json").write_text(json.dumps(results, indent=2))
        plot(results, keys, subjects[0], out / "latency_vs_detections.png")
        logger.info(f"wrote {out / 'benchmark.json'} and {out / 'latency_vs_detections.png'}")

    short = [
        f"{results[k]['label']} at N={s['detections']}: {count_range(s['counts'])}"
        for k in keys
        for s in results[k]["settings"]
        if not s["count_ok"]
    ]
    if short:
        logger.error("fewer detections than forced: " + "; ".join(short))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
