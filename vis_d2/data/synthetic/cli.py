"""``python -m vis_d2.data.synthetic``: the command line of the synthetic set's writer."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .coco_json import write_coco_json
from .dataset import MIN_SIDE, generate

__all__ = ["main"]


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (argument errors exit with 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m vis_d2.data.synthetic",
        description="Write a synthetic video instance segmentation data set in the YouTube-VIS "
                    "2019 format: DIR/{train,valid}/JPEGImages/<video>/*.jpg and "
                    "DIR/{train,valid}.json.")
    parser.add_argument("--out", required=True, help="output folder DIR")
    # the defaults are the set configs/synthetic/SGNet_R18_synthetic*.yaml are sized for: many
    # short videos, since appearance varies across instances far more than across frames. On 400
    # videos the long schedule overfit (AP 66 on training videos, 52 on validation ones)
    parser.add_argument("--videos", type=_int_at_least(1), default=1600,
                        help="train videos (default 1600)")
    parser.add_argument("--frames", type=_int_at_least(1), default=8,
                        help="frames per video (default 8)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default 0)")
    # 100 validation videos hold about 360 instances: few enough to evaluate quickly on a CPU,
    # enough that AP is not decided by a handful of objects
    parser.add_argument("--val-videos", type=_int_at_least(1), default=100,
                        help="valid videos (default 100)")
    parser.add_argument("--width", type=_int_at_least(MIN_SIDE), default=320,
                        help="frame width in pixels (default 320)")
    parser.add_argument("--height", type=_int_at_least(MIN_SIDE), default=192,
                        help="frame height in pixels (default 192)")
    parser.add_argument("--workers", type=_int_at_least(1), default=1,
                        help="parallel processes (default 1)")
    parser.add_argument("--coco", action="store_true",
                        help="also write DIR/{train,valid}_coco.json: the frames as a COCO "
                             "instances set for image models (image root DIR/<split>/JPEGImages)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        paths = generate(args.out, args.videos, args.frames, args.seed,
                         num_val_videos=args.val_videos, width=args.width, height=args.height,
                         workers=args.workers, progress=not args.no_progress)
        if args.coco:
            for split, path in list(paths.items()):
                paths[f"{split}_coco"] = write_coco_json(
                    path, path.with_name(f"{split}_coco.json"))
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:
        print(f"error: writing the data set failed: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    for split, path in paths.items():
        data = json.loads(path.read_text(encoding="utf-8"))
        if "videos" in data:
            frames = sum(v["length"] for v in data["videos"])
            print(f"{split}: {len(data['videos'])} videos, {frames} frames, "
                  f"{len(data['annotations'])} instances -> {path}")
        else:
            print(f"{split}: {len(data['images'])} images, {len(data['annotations'])} "
                  f"instances -> {path}")
    print(f"done in {elapsed:.1f} s")
    return 0
