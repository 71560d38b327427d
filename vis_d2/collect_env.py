"""Environment report: ``python -m vis_d2.collect_env``.

Prints the versions vis_d2 depends on, where detectron2 comes from, whether its compiled ops are
present, and what CUDA sees.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys

import cv2
import detectron2
import numpy as np
import torch
import torchvision
from tabulate import tabulate

import vis_d2
from vis_d2.utils.precision import cpu_environment, cpu_info


def detectron2_source() -> tuple[str, bool]:
    """Describe the installed detectron2 distribution; second item: compiled ops present."""
    from detectron2 import _C

    try:
        dist = importlib.metadata.distribution("detectron2")
        name = f"{dist.metadata['Name']} {dist.version}"
        direct_url = dist.read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        name, direct_url = "detectron2 (no distribution metadata)", None
    if getattr(_C, "IS_STAND_IN", False):
        return f"{name}, PyPI sdist pb1-detectron2 0.6 built without its compiled extension", False
    origin = json.loads(direct_url)["url"] if direct_url else "preinstalled"
    return f"{name}, built from {origin}", True


def collect_env_info() -> str:
    source, compiled = detectron2_source()
    rows = [
        ("Python", sys.version.replace("\n", " ")),
        ("vis_d2", f"{vis_d2.__version__} @{os.path.dirname(vis_d2.__file__)}"),
        ("torch", f"{torch.__version__} @{os.path.dirname(torch.__file__)}"),
        ("torchvision", torchvision.__version__),
        ("detectron2", f"{detectron2.__version__} @{os.path.dirname(detectron2.__file__)}"),
        ("detectron2 source", source),
        ("detectron2 compiled ops", "yes" if compiled else "no (torchvision ops stand in)"),
        ("numpy", np.__version__),
        ("opencv", cv2.__version__),
        ("pycocotools", importlib.metadata.version("pycocotools")),
        ("CUDA available", torch.cuda.is_available()),
    ]
    if torch.cuda.is_available():
        rows.append(("CUDA (torch build)", torch.version.cuda))
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
    cpu = cpu_info()
    rows += [
        ("CPU", cpu.model),
        ("CPU capability (torch)", cpu.capability),
        ("CPU bf16 native", "yes" if cpu.bf16_native else "no (autocast runs in fp32)"),
        ("CPU class of timings", cpu.cpu_class),
    ]
    rows += list(cpu_environment().items())
    rows.append(("CPU threads (torch)", torch.get_num_threads()))
    return tabulate(rows)


if __name__ == "__main__":
    print(collect_env_info())
