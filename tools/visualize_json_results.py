#!/usr/bin/env python
"""Draw a YouTube-VIS results json next to the ground truth of its split (detectron2's
tools/visualize_json_results.py, for videos).

    python tools/visualize_json_results.py \\
        --input output/inference/synthetic_vis_val/results.json \\
        --dataset synthetic_vis_val --output vis_results/ --conf-threshold 0.5

Writes one mp4 per video that has results: the predicted tracks on the left (one colour and
``#n`` per results entry, or per ``track_id`` where the entries carry one), the ground truth on
the right when the split has annotations. ``--input`` may also be the results.zip written for
the CodaLab servers. A split of one's own is registered with ``--config-file`` and its
DATASETS.REGISTER.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import json
import logging
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from vis_d2.data import DatasetFormatError, get_video_dataset_dicts, register_config_splits
from vis_d2.data.visualizer import TrackVisualizer, ground_truth_tracks
from vis_d2.engine.predictor import setup_cfg, setup_console_logging
from vis_d2.utils.video_io import (
    Mp4Writer,
    StagedOutputs,
    VideoIOError,
    check_output,
    video_frames,
)

logger = logging.getLogger("vis_d2.visualize_json_results")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", required=True, help="results.json (or results.zip)")
    parser.add_argument("--dataset", help="the split the results are of (default: the "
                        "config's DATASETS.TEST[0])")
    parser.add_argument("--output", required=True, help="folder to write the videos to")
    parser.add_argument("--conf-threshold", type=float, default=0.5, help="minimum entry score")
    parser.add_argument("--config-file", help="a config whose DATASETS.REGISTER is registered")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing videos")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser


def read_results(path: str) -> list[dict]:
    """The entries of a results json or of the single json of a zip."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [n for n in archive.namelist() if n.endswith(".json")]
                if len(members) != 1:
                    raise VideoIOError(f"{path}: a zip must hold one .json file, not {members}")
                data = json.loads(archive.read(members[0]))
        else:
            data = json.loads(Path(path).read_text())
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise VideoIOError(f"cannot read results {path}: {e}") from e
    if not isinstance(data, list):
        raise VideoIOError(f"{path}: expected a list of results, got {type(data).__name__}")
    return data


def _rle(seg: dict) -> dict:
    counts = seg["counts"]
    return {**seg, "counts": counts.encode() if isinstance(counts, str) else counts}


def frame_predictions(
    entries: list[tuple[int, dict]], t: int, size: tuple[int, int], to_contiguous: dict
) -> Instances:
    """Frame ``t`` of a video's (track id, entry) pairs → Instances to draw (score, class)."""
    present = [(tid, e) for tid, e in entries if e["segmentations"][t]]
    rles = [_rle(e["segmentations"][t]) for _, e in present]
    out = Instances(size)
    masks = [mask_util.decode(rle).astype(bool) for rle in rles]
    out.pred_masks = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, *size).bool()
    boxes = [mask_util.toBbox(rle) for rle in rles]
    xyxy = [[x, y, x + w, y + h] for x, y, w, h in boxes]
    out.pred_boxes = Boxes(torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4))
    out.scores = torch.tensor([float(e["score"]) for _, e in present])
    out.pred_classes = torch.tensor(
        [to_contiguous.get(e["category_id"], -1) for _, e in present], dtype=torch.int64
    )
    out.track_ids = torch.tensor([tid for tid, _ in present], dtype=torch.int64)
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        name = args.dataset
        if args.config_file:
            cfg = setup_cfg(args.config_file, args.opts)
            register_config_splits(cfg)
            name = name or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
        if name is None or name not in DatasetCatalog.list():
            print(f"error: no registered split {name!r}; pass --dataset NAME", file=sys.stderr)
            return 1
        results = read_results(args.input)
        videos = {v["video_id"]: v for v in get_video_dataset_dicts(name, filter_empty=False)}
        metadata = MetadataCatalog.get(name)
        to_contiguous = metadata.get("thing_dataset_id_to_contiguous_id", {})
        visualizer = TrackVisualizer(metadata)
        per_video: dict[int, list[tuple[int, dict]]] = defaultdict(list)
        for i, entry in enumerate(results):
            if entry["video_id"] not in videos:
                raise VideoIOError(
                    f"{args.input}: result {i} is of video {entry['video_id']}, which {name} "
                    "does not have"
                )
            if entry["score"] >= args.conf_threshold:
                per_video[entry["video_id"]].append((int(entry.get("track_id", i)), entry))
        out = Path(args.output)
        with StagedOutputs() as staged:
            for vid, entries in sorted(per_video.items()):
                video = videos[vid]
                final = check_output(out / f"{vid}.mp4", [args.input], overwrite=args.overwrite)
                writer = Mp4Writer(staged.file(final), args.fps)
                try:
                    for t, (_, frame) in enumerate(video_frames(video)):
                        size = frame.shape[:2]
                        drawn = visualizer.draw(frame, frame_predictions(entries, t, size,
                                                                         to_contiguous))
                        if "annotations" in video:
                            gt = ground_truth_tracks(video["annotations"][t], size)
                            drawn = np.concatenate([drawn, visualizer.draw(frame, gt)], axis=1)
                        writer.write(drawn)
                finally:
                    writer.close()
            staged.commit()
    except (VideoIOError, FileNotFoundError, DatasetFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logger.info(
        f"wrote {len(per_video)} videos to {out} ({sum(map(len, per_video.values()))} of "
        f"{len(results)} entries with a score >= {args.conf_threshold:g})"
    )
    return 0


if __name__ == "__main__":
    setup_console_logging()
    sys.exit(main())
