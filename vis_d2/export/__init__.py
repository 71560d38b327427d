"""Export of SG-Net's per-frame network (TorchScript or ONNX) and a runner that pairs the
exported graphs with the Python post-processing and tracker (see :mod:`.graphs`)."""

from .exporter import EXPORT_FORMATS, export_sgnet
from .graphs import FrameGraph, MaskGraph, MovementGraph
from .runner import ExportedSGNet, ExportUnavailableError, compare_frames

__all__ = [
    "EXPORT_FORMATS",
    "ExportUnavailableError",
    "ExportedSGNet",
    "FrameGraph",
    "MaskGraph",
    "MovementGraph",
    "compare_frames",
    "export_sgnet",
]
