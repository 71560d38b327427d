"""Running the subjects: every (model, N) setting timed frame by frame in turn, its parts,
memory and detection counts, and torch.profiler runs."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np
import torch
from tabulate import tabulate
from torch import nn

from .subjects import Subject
from .timing import MemoryMeter, PartTimer, latency_stats, parts_of_profile

__all__ = ["benchmark", "group_ms", "profile"]

logger = logging.getLogger(__name__)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def group_ms(parts: dict[str, float], group: str) -> float:
    return sum(v for k, v in parts.items() if k == group or k.startswith(group + "/"))


def weights_mb(model: nn.Module) -> float:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def summarize(
    num: int,
    frame_ms: list[float],
    counts: list[int],
    parts: list[dict[str, float]],
    memory: dict[str, float],
) -> dict[str, Any]:
    """One setting's record from its timed frames."""
    names = sorted({k for p in parts for k in p})
    parts_ms = {k: float(np.mean([p.get(k, 0.0) for p in parts])) for k in names}
    total = sum(parts_ms.values())
    groups_ms = {g: group_ms(parts_ms, g) for g in dict.fromkeys(k.split("/")[0] for k in names)}
    return {
        "detections": num,
        "counts": counts,
        "count_ok": all(c == num for c in counts),
        "latency_ms": latency_stats(frame_ms),
        "fps": len(frame_ms) / (sum(frame_ms) / 1e3),
        "frame_ms": frame_ms,
        "parts_ms": parts_ms,
        "groups_ms": groups_ms,
        "groups_pct": {g: 100 * v / total for g, v in groups_ms.items()},
        "memory_mb": memory,
    }


def benchmark(
    subjects: list[Subject],
    detections: list[int],
    frames: list[torch.Tensor],
    warmup: int,
    device: torch.device,
) -> dict[str, list[dict[str, Any]]]:
    """Every (model, N) setting, one frame of each in turn, so that a machine whose speed
    drifts (shared cores) slows all settings alike. Each setting is its own model instance
    and video: it sees ``frames`` in order, the first ``warmup`` of them untimed."""
    runs = [(s, num, s.build(num, frames[0])) for s in subjects for num in detections]
    images = {s.key: [s.image(f) for f in frames] for s in subjects}
    frame_ms: list[list[float]] = [[] for _ in runs]
    counts: list[list[int]] = [[] for _ in runs]
    areas: list[list[float]] = [[] for _ in runs]
    parts: list[list[dict[str, float]]] = [[] for _ in runs]
    working = [0.0] * len(runs)
    timer = PartTimer(device)
    meter = MemoryMeter(device)
    with contextlib.ExitStack() as stack:
        for subject, _, model in runs:
            stack.enter_context(timer.instrument(subject.probes(model)))
            subject.start_video(model)
        for i in range(len(frames)):
            for r, (subject, _, model) in enumerate(runs):
                with meter:
                    sync(device)
                    start = time.perf_counter()
                    with timer.frame() as frame_parts:
                        count = subject.run_frame(model, images[subject.key][i])
                    sync(device)
                    elapsed = (time.perf_counter() - start) * 1e3
                working[r] = max(working[r], meter.delta)
                if i >= warmup:
                    frame_ms[r].append(elapsed)
                    counts[r].append(count)
                    areas[r].extend(subject.box_areas)
                    parts[r].append(frame_parts)
            logger.info(f"frame {i + 1}/{len(frames)} of each setting done")
    results: dict[str, list[dict[str, Any]]] = {s.key: [] for s in subjects}
    for r, (subject, num, model) in enumerate(runs):
        weights = weights_mb(model)
        memory = {"weights": weights, "working": working[r], "peak": weights + working[r]}
        record = summarize(num, frame_ms[r], counts[r], parts[r], memory)
        record["box_area_px"] = {
            "mean": float(np.mean(areas[r])) if areas[r] else 0.0,
            "median": float(np.median(areas[r])) if areas[r] else 0.0,
        }
        results[subject.key].append(record)
    return results


def profile(
    subject: Subject,
    num: int,
    frames: list[torch.Tensor],
    warmup: int,
    timed_frames: int,
    device: torch.device,
) -> str:
    """torch.profiler over a few frames of ``subject`` at ``num`` detections (at most 2 of
    ``warmup`` untimed, then at most 5 of ``timed_frames``): the top operators overall, and
    per part."""
    model = subject.build(num, frames[0])
    images = [subject.image(f) for f in frames]
    warm = max(1, min(warmup, 2))
    timed = images[warm : warm + min(timed_frames, 5)] or images[-1:]
    timer = PartTimer(device, profile_ranges=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    subject.start_video(model)
    with timer.instrument(subject.probes(model)):
        for image in images[:warm]:
            with timer.frame():
                subject.run_frame(model, image)
        with torch.profiler.profile(activities=activities) as prof:
            for image in timed:
                with timer.frame():
                    subject.run_frame(model, image)
            sync(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=25)
    rows = [
        [part, ", ".join(f"{op} {us / 1e3 / len(timed):.1f}" for op, us in ops)]
        for part, ops in sorted(parts_of_profile(prof.events()).items())
    ]
    per_part = tabulate(rows, headers=["part", "top operators, self CPU ms per frame"])
    return (
        f"torch.profiler: {subject.label}, {num} detections, {len(timed)} frames, "
        f"{subject.width}x{subject.height}, {device}\n{table}\n{per_part}\n"
    )
