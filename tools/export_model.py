#!/usr/bin/env python
"""Export a vis_d2 model's per-frame network to TorchScript or ONNX (detectron2's
tools/deploy/export_model.py, for video and image models).

    python tools/export_model.py --config-file configs/synthetic/SGNet_R18_synthetic.yaml \\
        --format torchscript --output exported/ --sample-input clip.mp4 \\
        MODEL.WEIGHTS output/sgnet_r18_synthetic/model_final.pth
    python tools/demo.py --exported exported/ --input clip.mp4 --output out/

The dense part of each frame (backbone, FPN and the dense layers of the heads) is exported as
graphs valid for any input size; the parts whose sizes depend
on the data (score threshold, top-k, NMS, the reads at the detections, mask assembly, the
tracker) run in Python around them, with the model's own code (``vis_d2.export.ExportedModel``
runs an export folder). Any registered META_ARCH that implements ``vis_d2.modeling.FrameModel``
(every video model, and image models such as SipMask) can be exported. The export is checked against
the eager model on the first ``--check-frames`` sample frames and only kept if they agree.
ONNX export needs the ``onnx`` package (running it, ``onnxruntime``).
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import itertools
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode

from vis_d2.engine import CheckpointError
from vis_d2.engine.predictor import (
    FramePreprocessor,
    check_weights,
    load_model,
    setup_cfg,
    setup_console_logging,
)
from vis_d2.export import (
    EXPORT_FORMATS,
    ExportedModel,
    ExportUnavailableError,
    compare_frames,
    export_model,
)
from vis_d2.export.runner import MANIFEST, require_module
from vis_d2.utils.video_io import StagedOutputs, VideoIOError, ensure_directory, open_frames

logger = logging.getLogger("vis_d2.export_model")

# the export is kept only if it reproduces the eager model on the sample frames this closely
MAX_BOX_DIFF = 1e-2  # px at the original resolution
MAX_SCORE_DIFF = 1e-3
MIN_MASK_IOU = 0.99


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a VIS model's per-frame network",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript")
    parser.add_argument("--output", required=True, help="folder to write the export to")
    parser.add_argument(
        "--sample-input",
        help="image, video, frame folder or glob whose first frames are traced and checked "
        "(default: random frames at the test resolution)",
    )
    parser.add_argument(
        "--check-frames",
        type=int,
        default=4,
        help="frames on which to compare the export with the eager model (0: no check)",
    )
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


class ExportCheckError(RuntimeError):
    """The exported model does not reproduce the eager one."""


def random_frames(cfg: CfgNode, count: int) -> list[np.ndarray]:
    """``count`` random BGR frames (H, W, 3) uint8 of 16:9 video at the test resolution."""
    height = cfg.INPUT.MIN_SIZE_TEST
    width = min(cfg.INPUT.MAX_SIZE_TEST, round(height * 16 / 9))
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def sample_frames(spec: str | None, cfg: CfgNode, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``spec`` (BGR uint8), or random ones without it."""
    if spec is None:
        logger.info("no --sample-input: tracing on random frames")
        return random_frames(cfg, count)
    return [frame for _, frame in itertools.islice(open_frames(spec), count)]


def check_output_dir(path: Path) -> None:
    """An existing ``path`` must be an empty folder or an earlier export, which is replaced."""
    reusable = path.is_dir() and (not any(path.iterdir()) or (path / MANIFEST).is_file())
    if path.exists() and not reusable:
        raise VideoIOError(
            f"output {path} exists and is not an export folder; choose another --output"
        )
    ensure_directory(path.parent)


def check_export(model: torch.nn.Module, exported: ExportedModel, inputs: list[dict]) -> dict:
    """Run both models on ``inputs`` as one video; returns :func:`compare_frames`'s metrics."""
    model.reset()
    exported.reset()
    eager = [model.inference_frame(x) for x in inputs]
    other = [exported.inference_frame(x) for x in inputs]
    return compare_frames(eager, other)


def agrees(metrics: dict) -> bool:
    return (
        metrics["same_counts"]
        and metrics["same_classes"]
        and metrics["same_track_ids"]
        and metrics["max_box_diff"] <= MAX_BOX_DIFF
        and metrics["max_score_diff"] <= MAX_SCORE_DIFF
        and metrics["min_mask_iou"] >= MIN_MASK_IOU
    )


def verify(model: torch.nn.Module, folder: Path, inputs: list[dict]) -> None:
    """Compare the export in ``folder`` with ``model`` on ``inputs``.

    Raises:
        ExportCheckError: when they disagree beyond the tolerances above.
    """
    try:
        exported = ExportedModel(folder, device=model.device)
    except ExportUnavailableError as e:
        logger.warning(f"the export is not checked: {e}")
        return
    metrics = check_export(model, exported, inputs)
    logger.info(f"export vs eager on {len(inputs)} frame(s): {metrics}")
    if not agrees(metrics):
        raise ExportCheckError(
            f"the export does not reproduce the eager model (boxes within {MAX_BOX_DIFF} px, "
            f"scores within {MAX_SCORE_DIFF}, mask IoU >= {MIN_MASK_IOU}, same counts, "
            f"classes and track ids): {metrics}"
        )


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    output = Path(args.output)
    try:
        if args.format == "onnx":
            require_module("onnx", "ONNX export")
        cfg = setup_cfg(args.config_file, args.opts)
        check_weights(cfg)
        check_output_dir(output)
        preprocess = FramePreprocessor(cfg)
        inputs = [
            preprocess(f)
            for f in sample_frames(args.sample_input, cfg, max(2, args.check_frames))
        ]
        model = load_model(cfg)
        with StagedOutputs() as staged:
            folder = staged.directory(output)
            export_model(model, cfg, [x["image"] for x in inputs[:2]], folder, args.format)
            if args.check_frames > 0:
                verify(model, folder, inputs[: args.check_frames])
            staged.commit()
    except (
        VideoIOError, FileNotFoundError, CheckpointError, ExportUnavailableError, ExportCheckError
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logger.info(f"wrote the {args.format} export to {output}")
    return 0


if __name__ == "__main__":
    setup_console_logging()
    sys.exit(main())
