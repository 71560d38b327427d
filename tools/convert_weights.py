#!/usr/bin/env python
"""Convert another implementation's released checkpoint to the model of a vis_d2 config.

    python tools/convert_weights.py --config-file CONFIG.yaml --input RELEASED.pth \\
        --output converted.pth [KEY VALUE ...]

The converter is the one registered for the config's ``MODEL.META_ARCHITECTURE``
(``vis_d2.engine.weight_conversion``). Every weight is accounted for: the report lists the
counts, the model weights filled rather than taken from the file and the file's weights left
unused, each with the reason. The result is checked by loading it strictly into the model and
written as a detectron2 checkpoint (``{"model": weights}``), so that ``MODEL.WEIGHTS
converted.pth`` loads it. A file that cannot be converted, a META_ARCHITECTURE without a
converter or weights of other shapes end with exit code 1 and ``error: ...``.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import argparse
import os
import sys
from collections import defaultdict

import torch

from vis_d2.engine.predictor import setup_cfg
from vis_d2.engine.weight_conversion import Conversion, ConversionError, convert_checkpoint
from vis_d2.utils.file_io import atomic_write


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a released checkpoint of another implementation to a vis_d2 model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument("--input", required=True, metavar="FILE", help="checkpoint to convert")
    parser.add_argument("--output", required=True, metavar="FILE", help="converted .pth to write")
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.FCOS.NUM_CLASSES 40",
    )
    return parser


def _grouped(items: list[tuple[str, str]]) -> list[str]:
    """(name, why) pairs → report lines, the names grouped under each reason."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for name, why in items:
        by_reason[why].append(name)
    lines = []
    for why, names in by_reason.items():
        lines.append(f"  {len(names)} × {why}:")
        lines.extend(f"    {name}" for name in names)
    return lines


def report(conversion: Conversion, arch: str, source: str) -> str:
    lines = [
        f"converted {source} for {arch}: {conversion.num_source} weights in the file, "
        f"{len(conversion.mapped)} mapped, {len(conversion.unused)} unused; "
        f"{len(conversion.state_dict)} model weights, {len(conversion.mapped)} from the file, "
        f"{len(conversion.filled)} filled",
        f"filled model weights ({len(conversion.filled)}):",
        *(_grouped(conversion.filled) or ["  none"]),
        f"unused weights of the file ({len(conversion.unused)}):",
        *(_grouped(conversion.unused) or ["  none"]),
    ]
    return "\n".join(lines)


def _same_file(a: str, b: str) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        cfg = setup_cfg(args.config_file, args.opts)
        if _same_file(args.input, args.output):
            raise ConversionError(f"--output {args.output} is the input file; name another")
        conversion, _ = convert_checkpoint(cfg, args.input)
        directory = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(directory, exist_ok=True)
        weights = conversion.state_dict
        atomic_write(args.output, lambda f: torch.save({"model": weights}, f))
    except (ConversionError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report(conversion, cfg.MODEL.META_ARCHITECTURE, args.input))
    print(f"wrote {args.output}; use it with MODEL.WEIGHTS {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
