"""Per-frame inference benchmarking (``tools/benchmark.py``): part timers and memory meters,
the benchmark adapter of each META_ARCH (forcing N detections, probes, report layout), the
benchmarked subjects, the runner and the reports."""

from .adapter import (
    BENCHMARK_ADAPTER_REGISTRY,
    BenchmarkAdapter,
    MaskRCNNAdapter,
    benchmark_adapter,
    register_benchmark_adapter,
)
from .fcos import force_fcos_box_sizes, force_fcos_detections
from .random_init import BoxSizes, ForcedOutputs, estimate_norm_statistics, force_frame_outputs
from .sgnet import SGNetAdapter
from .timing import MemoryMeter, PartTimer, Probe, env_summary, latency_stats, parts_of_profile

__all__ = [
    "BENCHMARK_ADAPTER_REGISTRY",
    "BenchmarkAdapter",
    "BoxSizes",
    "ForcedOutputs",
    "MaskRCNNAdapter",
    "MemoryMeter",
    "PartTimer",
    "Probe",
    "SGNetAdapter",
    "benchmark_adapter",
    "env_summary",
    "estimate_norm_statistics",
    "force_fcos_box_sizes",
    "force_fcos_detections",
    "force_frame_outputs",
    "latency_stats",
    "parts_of_profile",
    "register_benchmark_adapter",
]
