"""Measuring per-frame inference: frame timers split into named parts by probes, latency
statistics, peak memory and what the numbers were measured on.

A part is charged with the time from the point where it begins (a :class:`Probe` marks it) to
the next mark or the end of the frame, so the parts of a frame add up to the frame.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.profiler import record_function

from ..utils.precision import cpu_environment, cpu_info

__all__ = [
    "MemoryMeter",
    "PartTimer",
    "Probe",
    "env_summary",
    "latency_stats",
    "parts_of_profile",
]

PROFILE_RANGE_PREFIX = "part:"


@dataclass
class Probe:
    """Marks part ``enter`` when ``target.method`` is called and part ``leave`` when it returns.

    ``forward`` of an ``nn.Module`` is observed with forward (pre-)hooks; any other method is
    wrapped on the instance for as long as the probe is attached.
    """

    target: Any
    enter: str
    leave: str
    method: str = "forward"


class PartTimer:
    """Splits the wall time of frames into named parts.

    On CUDA a mark records a CUDA event on the current stream, and the events are read once
    the frame has finished, so parts are timed without synchronising between them; on the CPU
    a mark reads ``time.perf_counter``. With ``profile_ranges`` each part is also a
    ``torch.profiler`` range named ``part:<name>``.
    """

    def __init__(self, device: torch.device, profile_ranges: bool = False):
        self._cuda = device.type == "cuda"
        self._profile_ranges = profile_ranges
        self._marks: list[tuple[str, Any]] | None = None
        self._range: record_function | None = None

    def _stamp(self) -> Any:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _elapsed_ms(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) if self._cuda else (end - start) * 1e3

    def _switch_range(self, part: str | None) -> None:
        if not self._profile_ranges:
            return
        if self._range is not None:
            self._range.__exit__(None, None, None)
            self._range = None
        if part is not None:
            self._range = record_function(PROFILE_RANGE_PREFIX + part)
            self._range.__enter__()

    def mark(self, part: str) -> None:
        """Part ``part`` begins now (ignored outside :meth:`frame` or if it is already on)."""
        if self._marks is None or self._marks[-1][0] == part:
            return
        self._switch_range(part)
        self._marks.append((part, self._stamp()))

    @contextlib.contextmanager
    def frame(self, first_part: str = "other") -> Iterator[dict[str, float]]:
        """Time one frame, starting in ``first_part``; the yielded dict is filled with
        part → milliseconds when the block ends."""
        parts: dict[str, float] = {}
        self._marks = [(first_part, self._stamp())]
        self._switch_range(first_part)
        try:
            yield parts
            end = self._stamp()
            self._switch_range(None)
            if self._cuda:
                torch.cuda.synchronize()
            stamps = [stamp for _, stamp in self._marks] + [end]
            for (name, _), start, stop in zip(self._marks, stamps, stamps[1:], strict=False):
                parts[name] = parts.get(name, 0.0) + self._elapsed_ms(start, stop)
        finally:
            self._switch_range(None)
            self._marks = None

    def _attach(self, probe: Probe) -> Callable[[], None]:
        target, method = probe.target, probe.method
        if method == "forward" and isinstance(target, nn.Module):
            pre = target.register_forward_pre_hook(lambda *_: self.mark(probe.enter))
            post = target.register_forward_hook(lambda *_: self.mark(probe.leave))
            return lambda: (pre.remove(), post.remove())
        original = getattr(target, method)
        own = method in vars(target)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.mark(probe.enter)
            try:
                return original(*args, **kwargs)
            finally:
                self.mark(probe.leave)

        setattr(target, method, timed)

        def detach() -> None:
            if own:
                setattr(target, method, original)
            else:
                delattr(target, method)

        return detach

    @contextlib.contextmanager
    def instrument(self, probes: Iterable[Probe]) -> Iterator[None]:
        """Attach ``probes`` for the duration of the block; the models are restored after."""
        detach: list[Callable[[], None]] = []
        try:
            for probe in probes:
                detach.append(self._attach(probe))
            yield
        finally:
            for undo in reversed(detach):
                undo()


def latency_stats(values_ms: list[float]) -> dict[str, float]:
    """Median, 90th percentile, mean, min and max of per-frame times (ms)."""
    values = np.asarray(values_ms, dtype=np.float64)
    return {
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _proc_status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class MemoryMeter:
    """Peak memory of a block, in MiB: ``peak`` and ``delta`` (peak minus the usage at the
    start of the block); :attr:`description` says what is measured."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0.0
        self.delta = 0.0
        self._start = 0.0
        self._resettable = True
        if device.type == "cuda":
            self.description = "CUDA tensor memory (torch.cuda.max_memory_allocated)"
        elif sys.platform.startswith("linux") and _proc_status_kb("VmHWM") is not None:
            self.description = "process resident set size (VmHWM, reset for each measurement)"
        else:
            self._resettable = False
            self.description = "process peak resident set size since start (ru_maxrss)"

    def _current_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        rss = _proc_status_kb("VmRSS")
        return rss / 1024 if rss is not None else self._maxrss_mb()

    @staticmethod
    def _maxrss_mb() -> float:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024

    def __enter__(self) -> MemoryMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._resettable and not _reset_peak_rss():
            self._resettable = False
            self.description = "process peak resident set size since start (VmHWM)"
        self._start = self._current_mb()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            hwm = _proc_status_kb("VmHWM")
            self.peak = hwm / 1024 if hwm is not None else self._maxrss_mb()
        self.delta = self.peak - self._start


def parts_of_profile(events: Iterable[Any], top: int = 3) -> dict[str, list[tuple[str, float]]]:
    """From ``torch.profiler`` events of frames timed with ``profile_ranges``: per part, its
    ``top`` operators by self CPU time (µs), summed over the profiled frames."""
    totals: dict[str, dict[str, float]] = {}
    for event in events:
        if event.name.startswith(PROFILE_RANGE_PREFIX):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith(PROFILE_RANGE_PREFIX):
            parent = parent.cpu_parent
        if parent is None:
            continue
        part = parent.name[len(PROFILE_RANGE_PREFIX) :]
        ops = totals.setdefault(part, {})
        ops[event.name] = ops.get(event.name, 0.0) + event.self_cpu_time_total
    return {
        part: sorted(ops.items(), key=lambda item: -item[1])[:top] for part, ops in totals.items()
    }


def env_summary(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        **cpu_info().as_dict(),
        "cpu_environment": cpu_environment(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
