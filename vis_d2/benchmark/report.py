"""The benchmark's reports: the ratios within one run (optionally against speed goals read
from a file), the latency, per-part and ratio tables, and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tabulate import tabulate

from .adapter import MaskRCNNAdapter
from .runner import group_ms
from .subjects import Subject, VISSubject

__all__ = [
    "GOAL_KINDS",
    "SPEED_GOALS",
    "count_range",
    "goal_ratios",
    "latency_table",
    "load_goals",
    "plot",
    "ratios_table",
    "split_table",
]

# vis_d2's own speed goals (tools/benchmark.py --goals)
SPEED_GOALS = Path(__file__).with_name("speed_goals.yaml")
# the kinds of speed goal a goals file may bound, each the upper bound of a ratio
GOAL_KINDS = {
    "scaling": "latency at the most detections / at the fewest",
    "vs_baseline": "latency / Mask R-CNN's at the most detections",
    "heads_share": "mask, tracking and tracker parts, % of the frame",
    "assembly_share": "mask assembly, % of the frame",
    "backend": "another backend's latency / eager's",
}


def count_range(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def without_postprocess(setting: dict[str, Any], part: str) -> float:
    """Mean frame time less the mean time of ``part``: forcing N detections makes every
    (location or proposal, class) a candidate, so top-k and NMS do far more work than with a
    score threshold."""
    return setting["latency_ms"]["mean"] - setting["parts_ms"].get(part, 0.0)


def load_goals(path: str | Path) -> dict[str, float]:
    """Speed goals from a YAML file: upper bounds of the ratios by kind (:data:`GOAL_KINDS`).

    Raises:
        ValueError: an unknown kind or a value that is not a number (the message names the
            file).
    """
    with open(path) as f:
        goals = yaml.safe_load(f) or {}
    if not isinstance(goals, dict):
        raise ValueError(f"{path}: expected a mapping of goal kinds to numbers")
    unknown = set(goals) - set(GOAL_KINDS)
    if unknown:
        raise ValueError(f"{path}: unknown goals {sorted(unknown)}; known: {list(GOAL_KINDS)}")
    for kind, value in goals.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{path}: goal {kind} must be a number, got {value!r}")
    return {kind: float(value) for kind, value in goals.items()}


def goal_ratios(
    results: dict[str, Any], subjects: list[Subject], goals: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """The ratios within one run of every VIS model, from the settings with the fewest and
    most detections; with ``goals`` (:func:`load_goals`), each also with its goal (an upper
    bound, None where ``goals`` has none of its kind) and whether it holds."""

    def ratio(name, label, value, kind, unit="x"):
        entry = {"name": name, "label": label, "value": value, "unit": unit}
        if goals is not None:
            goal = goals.get(kind) if kind else None
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
                "scaling",
            )
        )
        if base is not None:
            ratios.append(
                ratio(
                    f"{key}_vs_mask_rcnn",
                    f"{name} / Mask R-CNN latency at {hi_n} detections",
                    high["latency_ms"]["median"] / base[-1]["latency_ms"]["median"],
                    "vs_baseline",
                )
            )
            ratios.append(
                ratio(
                    f"{key}_vs_mask_rcnn_without_postprocess",
                    "- the same without detection post-processing (top-k, NMS), means",
                    without_postprocess(high, subject.adapter.postprocess_part)
                    / without_postprocess(base[-1], MaskRCNNAdapter.postprocess_part),
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
                        "backend",
                    )
                )
        if subject.exported:
            continue  # its parts do not separate the graphs from the Python around them
        groups = subject.adapter.head_groups
        ratios.append(
            ratio(
                f"{key}_heads_share",
                f"{name} ({' + '.join(groups)}) / frame at {hi_n} detections",
                sum(high["groups_pct"].get(g, 0.0) for g in groups),
                "heads_share",
                unit="%",
            )
        )
        assembly = subject.adapter.assembly_part
        if assembly:
            ratios.append(
                ratio(
                    f"{key}_assembly_share",
                    f"{name} mask assembly / frame at {hi_n} detections",
                    100 * high["parts_ms"].get(assembly, 0.0) / sum(high["parts_ms"].values()),
                    "assembly_share",
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
