#!/usr/bin/env python
"""Per-frame inference benchmark: vis_d2's video and image models against detectron2's Mask
R-CNN, in one run.

    python tools/benchmark.py --config-file configs/SGNet_R50.yaml   # 640x360, vs R50-FPN
    python tools/benchmark.py --config-file A.yaml --frames 10 --output out/bench  # + json, plot
    python tools/benchmark.py --config-file configs/SGNet_R101.yaml MODEL.WEIGHTS m.pth
    python tools/benchmark.py --config-file A.yaml --config-file B.yaml   # two methods side by side
    python tools/benchmark.py --config-file A.yaml --skip-baseline --detections 100 --profile

Every model runs at batch 1 on the same frames at ``--size``; a vis_d2 model (any registered
META_ARCH implementing ``vis_d2.modeling.FrameModel`` with a benchmark adapter,
``vis_d2.benchmark.register_benchmark_adapter``) runs ``inference_frame`` frame after frame: a
video model online (``reset()`` first, so its tracking works), an image model (SipMask) image
by image, e.g. ``--size 544x544`` or ``--size 1333x800`` for SipMask's real-time and
high-accuracy inputs. For each
number of detections N, every model is configured to output exactly N a frame (every candidate
passes the score threshold, NMS at IoU 1.0 suppresses nothing, the top N are kept) and the
actual count of every frame is checked. Every (model, N) setting is its own model instance,
and the settings take turns frame by frame, so that a machine whose speed drifts slows them
alike. Reported per setting, after ``--warmup`` frames: latency median / p90 / mean of
``--frames`` frames, FPS = frames / their compute time, memory (weights + the largest rise
during one frame: CUDA max_memory_allocated, or the process's peak RSS on the CPU), and the
split of the frame into parts (forward hooks and method wrappers; CUDA events on CUDA; the
parts are its adapter's ``probes``). Trailing ``KEY VALUE`` options go to every VIS
model's config.

Without MODEL.WEIGHTS among the trailing options the models are randomly initialised (the
config's ImageNet backbone is not loaded). Values then change, not the work done, except where
the work depends on them, so two things are set: the batch-norm statistics are taken from the
first frame (otherwise a random ResNet's activations grow without bound, RPN proposals become
the whole image and NMS leaves few boxes), and the forced detections get realistic boxes (the
adapter's ``force_box_sizes`` replaces the box regression among the frame graph's outputs:
random weights give empty or arbitrary boxes, and the mask work follows the boxes' areas):
sides log-uniform in ``--box-sides`` (32-256 px: a third in each of YouTube-VIS's small,
medium and large ranges at 640x360), aspect ratios log-uniform in 1/2-2, one fixed size per
location. The mean box area of the timed frames is reported per setting.

The exit status is 1 when a model did not output the forced number of detections.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg

from vis_d2.benchmark import BoxSizes, MemoryMeter, env_summary
from vis_d2.benchmark.report import (
    SPEED_GOALS,
    count_range,
    goal_ratios,
    latency_table,
    load_goals,
    plot,
    ratios_table,
    split_table,
)
from vis_d2.benchmark.runner import benchmark, profile
from vis_d2.benchmark.subjects import (
    RCNNSubject,
    Subject,
    VISSubject,
    load_frames,
    resolve_device,
)
from vis_d2.config import get_cfg as get_vis_cfg
from vis_d2.utils.precision import cpu_info, use_autocast

logger = logging.getLogger(__name__)

BASELINE_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
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
        required=True,
        metavar="FILE",
        help="a vis_d2 model's config; repeat it to benchmark several models side by side",
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
        nargs="?",
        const=str(SPEED_GOALS),
        metavar="FILE",
        help="also check the ratios against speed goals: a YAML file of upper bounds by kind "
        "(default: vis_d2's, vis_d2/benchmark/speed_goals.yaml)",
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


# ------------------------------------------------------------------------------ the setup
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
    for path in args.config_file:
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


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.warmup < 0:
        raise SystemExit("--warmup must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    goals = load_goals(args.goals) if args.goals else None
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
    results["ratios"] = goal_ratios(results, subjects, goals)

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
        text = profile(subject, detections[-1], frames, args.warmup, args.frames, device)
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
