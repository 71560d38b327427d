"""Writing an export folder: a model's traced dense graphs, the weights of its sparse part,
the config."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from detectron2.config import CfgNode

from ..modeling.meta_arch import FrameModel
from .runner import MANIFEST, WEIGHTS, require_module

__all__ = ["EXPORT_FORMATS", "export_model"]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("torchscript", "onnx")
_SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}
ONNX_OPSET = 17


def _dynamic_axes(names: list[str], tensors: list[torch.Tensor]) -> dict[str, dict[int, str]]:
    """Height and width of every image or feature map are dynamic."""
    return {
        name: {t.dim() - 2: f"{name}_height", t.dim() - 1: f"{name}_width"}
        for name, t in zip(names, tensors, strict=True)
    }


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Tracing without the notices that do not concern an export: torch's deprecation of
    ``torch.jit.trace`` and of the TorchScript-based ONNX exporter (chosen here, as it shares
    the TorchScript export's tracing; the torch.export-based one needs ``onnxscript``), and the
    TracerWarnings of detectron2's, torch's and torchvision's own shape checks (the input sizes
    they read are traced as dynamic shapes; the export is checked against the eager model on
    other frames). TracerWarnings raised in vis_d2's code stay visible."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", FutureWarning)
        legacy_onnx = r"You are using the legacy TorchScript-based ONNX"
        warnings.filterwarnings("ignore", legacy_onnx, DeprecationWarning)
        warnings.filterwarnings("ignore", r"The feature will be removed", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"detectron2\.")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.")
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"torchvision\."
        )
        yield


def _save_graph(
    graph: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    path: Path,
    fmt: str,
) -> None:
    """Trace ``graph`` on ``inputs`` into ``path``."""
    graph.eval()
    with torch.no_grad():
        outputs = tuple(graph(*inputs))
        if fmt == "torchscript":
            with _quiet_tracing():
                torch.jit.trace(graph, inputs, check_trace=False).save(str(path))
        else:
            output_names = graph.output_names()
            with _quiet_tracing():
                torch.onnx.export(
                    graph,
                    inputs,
                    str(path),
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_axes={
                        **_dynamic_axes(input_names, list(inputs)),
                        **_dynamic_axes(output_names, list(outputs)),
                    },
                )
    logger.info(f"exported {type(graph).__name__} to {path}")


def _sparse_tensors(model: FrameModel) -> dict[str, torch.Tensor]:
    """The parameters and buffers of the model's sparse modules and its own buffers (pixel
    mean and std): what its Python part reads besides the graphs."""
    prefixes = tuple(f"{name}." for name in model.sparse_modules())
    named = [*model.named_parameters(), *model.named_buffers()]
    return {
        name: tensor.detach().cpu()
        for name, tensor in named
        if name.startswith(prefixes) or "." not in name
    }


def export_model(
    model: FrameModel,
    cfg: CfgNode,
    images: list[torch.Tensor],
    output_dir: str | Path,
    fmt: str = "torchscript",
) -> Path:
    """Export ``model`` (a :class:`FrameModel` in eval mode) into the folder ``output_dir``
    (created if needed).

    ``images``: one or two consecutive resized frames (C, H, W) in ``INPUT.FORMAT``, 0-255,
    on which the graphs are traced (see :meth:`FrameModel.trace_inputs`). The traces hold no
    data-dependent control flow, so they are valid for other sizes and contents.

    Writes every graph of :meth:`FrameModel.export_graphs` (``.ts`` TorchScript or ``.onnx``),
    ``weights.pth`` (the tensors of :meth:`FrameModel.sparse_modules`, which run in Python),
    ``config.yaml`` and the manifest ``export.json``.

    Raises:
        ExportUnavailableError: ``fmt`` is onnx and the ``onnx`` package is missing.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format '{fmt}'; choose one of {EXPORT_FORMATS}")
    if fmt == "onnx":
        require_module("onnx", "ONNX export")
    if model.training:
        raise ValueError("export a model in eval mode (call model.eval())")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    inputs = model.trace_inputs(images)
    graphs: dict[str, dict] = {}
    for name, graph in model.export_graphs().items():
        path = output_dir / f"{name}{_SUFFIX[fmt]}"
        _save_graph(graph, inputs[name], graph.input_names(), path, fmt)
        graphs[name] = {
            "file": path.name,
            "inputs": graph.input_names(),
            "outputs": graph.output_names(),
        }
    torch.save(_sparse_tensors(model), output_dir / WEIGHTS)
    (output_dir / "config.yaml").write_text(cfg.dump())
    manifest = {
        "format": fmt,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "graphs": graphs,
        "weights": WEIGHTS,
        "sparse_modules": model.sparse_modules(),
        "config": "config.yaml",
        "torch_version": torch.__version__,
    }
    if fmt == "onnx":
        manifest["onnx_opset"] = ONNX_OPSET
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return output_dir
