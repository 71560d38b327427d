#!/usr/bin/env python
"""Parameters, FLOPs and activations of a vis_d2 model per video frame (detectron2's
tools/analyze_model.py, for online video models).

    python tools/analyze_model.py --config-file configs/SGNet_R50.yaml --tasks parameter flop
    python tools/analyze_model.py --config-file configs/synthetic/SGNet_R18_synthetic.yaml \\
        --tasks flop activation --input datasets/synthetic_vis/valid/JPEGImages/valid_00000

FLOPs and activations are counted with fvcore on the model's online step,
``model.inference_frame(frame)``, for every frame of the input after the first (which is counted
on its own: a model that looks at the previous frame does less there). Without ``--input`` the
frames are random images of ``--size``. Counts depend on the number of detections, so they are
averaged over the frames; fvcore counts one multiply-add as one FLOP. Any model of
META_ARCH_REGISTRY with the online interface (``reset()``, ``inference_frame(frame)``) can be
analysed.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import logging
import sys
import warnings
from collections import Counter

import numpy as np
import torch
from detectron2.export import TracingAdapter
from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis, parameter_count_table
from torch import nn

from vis_d2.engine import CheckpointError
from vis_d2.engine.predictor import (
    FramePreprocessor,
    load_model,
    setup_cfg,
    setup_console_logging,
)
from vis_d2.utils.video_io import VideoIOError, open_frames

logger = logging.getLogger("vis_d2.analyze_model")

TASKS = ("parameter", "flop", "activation")
# elementwise and reduction ops that fvcore does not count (detectron2's list, plus the
# gathers of the sparse heads); counting them would not change the totals by 1%
IGNORED_OPS = (
    "aten::add", "aten::add_", "aten::argmax", "aten::argsort", "aten::batch_norm",
    "aten::constant_pad_nd", "aten::div", "aten::div_", "aten::exp", "aten::log2",
    "aten::max_pool2d", "aten::meshgrid", "aten::mul", "aten::mul_", "aten::neg",
    "aten::nonzero_numpy", "aten::reciprocal", "aten::rsub", "aten::sigmoid", "aten::sigmoid_",
    "aten::softmax", "aten::sort", "aten::sqrt", "aten::sub", "torchvision::nms",
)  # fmt: skip


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=["parameter", "flop"])
    parser.add_argument(
        "--input", help="a video file, frame folder or quoted glob (default: random frames)"
    )
    parser.add_argument(
        "--size", default="640x360", help="WxH of the random frames without --input"
    )
    parser.add_argument("--num-frames", type=int, default=4, help="frames analysed (>= 2)")
    parser.add_argument("--max-depth", type=int, default=3, help="depth of the parameter table")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser


def sample_frames(args: argparse.Namespace) -> list[np.ndarray]:
    """BGR uint8 (H, W, 3) frames: the first ``--num-frames`` of ``--input``, or random."""
    if args.input:
        frames = []
        for _, frame in open_frames(args.input):
            frames.append(frame)
            if len(frames) == args.num_frames:
                break
        return frames
    width, height = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    shape = (height, width, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(args.num_frames)]


class _Step(nn.Module):
    """One online step of ``model`` as a module of the frame's tensors (for fvcore's tracer)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frame: dict):
        return self.model.inference_frame(frame)


def count_per_frame(model: nn.Module, frames: list[dict], analysis: type) -> list[Counter]:
    """fvcore ``analysis`` (FLOPs or activations) of each online step, by operator."""
    counts = []
    model.reset()
    for frame in frames:
        # the traced run is the step itself: it advances the model's state as a normal one does
        adapter = TracingAdapter(_Step(model), (frame,), allow_non_tensor=True)
        counter = analysis(adapter, adapter.flattened_inputs)
        counter.set_op_handle(**{op: None for op in IGNORED_OPS})
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with warnings.catch_warnings():  # tracing notices: the trace is only counted
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            counts.append(Counter(counter.by_operator()))
    return counts


def report(name: str, unit: str, counts: list[Counter]) -> str:
    first, rest = counts[0], counts[1:]
    mean = Counter()
    for c in rest:
        mean.update(c)
    lines = [f"{name} per frame ({unit}): first frame {sum(first.values()) / 1e9:.3f}, "
             f"later frames {sum(mean.values()) / len(rest) / 1e9:.3f} (mean of {len(rest)})"]
    for op, value in mean.most_common():
        lines.append(f"  {op:<28} {value / len(rest) / 1e9:10.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.num_frames < 2:
        print("error: --num-frames must be >= 2 (the first frame is counted apart)",
              file=sys.stderr)
        return 2
    try:
        cfg = setup_cfg(args.config_file, args.opts)
        model = load_model(cfg)
        if "parameter" in args.tasks:
            print(parameter_count_table(model, max_depth=args.max_depth))
        if not {"flop", "activation"} & set(args.tasks):
            return 0
        preprocess = FramePreprocessor(cfg)
        frames = [preprocess(f) for f in sample_frames(args)]
        if len(frames) < 2:
            print(f"error: {args.input} has {len(frames)} frame; the analysis needs 2",
                  file=sys.stderr)
            return 1
        height, width = frames[0]["image"].shape[-2:]
        print(f"network input {width}x{height}, {len(frames)} frames")
        with torch.no_grad():
            if "flop" in args.tasks:
                print(report("FLOPs", "G", count_per_frame(model, frames, FlopCountAnalysis)))
            if "activation" in args.tasks:
                counts = count_per_frame(model, frames, ActivationCountAnalysis)
                print(report("Activations", "G", counts))
    except (VideoIOError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    setup_console_logging()
    sys.exit(main())
