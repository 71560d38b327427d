#!/usr/bin/env python
"""Score YouTube-VIS results against ground truth with the official protocol (ytvoseval).

    python tools/evaluate_ytvis.py GT.json RESULTS.json [--json-out STATS.json]

RESULTS may also be the results.zip written for the CodaLab servers.

Prints the 12 summary lines and the AP of every category; ``--json-out`` writes the 12 stats as
fractions, {"AP": ..., "AP50": ..., ...}. Bad input ends with exit code 1 and a message naming
the file and the item.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from typing import Any


class _InputError(Exception):
    """A problem with a file given on the command line; the message names it."""


def _read_json(path: str) -> Any:
    """A json file, or the single .json member of a zip (the results.zip that the evaluator
    writes for the CodaLab servers)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [n for n in archive.namelist() if n.endswith(".json")]
                if len(members) != 1:
                    raise _InputError(
                        f"{path}: a zip must hold one .json file, it holds {members or 'none'}"
                    )
                return json.loads(archive.read(members[0]).decode("utf-8"))
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise _InputError(f"{path}: not valid JSON ({e})") from e
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise _InputError(f"{path}: cannot be read ({e})") from e


def _write_json_atomic(path: str, payload: dict) -> None:
    from vis_d2.utils.file_io import atomic_write

    try:
        atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2) + "\n"), text=True)
    except OSError as e:
        raise _InputError(f"{path}: cannot be written ({e})") from e


def _category_table(per_category_ap: dict[str, float]) -> str:
    width = max([len("category"), *map(len, per_category_ap)])
    lines = [f"{'category':<{width}}  AP (%)", f"{'-' * width}  ------"]
    for name, ap in per_category_ap.items():
        value = f"{100 * ap:6.2f}" if ap >= 0 else "   n/a"
        lines.append(f"{name:<{width}}  {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 on success, 1 on bad input)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt", help="YouTube-VIS ground-truth json (2019/2021/OVIS schema)")
    parser.add_argument("results", help="results json: a list of per-track predictions")
    parser.add_argument("--json-out", help="also write the 12 stats (fractions) to this json file")
    args = parser.parse_args(argv)
    try:
        gt = _read_json(args.gt)
        results = _read_json(args.results)
        if isinstance(gt, list) and isinstance(results, dict):
            raise _InputError(
                f"the arguments look swapped: {args.gt} holds a list (results) and "
                f"{args.results} an object (ground truth); give the ground truth first"
            )
        # imported once the files are known to be readable: importing vis_d2 loads torch and
        # detectron2, which takes seconds
        from vis_d2.evaluation import STAT_NAMES, evaluate_ytvis

        result = evaluate_ytvis(gt, results, gt_source=args.gt, results_source=args.results)
        print(result.summary())
        print()
        print(_category_table(result.per_category_ap))
        if args.json_out:
            _write_json_atomic(args.json_out, {name: result.stats[name] for name in STAT_NAMES})
    except (_InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
