"""Export of a VIS model's per-frame network (TorchScript or ONNX) and a runner that pairs the
exported graphs with the model's Python post-processing and tracker."""

from .exporter import EXPORT_FORMATS, export_model
from .runner import ExportedModel, ExportUnavailableError, compare_frames, load_graphs

__all__ = [
    "EXPORT_FORMATS",
    "ExportUnavailableError",
    "ExportedModel",
    "compare_frames",
    "export_model",
    "load_graphs",
]
