"""The precision that ``SOLVER.AMP.ENABLED`` and ``TEST.AMP.ENABLED`` give on the machine at hand.

On CUDA autocast is fp16. On the CPU it is bf16, which pays only where oneDNN runs bf16
natively (AVX-512 BF16, AMX): elsewhere (AVX2-only CPUs such as most laptops) every bf16
convolution is emulated and an order of magnitude slower than fp32. So a request for autocast
on a CPU without native bf16 falls back to fp32, with a warning that names the CPU.

The capability comes from torch (oneDNN's own check, which honours ``ONEDNN_MAX_CPU_ISA``).
``VIS_D2_CPU_BF16`` overrides it: ``1`` treats bf16 as native (to check bf16 numerics on any
CPU, at emulation speed where it is not), ``0`` as absent (to reproduce fp32 runs on a bf16
CPU); unset or ``auto`` asks torch.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "CPU_BF16_ENV",
    "CPUInfo",
    "cpu_bf16_native",
    "cpu_environment",
    "cpu_info",
    "use_autocast",
]

logger = logging.getLogger(__name__)

CPU_BF16_ENV = "VIS_D2_CPU_BF16"
# variables that change which kernels the CPU runs, and so every CPU timing
CPU_ENV_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", CPU_BF16_ENV, "OMP_NUM_THREADS")


def cpu_environment() -> dict[str, str]:
    """Those of :data:`CPU_ENV_VARS` that are set, with their values."""
    return {name: os.environ[name] for name in CPU_ENV_VARS if name in os.environ}


def cpu_bf16_native() -> bool:
    """Whether the CPU runs bf16 natively (``VIS_D2_CPU_BF16`` overrides torch's answer)."""
    value = os.environ.get(CPU_BF16_ENV, "auto").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    if value != "auto":
        raise ValueError(f"{CPU_BF16_ENV}={value!r}: expected 1, 0 or auto")
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    # for reports only: the precision decision never reads them
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


@dataclass(frozen=True)
class CPUInfo:
    """What a CPU timing depends on: the model name, torch's kernel capability (``AVX2``,
    ``AVX512``, ...: ``ATEN_CPU_CAPABILITY`` lowers it), whether bf16 is native and whether
    the CPU has AMX tiles."""

    model: str
    capability: str
    bf16_native: bool
    amx: bool = False

    @property
    def cpu_class(self) -> str:
        """The class a timing holds for: AVX2, AVX-512, AVX-512-BF16 or AMX."""
        cap = self.capability.replace("AVX512", "AVX-512")
        if not self.bf16_native:
            return cap
        if self.amx:
            return "AMX"
        return f"{cap}-BF16" if cap.startswith("AVX-512") else cap

    def describe(self) -> str:
        native = "native bf16" if self.bf16_native else "no native bf16"
        return f"{self.model} ({self.capability}, {native})"

    def as_dict(self) -> dict[str, str | bool]:
        return {
            "cpu": self.model,
            "cpu_capability": self.capability,
            "cpu_bf16_native": self.bf16_native,
            "cpu_class": self.cpu_class,
        }


def cpu_info(bf16_native: Callable[[], bool] = cpu_bf16_native) -> CPUInfo:
    model, flags = _cpu_model_and_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    return CPUInfo(model, capability, bf16_native(), amx="amx_tile" in flags)


def use_autocast(
    requested: bool,
    device: str | torch.device,
    key: str,
    *,
    bf16_native: Callable[[], bool] = cpu_bf16_native,
) -> bool:
    """Whether autocast runs for a request ``requested`` of config ``key`` on ``device``:
    fp16 on CUDA as asked; bf16 on the CPU only where it is native, else fp32 (logged)."""
    if not requested:
        return False
    if torch.device(device).type != "cpu":
        _log_once(logging.INFO, f"{key}: fp16 autocast on {device}")
        return True
    info = cpu_info(bf16_native)
    if info.bf16_native:
        _log_once(logging.INFO, f"{key}: bf16 autocast on the CPU, {info.describe()}")
        return True
    _log_once(
        logging.WARNING,
        f"{key} is ignored: the CPU, {info.describe()}, would emulate bf16, 10x or more "
        f"slower than fp32; running in fp32 ({CPU_BF16_ENV}=1 forces bf16 autocast)",
    )
    return False


@functools.cache
def _log_once(level: int, message: str) -> None:
    # a tool that builds several models (benchmark settings, evaluation) says it once
    logger.log(level, message)
