"""Running an exported model: the exported dense graphs plus, in Python, the same sparse
post-processing and tracker the eager model uses."""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances

from ..config import get_cfg
from ..modeling.meta_arch import FrameModel, Graph

__all__ = [
    "MANIFEST",
    "WEIGHTS",
    "ExportUnavailableError",
    "ExportedModel",
    "compare_frames",
    "load_graphs",
    "require_module",
]

logger = logging.getLogger(__name__)

MANIFEST = "export.json"
WEIGHTS = "weights.pth"


class ExportUnavailableError(RuntimeError):
    """A format whose packages are not installed; the message says what to install."""


def require_module(name: str, purpose: str) -> ModuleType:
    """Import ``name`` or raise :class:`ExportUnavailableError` with the pip command."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ExportUnavailableError(
            f"{purpose} needs the {name} package, which is not installed: pip install {name}"
        ) from e


class _TorchScriptGraph:
    def __init__(self, path: Path, device: torch.device):
        with warnings.catch_warnings():  # torch's deprecation notices of TorchScript
            warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
            self.module = torch.jit.load(str(path), map_location=device)
            if device.type == "cpu":
                # weights folded in as constants and the convolutions run through oneDNN
                # (conv-bn folding, fused activations); the unfrozen module runs no faster
                # than eager (the README's export timings)
                self.module = torch.jit.optimize_for_inference(torch.jit.freeze(self.module.eval()))

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.module(*inputs))


class _OnnxGraph:
    def __init__(self, path: Path, input_names: list[str], device: torch.device):
        ort = require_module("onnxruntime", "running an ONNX export")
        options = ort.SessionOptions()
        # as many threads as torch's, which do not spin once a graph is done: the Python
        # post-processing that follows runs on the same cores
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = input_names
        self.device = device

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feeds = {
            name: x.detach().cpu().contiguous().numpy()
            for name, x in zip(self.input_names, inputs, strict=True)
        }
        return tuple(torch.from_numpy(a).to(self.device) for a in self.session.run(None, feeds))


def load_graphs(
    export_dir: str | Path, device: str | torch.device = "cpu", manifest: dict | None = None
) -> dict[str, Graph]:
    """The graphs of an export folder by name (TorchScript modules, or ONNX Runtime sessions
    on the CPU), each called with tensors and returning a tuple of tensors on ``device``, as
    :meth:`FrameModel.use_graphs` takes them."""
    export_dir, device = Path(export_dir), torch.device(device)
    if manifest is None:
        manifest = json.loads((export_dir / MANIFEST).read_text())
    graphs: dict[str, Graph] = {}
    for name, info in manifest["graphs"].items():
        path = export_dir / info["file"]
        if manifest["format"] == "torchscript":
            graphs[name] = _TorchScriptGraph(path, device)
        else:
            graphs[name] = _OnnxGraph(path, info["inputs"], device)
    return graphs


class ExportedModel:
    """An export folder written by :func:`vis_d2.export.export_model`, run like the eager
    model's streaming inference: :meth:`reset`, then :meth:`inference_frame` per frame.

    The model is rebuilt from the saved config without allocating its weights; the modules
    its Python part reads (:meth:`FrameModel.sparse_modules`) get the saved weights and the
    loaded graphs replace its dense modules, so thresholds, NMS, mask assembly and tracking
    run the eager model's own code. ``opts`` (``KEY VALUE`` pairs) override the saved
    config's post-processing settings, e.g. ``MODEL.FCOS.INFERENCE_TH_TEST``.
    """

    def __init__(
        self,
        export_dir: str | Path,
        opts: Sequence[str] = (),
        device: str | torch.device = "cpu",
    ):
        self.export_dir = Path(export_dir)
        manifest_path = self.export_dir / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} does not exist: not an export directory")
        self.manifest = json.loads(manifest_path.read_text())
        if "meta_architecture" not in self.manifest:
            raise ValueError(
                f"{manifest_path} was written by an older vis_d2 version: export the model again"
            )
        self.device = torch.device(device)
        cfg = get_cfg()
        cfg.merge_from_file(str(self.export_dir / self.manifest["config"]))
        cfg.merge_from_list(list(opts))
        cfg.MODEL.DEVICE = str(self.device)
        cfg.freeze()
        self.cfg = cfg
        self.model = self._build_model()
        self.model.use_graphs(load_graphs(self.export_dir, self.device, self.manifest))

    def _build_model(self) -> FrameModel:
        with torch.device("meta"):  # no memory and no initialisation for the graphs' weights
            model = META_ARCH_REGISTRY.get(self.cfg.MODEL.META_ARCHITECTURE)(self.cfg)
        saved = torch.load(
            self.export_dir / self.manifest["weights"], map_location=self.device, weights_only=True
        )
        for name in self.manifest["sparse_modules"]:
            model.get_submodule(name).to_empty(device=self.device)
        prefixes = tuple(f"{name}." for name in self.manifest["sparse_modules"])
        wanted = {
            name: tensor
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if name.startswith(prefixes) or "." not in name
        }
        missing = sorted(set(wanted) - set(saved))
        unexpected = sorted(set(saved) - set(wanted))
        if missing or unexpected:
            raise ValueError(
                f"{self.export_dir / self.manifest['weights']} does not fit the model of "
                f"{self.manifest['config']}: missing {missing}, unexpected {unexpected}"
            )
        with torch.no_grad():
            for name, value in saved.items():
                if "." in name:
                    wanted[name].copy_(value)
                else:  # the model's own buffers (pixel mean and std) are still on meta
                    setattr(model, name, value)
        return model.eval()

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def reset(self) -> None:
        """Start a new video: forget earlier frames and restart track ids at 0."""
        self.model.reset()

    def inference_video(self, video: dict) -> dict:
        """A whole video (``frames``: per-frame inputs, as from ``YTVISTestMapper``) →
        ``{"frames": [Instances]}``, as :meth:`~vis_d2.modeling.VISModel.inference_video`
        (video models only)."""
        return self.model.inference_video(video)

    def inference_frame(self, frame: dict) -> Instances:
        """One frame, as :meth:`FrameModel.inference_frame`."""
        return self.model.inference_frame(frame)


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of paired (N, H, W) bool masks, 1 where both are empty."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def compare_frames(reference: list[Instances], other: list[Instances]) -> dict:
    """Agreement of two runs over the same frames (e.g. eager vs exported).

    Returns ``same_counts`` / ``same_classes`` / ``same_track_ids`` (bool, over all frames;
    frames without ``track_ids``, an image model's, agree on them),
    ``max_box_diff`` (px) and ``max_score_diff`` (absolute), ``min_mask_iou`` (1.0 when no
    instance), and ``detections`` (count per frame of ``reference``). Boxes, scores and masks
    are only compared on frames whose counts agree.
    """
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference frames, {len(other)} other frames")
    out = {
        "same_counts": True,
        "same_classes": True,
        "same_track_ids": True,
        "max_box_diff": 0.0,
        "max_score_diff": 0.0,
        "min_mask_iou": 1.0,
        "detections": [len(r) for r in reference],
    }
    for ref, oth in zip(reference, other, strict=True):
        ref, oth = ref.to("cpu"), oth.to("cpu")
        if len(ref) != len(oth):
            out["same_counts"] = out["same_classes"] = out["same_track_ids"] = False
            continue
        if len(ref) == 0:
            continue
        out["same_classes"] &= bool(torch.equal(ref.pred_classes, oth.pred_classes))
        if ref.has("track_ids") or oth.has("track_ids"):
            same = ref.has("track_ids") and oth.has("track_ids")
            out["same_track_ids"] &= same and bool(torch.equal(ref.track_ids, oth.track_ids))
        box_diff = (ref.pred_boxes.tensor - oth.pred_boxes.tensor).abs().max()
        out["max_box_diff"] = max(out["max_box_diff"], float(box_diff))
        out["max_score_diff"] = max(
            out["max_score_diff"], float((ref.scores - oth.scores).abs().max())
        )
        iou = _mask_iou(ref.pred_masks, oth.pred_masks).min()
        out["min_mask_iou"] = min(out["min_mask_iou"], float(iou))
    return out
