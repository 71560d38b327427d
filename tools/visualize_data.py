#!/usr/bin/env python
"""Draw the ground truth of a registered video split (detectron2's tools/visualize_data.py, for
videos): masks, boxes, classes and track ids, one colour per track.

    python tools/visualize_data.py --config-file configs/synthetic/SGNet_R18_synthetic.yaml \\
        --source annotation --output-dir vis/ --num-videos 3
    python tools/visualize_data.py --config-file configs/synthetic/SGNet_R18_synthetic.yaml \\
        --source dataloader --output-dir vis/ --num-samples 8

``--source annotation`` writes one mp4 per video of the split (``--dataset``, default the first
of DATASETS.TRAIN), every frame as it is on disk; ``--source dataloader`` writes, for training
samples as the training loader gives them (resized, flipped), the key and the reference frame
side by side as one PNG. The config's DATASETS.REGISTER splits are registered first.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import logging
import sys
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_d2.data import (
    DatasetFormatError,
    build_video_train_loader,
    get_video_dataset_dicts,
    load_categories,
    register_config_splits,
)
from vis_d2.data.visualizer import TrackVisualizer, as_tracks, ground_truth_tracks
from vis_d2.engine.predictor import setup_cfg, setup_console_logging
from vis_d2.utils.video_io import (
    Mp4Writer,
    StagedOutputs,
    VideoIOError,
    check_output,
    video_frames,
)

logger = logging.getLogger("vis_d2.visualize_data")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    parser.add_argument("--output-dir", required=True, help="folder to write the drawings to")
    parser.add_argument("--dataset", help="split to draw (default: DATASETS.TRAIN[0])")
    parser.add_argument("--num-videos", type=int, default=None, help="annotation: first N videos")
    parser.add_argument("--num-samples", type=int, default=8, help="dataloader: samples drawn")
    parser.add_argument("--fps", type=float, default=5.0, help="annotation: video frame rate")
    parser.add_argument("--overwrite", action="store_true", help="replace existing drawings")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser


def draw_videos(videos: list[dict], visualizer: TrackVisualizer, out: Path, args) -> list[Path]:
    """Each video's frames with their ground truth → ``out/<video id>.mp4``."""
    written = []
    with StagedOutputs() as staged:
        for video in videos:
            final = check_output(out / f"{video['video_id']}.mp4", [], overwrite=args.overwrite)
            writer = Mp4Writer(staged.file(final), args.fps)
            try:
                for t, (_, frame) in enumerate(video_frames(video)):
                    gt = ground_truth_tracks(video.get("annotations", [[]] * video["length"])[t],
                                             frame.shape[:2])
                    writer.write(visualizer.draw(frame, gt))
            finally:
                writer.close()
            written.append(final)
        staged.commit()
    return written


def draw_samples(cfg, visualizer: TrackVisualizer, out: Path, args) -> list[Path]:
    """Training samples (key | reference) as the loader maps them → ``out/sample_*.png``."""
    written = []
    fmt = cfg.INPUT.FORMAT
    with StagedOutputs() as staged:
        for i, batch in enumerate(islice(build_video_train_loader(cfg), args.num_samples)):
            sample = batch[0]
            halves = []
            for image_key, inst_key in (("image", "instances"), ("ref_image", "ref_instances")):
                image = sample[image_key].permute(1, 2, 0).numpy()
                bgr = np.ascontiguousarray(image if fmt == "BGR" else image[:, :, ::-1])
                halves.append(visualizer.draw(bgr, as_tracks(sample[inst_key])))
            name = (f"sample_{i:03d}_video{sample['video_id']}_frames{sample['frame_idx']}-"
                    f"{sample['ref_frame_idx']}.png")
            final = check_output(out / name, [], overwrite=args.overwrite)
            path = staged.file(final)
            if not cv2.imwrite(str(path), np.concatenate(halves, axis=1)):
                raise VideoIOError(f"cannot write {path}")
            written.append(final)
        staged.commit()
    return written


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        cfg = setup_cfg(args.config_file, args.opts)
        register_config_splits(cfg)
        name = args.dataset or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
        if name is None or name not in DatasetCatalog.list():
            print(f"error: no registered split {name!r}; pass --dataset NAME", file=sys.stderr)
            return 1
        out = Path(args.output_dir)
        load_categories(name)
        visualizer = TrackVisualizer(MetadataCatalog.get(name))
        if args.source == "annotation":
            videos = get_video_dataset_dicts(name, filter_empty=False)[: args.num_videos]
            written = draw_videos(videos, visualizer, out, args)
        else:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.DATASETS.TRAIN = (name,)
            cfg.SOLVER.IMS_PER_BATCH = 1  # one sample a drawing, in this process
            cfg.DATALOADER.NUM_WORKERS = 0
            written = draw_samples(cfg, visualizer, out, args)
    except (VideoIOError, FileNotFoundError, DatasetFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logger.info(f"wrote {len(written)} drawings of {name} to {out}")
    return 0


if __name__ == "__main__":
    setup_console_logging()
    sys.exit(main())
