"""Writing an export folder: the traced dense graphs, the sparse heads' weights, the config."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from detectron2.config import CfgNode

from ..modeling.sgnet import SGNet
from .graphs import FrameGraph, MaskGraph, MovementGraph, split_frame_outputs
from .runner import MANIFEST, require_module

__all__ = ["EXPORT_FORMATS", "export_sgnet"]

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
    ``torch.jit.trace``, and the TracerWarnings of detectron2's and torch's own shape checks
    (the input sizes they read are traced as dynamic shapes; the export is checked against the
    eager model on other frames). TracerWarnings raised in vis_d2's code stay visible."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"detectron2\.")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.")
        yield


def _save_graph(
    graph: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    path: Path,
    fmt: str,
) -> tuple[torch.Tensor, ...]:
    """Trace ``graph`` on ``inputs`` into ``path``; returns the eager outputs."""
    graph.eval()
    with torch.no_grad():
        outputs = tuple(graph(*inputs))
        if fmt == "torchscript":
            with _quiet_tracing():
                torch.jit.trace(graph, inputs, check_trace=False).save(str(path))
        else:
            output_names = graph.output_names()
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
    return outputs


def export_sgnet(
    model: SGNet,
    cfg: CfgNode,
    images: list[torch.Tensor],
    output_dir: str | Path,
    fmt: str = "torchscript",
) -> Path:
    """Export ``model`` (in eval mode) into the folder ``output_dir`` (created if needed).

    ``images``: one or two resized frames (C, H, W) in ``INPUT.FORMAT``, 0-255; the graphs are
    traced on the first (the movement graph on the second and the first). The traces hold no
    data-dependent control flow, so they are valid for other sizes and contents.

    Writes ``frame``/``mask``/``movement`` graphs (``.ts`` TorchScript or ``.onnx``, see
    :mod:`.graphs`), ``heads.pth`` (state dicts of the SAM and movement heads, whose last convs
    run sparsely in Python), ``config.yaml`` and the manifest ``export.json``.

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
    graphs: dict[str, dict] = {}

    def save(
        name: str, graph: torch.nn.Module, inputs: list[torch.Tensor], input_names: list[str]
    ) -> tuple[torch.Tensor, ...]:
        path = output_dir / f"{name}{_SUFFIX[fmt]}"
        outputs = _save_graph(graph, tuple(inputs), input_names, path, fmt)
        graphs[name] = {"file": path.name, "inputs": input_names, "outputs": graph.output_names()}
        return outputs

    num_levels = len(model.fcos.in_features)
    frame_graph = FrameGraph(model)
    first = images[0].to(model.device).float()
    head, features = split_frame_outputs(save("frame", frame_graph, [first], ["image"]), num_levels)
    mask_graph = MaskGraph(model)
    save("mask", mask_graph, features, list(mask_graph.feature_names))
    heads = {"sam": model.sam.state_dict()}
    if model.movement_head is not None:
        previous = current = head["bbox_towers"]
        if len(images) > 1:
            with torch.no_grad():
                later = frame_graph(images[1].to(model.device).float())
            current = split_frame_outputs(later, num_levels)[0]["bbox_towers"]
        movement_graph = MovementGraph(model)
        save("movement", movement_graph, [*current, *previous], movement_graph.input_names())
        heads["movement_head"] = model.movement_head.state_dict()

    torch.save(heads, output_dir / "heads.pth")
    (output_dir / "config.yaml").write_text(cfg.dump())
    manifest = {
        "format": fmt,
        "graphs": graphs,
        "heads": "heads.pth",
        "config": "config.yaml",
        "strides": list(model.fcos.strides),
        "level_channels": int(head["bbox_towers"][0].shape[1]),
        "torch_version": torch.__version__,
    }
    if fmt == "onnx":
        manifest["onnx_opset"] = ONNX_OPSET
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return output_dir
