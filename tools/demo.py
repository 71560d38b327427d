#!/usr/bin/env python
"""Run a VIS model on a video and write the tracked instances as an overlay video (detectron2's
demo/demo.py, for videos); run an image model (e.g. SipMask) on images or a video.

    python tools/demo.py --config-file configs/synthetic/SGNet_R18_synthetic.yaml \\
        --input datasets/synthetic_vis/valid/JPEGImages/valid_00000 --output demo_out/ --json \\
        MODEL.WEIGHTS output/sgnet_r18_synthetic/model_final.pth
    python tools/demo.py --exported exported_model/ --input clip.mp4 --output out/clip.mp4
    python tools/demo.py --config-file projects/SipMask/configs/SipMask_R50_1x.yaml \\
        --input photos/ --output out/ --json MODEL.WEIGHTS sipmask_r50.pth

The input is a video file, a folder of frames or a quoted glob of frames; it is read one frame
at a time and run online (each frame sees only the past), so memory does not grow with the
video's length. ``--output`` is an .mp4 path or a folder (the video is then named after the
input); the json and the PNG folder go beside the video. Outputs are written under temporary
names and only moved into place when the whole video has been processed; an output never
replaces an input, and replaces an existing file only with ``--overwrite``.

An image model (a META_ARCH that is not a ``vis_d2.modeling.VISModel``) sees each image or
frame on its own, without tracking; its instances are drawn by detectron2's ``Visualizer``. For
an image, a folder or a glob of images, ``--output`` is a folder that receives one overlay
``<image name>.png`` per image (or, for a single image, a .png/.jpg path), and ``--json`` writes
``<input name>.json`` there: detectron2's COCO results (image_id = the image's index, its
file_name, category_id, bbox, score, RLE segmentation). A video gives an overlay video and, with
``--json``, the same results per frame beside it. Images may differ in size.

The command line is checked before the model stack (torch, detectron2) is imported, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detectron2.data import Metadata

    from vis_d2.data.visualizer import TrackVisualizer
    from vis_d2.engine.predictor import FramePreprocessor
    from vis_d2.evaluation import TrackResults
    from vis_d2.export import ExportedModel
    from vis_d2.modeling import FrameModel
    from vis_d2.utils.video_io import FrameSource

logger = logging.getLogger("vis_d2.demo")

DEFAULT_FPS = 10.0  # frame folders and globs carry no frame rate
IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="video instance segmentation demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE", help="path to the model's config file")
    model.add_argument(
        "--exported",
        metavar="DIR",
        help="run a model exported by tools/export_model.py instead (its config is inside)",
    )
    parser.add_argument(
        "--input", required=True, help="a video file, a folder of frames, or a quoted glob"
    )
    parser.add_argument(
        "--output", help="an .mp4 file, or a folder to write <input name>.mp4 to (required)"
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.3,
        help="minimum score of the instances drawn and written to the json, and of the json's "
        "entries (default 0.3); the tracker sees all of the model's detections",
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help=f"output frame rate (default: the input video's, {DEFAULT_FPS:g} for frames)",
    )
    parser.add_argument(
        "--save-frames", action="store_true", help="also write each overlay frame as a PNG"
    )
    parser.add_argument(
        "--json", action="store_true", help="also write a YouTube-VIS results json (one entry "
        "per track, or TEST.CLASSES_PER_TRACK: video_id 1, category_id, score, per-frame RLE "
        "or null)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs that exist already"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="run even though MODEL.WEIGHTS is empty (a randomly initialised model)",
    )
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")
_GLOB_CHARS = re.compile(r"[*?\[]")
# containers other than mp4 that a user may name as --output by mistake
OTHER_VIDEO_SUFFIXES = (".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What the command line alone shows to be wrong; exits through ``parser.error``."""
    if args.opts and not _CONFIG_KEY.fullmatch(args.opts[0]):
        if os.path.exists(args.opts[0]):
            parser.error(
                f"--input takes one path, but {args.opts[0]} follows it (did the shell expand "
                "an unquoted glob? quote it: --input 'frames/*.jpg')"
            )
        parser.error(f"config overrides are KEY VALUE pairs; {args.opts[0]!r} is not a key")
    if args.output is None:
        parser.error("the following arguments are required: --output")
    if Path(args.output).suffix.lower() in OTHER_VIDEO_SUFFIXES:
        parser.error(
            f"--output {args.output}: only .mp4 videos are written; give an .mp4 path or a folder"
        )


@dataclass
class OutputPaths:
    video: Path
    json: Path | None
    frames: Path | None


def output_paths(
    output: str, source: FrameSource, *, save_json: bool, save_frames: bool, overwrite: bool
) -> OutputPaths:
    """Where the outputs go, each checked by :func:`check_output` against the input's files;
    creates nothing.

    Raises:
        VideoIOError: naming the path that cannot or may not be written.
    """
    from vis_d2.utils.video_io import VideoIOError, check_output

    out = Path(output)
    if out.suffix.lower() == ".mp4":
        if out.is_dir():
            raise VideoIOError(f"output {out} is a directory, not an .mp4 file")
        video = out
    else:
        if out.exists() and not out.is_dir():
            raise VideoIOError(f"cannot write to {out}: it exists and is not a directory")
        video = out / f"{source.name}.mp4"
    paths = OutputPaths(
        video=video,
        json=video.with_suffix(".json") if save_json else None,
        frames=video.with_name(f"{video.stem}_frames") if save_frames else None,
    )
    for path in (paths.video, paths.json, paths.frames):
        if path is not None:
            check_output(path, source.paths, overwrite=overwrite)
    return paths


class TrackOutputs:
    """What a video model's demo draws and writes: tracked instances coloured by track id,
    and the YouTube-VIS results of the tracks."""

    def __init__(self, visualizer: TrackVisualizer, results: TrackResults, threshold: float):
        self.visualizer = visualizer
        self.results = results
        self.threshold = threshold

    def draw(self, frame, instances):
        return self.visualizer.draw(frame, instances)

    def record(self, index: int, label: str, instances) -> None:
        self.results.add(instances)

    def entries(self) -> list[dict]:
        # a track's further classes (TEST.CLASSES_PER_TRACK) may score below it
        return [e for e in self.results.results() if e["score"] >= self.threshold]

    def describe(self, entries: list[dict]) -> str:
        return (
            f"{len(entries)} entries of {len(self.results.track_ids)} tracks (up to "
            f"{self.results.classes_per_track} classes per track, scores >= {self.threshold:g}; "
            "'track_id' is the #id drawn in the video)"
        )


class DetectionOutputs:
    """What an image model's demo draws and writes: each image's (or frame's) instances drawn
    by detectron2's Visualizer, and detectron2's COCO results of them."""

    def __init__(self, metadata: Metadata, ids: dict[int, int], threshold: float):
        self.metadata = metadata
        self.ids = ids
        self.threshold = threshold
        self.results: list[dict] = []

    def draw(self, frame, instances):
        """BGR (H, W, 3) uint8 ``frame`` with ``instances`` drawn by detectron2's Visualizer."""
        from detectron2.utils.visualizer import Visualizer

        drawn = Visualizer(frame[:, :, ::-1], self.metadata).draw_instance_predictions(instances)
        return drawn.get_image()[:, :, ::-1]

    def record(self, index: int, label: str, instances) -> None:
        """detectron2's COCO results of one image, category ids mapped to the data set's, each
        with the image's file (or frame) name; image_id = its index."""
        from detectron2.evaluation.coco_evaluation import instances_to_coco_json

        for r in instances_to_coco_json(instances, index):
            r["category_id"] = self.ids[r["category_id"]]
            r["file_name"] = label
            self.results.append(r)

    def entries(self) -> list[dict]:
        return self.results

    def describe(self, entries: list[dict]) -> str:
        return f"{len(entries)} detections (scores >= {self.threshold:g})"


def _write_json(staged, path: Path, entries: list[dict]) -> None:
    from vis_d2.utils.video_io import VideoIOError

    json_file = staged.file(path)
    try:
        json_file.write_text(json.dumps(entries))
    except OSError as e:
        raise VideoIOError(f"cannot write {json_file}: {e.strerror}") from e


def run(
    model: FrameModel | ExportedModel,
    source: FrameSource,
    paths: OutputPaths,
    *,
    preprocess: FramePreprocessor,
    outputs: TrackOutputs | DetectionOutputs,
    fps: float,
    threshold: float,
) -> int:
    """Stream ``source`` through ``model`` (``reset``/``inference_frame``) into the overlay
    video and the json; returns the number of frames. Nothing is left at ``paths`` unless
    every frame succeeded."""
    import cv2
    from tqdm import tqdm

    from vis_d2.utils.memory import TRIM_EVERY, trim_heap
    from vis_d2.utils.video_io import Mp4Writer, StagedOutputs, VideoIOError

    with StagedOutputs() as staged:
        writer = Mp4Writer(staged.file(paths.video), fps)
        frames_dir = staged.directory(paths.frames) if paths.frames else None
        model.reset()
        model_seconds, num_frames = 0.0, 0
        bar = tqdm(source, total=source.num_frames, unit="frame", desc=source.name)
        try:
            for t, (label, frame) in enumerate(bar):
                inputs = preprocess(frame)
                start = time.perf_counter()
                instances = model.inference_frame(inputs).to("cpu")
                model_seconds += time.perf_counter() - start
                instances = instances[instances.scores >= threshold]
                overlay = outputs.draw(frame, instances)
                writer.write(overlay)
                if frames_dir is not None:
                    png = frames_dir / f"{t:05d}.png"
                    if not cv2.imwrite(str(png), overlay):
                        raise VideoIOError(f"cannot write frame {png}")
                if paths.json is not None:
                    outputs.record(t, label, instances)
                num_frames = t + 1
                if num_frames % TRIM_EVERY == 0:
                    trim_heap()  # a long video's resident size stays flat
                bar.set_postfix(model_fps=f"{num_frames / max(model_seconds, 1e-9):.1f}")
        finally:
            writer.close()
            bar.close()
        if paths.json is not None:
            entries = outputs.entries()
            _write_json(staged, paths.json, entries)
        staged.commit()
    width, height = writer.size
    tracking = "" if isinstance(outputs, TrackOutputs) else ", no tracking"
    logger.info(
        f"{num_frames} frames of {source.description}, "
        f"{num_frames / max(model_seconds, 1e-9):.1f} FPS (model only{tracking})"
    )
    logger.info(f"wrote video {paths.video} ({width}x{height}, {num_frames} frames, {fps:g} fps)")
    if paths.json is not None:
        logger.info(f"wrote {outputs.describe(entries)} to {paths.json}")
    if paths.frames is not None:
        logger.info(f"wrote {num_frames} PNG frames to {paths.frames}")
    return num_frames


@dataclass
class ImageOutputPaths:
    overlays: list[Path]  # one per input image, in order
    json: Path | None


def image_output_paths(
    output: str, source: FrameSource, *, save_json: bool, overwrite: bool
) -> ImageOutputPaths:
    """Where an image model's overlays of the images of ``source`` go: ``<output>/<image
    name>.png`` each, or ``output`` itself for one image given a .png/.jpg path; each checked
    by :func:`check_output` against the inputs. Creates nothing.

    Raises:
        VideoIOError: naming the path that cannot or may not be written.
    """
    from vis_d2.utils.video_io import VideoIOError, check_output

    out = Path(output)
    if out.suffix.lower() in IMAGE_OUTPUT_SUFFIXES:
        if len(source.paths) != 1:
            raise VideoIOError(
                f"--output {out} names one image, but {source.description} has "
                f"{len(source.paths)}; give a folder"
            )
        overlays = [out]
        folder = out.parent
    else:
        if out.exists() and not out.is_dir():
            raise VideoIOError(f"cannot write to {out}: it exists and is not a directory")
        overlays = [out / f"{Path(p).stem}.png" for p in source.paths]
        folder = out
    if len(set(overlays)) != len(overlays):
        raise VideoIOError(
            f"{source.description} holds images of the same name in different formats; "
            "their overlays would collide in --output"
        )
    paths = ImageOutputPaths(overlays, folder / f"{source.name}.json" if save_json else None)
    for path in (*paths.overlays, paths.json):
        if path is not None:
            check_output(path, source.paths, overwrite=overwrite)
    return paths


def run_images(
    model: FrameModel | ExportedModel,
    source: FrameSource,
    paths: ImageOutputPaths,
    *,
    preprocess: FramePreprocessor,
    outputs: DetectionOutputs,
    threshold: float,
) -> int:
    """An image model on every image of ``source``, each on its own, into the overlays and
    the json; returns the number of images. Nothing is left at ``paths`` unless every image
    succeeded."""
    import cv2
    from tqdm import tqdm

    from vis_d2.utils.video_io import StagedOutputs, VideoIOError

    with StagedOutputs() as staged:
        model_seconds, count = 0.0, 0
        bar = tqdm(source, total=source.num_frames, unit="image", desc=source.name)
        try:
            for i, (label, frame) in enumerate(bar):
                inputs = preprocess(frame)
                start = time.perf_counter()
                instances = model.inference_frame(inputs).to("cpu")
                model_seconds += time.perf_counter() - start
                instances = instances[instances.scores >= threshold]
                overlay = staged.file(paths.overlays[i])
                if not cv2.imwrite(str(overlay), outputs.draw(frame, instances)):
                    raise VideoIOError(f"cannot write {paths.overlays[i]}")
                if paths.json is not None:
                    outputs.record(i, label, instances)
                count = i + 1
        finally:
            bar.close()
        if paths.json is not None:
            _write_json(staged, paths.json, outputs.entries())
        staged.commit()
    logger.info(
        f"{count} images of {source.description}, {count / max(model_seconds, 1e-9):.1f} "
        "images/s (model only)"
    )
    where = paths.overlays[0] if count == 1 else paths.overlays[0].parent
    logger.info(f"wrote {count} overlays to {where}")
    if paths.json is not None:
        logger.info(f"wrote {outputs.describe(outputs.entries())} to {paths.json}")
    return count


def main(argv: list[str] | None = None, *, console_logging: bool = False) -> int:
    """The demo; ``console_logging`` sets up detectron2-style logging to the console (the
    command line does, a caller embedding the demo keeps its own logging)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if not os.path.exists(args.input) and not _GLOB_CHARS.search(args.input):
        print(f"error: input {args.input} does not exist", file=sys.stderr)
        return 1
    # the model stack, once the command line is known to be sound
    from vis_d2.data import register_config_splits
    from vis_d2.data.visualizer import TrackVisualizer
    from vis_d2.engine import CheckpointError
    from vis_d2.engine.predictor import (
        FramePreprocessor,
        dataset_ids,
        load_model,
        metadata_of,
        setup_cfg,
        setup_console_logging,
    )
    from vis_d2.evaluation import TrackResults
    from vis_d2.export import ExportedModel, ExportUnavailableError
    from vis_d2.modeling import is_video_model
    from vis_d2.utils.video_io import VideoIOError, open_frames

    if console_logging:
        setup_console_logging()

    try:
        if args.exported:
            model = ExportedModel(args.exported, opts=args.opts)
            cfg = model.cfg
            logger.info(f"running the {model.format} export in {args.exported}")
        else:
            cfg = setup_cfg(args.config_file, args.opts)
            if not cfg.MODEL.WEIGHTS and not args.random_weights:
                print(
                    "error: MODEL.WEIGHTS is empty, so the model would be randomly initialised; "
                    "pass MODEL.WEIGHTS path/to/model_final.pth (or --random-weights to run "
                    "it anyway)",
                    file=sys.stderr,
                )
                return 1
            model = load_model(cfg)
        register_config_splits(cfg)
        metadata = metadata_of(cfg)
        video_model = is_video_model(cfg.MODEL.META_ARCHITECTURE)
        source = open_frames(args.input, same_size=video_model)
        threshold = args.confidence_threshold
        ids = dataset_ids(metadata, model.num_classes)
        if not video_model:
            outputs = DetectionOutputs(metadata, ids, threshold)
        else:
            results = TrackResults(1, ids, cfg.TEST.CLASSES_PER_TRACK)
            outputs = TrackOutputs(TrackVisualizer(metadata), results, threshold)
        preprocess = FramePreprocessor(cfg)
        if not source.is_video and not video_model:  # images, each on its own
            paths = image_output_paths(
                args.output, source, save_json=args.json, overwrite=args.overwrite
            )
            run_images(
                model, source, paths, preprocess=preprocess, outputs=outputs, threshold=threshold
            )
            return 0
        paths = output_paths(
            args.output,
            source,
            save_json=args.json,
            save_frames=args.save_frames,
            overwrite=args.overwrite,
        )
        run(
            model,
            source,
            paths,
            preprocess=preprocess,
            outputs=outputs,
            fps=args.fps or source.fps or DEFAULT_FPS,
            threshold=threshold,
        )
    except (VideoIOError, FileNotFoundError, CheckpointError, ExportUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(console_logging=True))
