"""Running an exported SG-Net: the exported dense graphs plus, in Python, the same sparse
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
from detectron2.layers import ShapeSpec
from detectron2.structures import Instances

from ..config import get_cfg
from ..modeling.fcos import compute_locations, fcos_inference
from ..modeling.sgnet import MovementHead, SpatialAttention
from ..modeling.sgnet.blender import MaskWindows, frame_masks, instance_windows, resize_matrix
from ..modeling.sgnet.sgnet import BASE_STRIDE, tracked_frame
from ..modeling.tracking import build_tracker
from .graphs import split_frame_outputs

__all__ = [
    "MANIFEST",
    "ExportUnavailableError",
    "ExportedSGNet",
    "compare_frames",
    "require_module",
]

logger = logging.getLogger(__name__)

MANIFEST = "export.json"


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
        with warnings.catch_warnings():  # torch's deprecation notice of TorchScript loading
            warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", FutureWarning)
            self.module = torch.jit.load(str(path), map_location=device)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.module(*inputs))


class _OnnxGraph:
    def __init__(self, path: Path, input_names: list[str], device: torch.device):
        ort = require_module("onnxruntime", "running an ONNX export")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_names = input_names
        self.device = device

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feeds = {
            name: x.detach().cpu().contiguous().numpy()
            for name, x in zip(self.input_names, inputs, strict=True)
        }
        return tuple(torch.from_numpy(a).to(self.device) for a in self.session.run(None, feeds))


class ExportedSGNet:
    """An export folder written by :func:`vis_d2.export.export_sgnet`, run like the eager
    model's streaming inference: :meth:`reset`, then :meth:`inference_frame` per frame.

    The graphs compute the dense maps; thresholding, top-k and NMS (``fcos_inference``), the
    SAM coefficients and movement read at the detections, the blender and the tracker run
    here with the functions :meth:`SGNet.inference_frame` uses, in the same order.
    ``opts`` (``KEY VALUE`` pairs) override the saved config's post-processing settings, e.g.
    ``MODEL.FCOS.INFERENCE_TH_TEST``.
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
        self.device = torch.device(device)
        cfg = get_cfg()
        cfg.merge_from_file(str(self.export_dir / self.manifest["config"]))
        cfg.merge_from_list(list(opts))
        cfg.freeze()
        self.cfg = cfg
        self.strides = list(self.manifest["strides"])
        self.num_levels = len(self.strides)
        self._graphs = {name: self._load_graph(name) for name in self.manifest["graphs"]}

        shapes = [ShapeSpec(channels=self.manifest["level_channels"])] * self.num_levels
        heads = torch.load(self.export_dir / self.manifest["heads"], map_location=self.device)
        self.sam = SpatialAttention(cfg, shapes).to(self.device).eval()
        self.sam.load_state_dict(heads["sam"])
        self.movement_head = None
        if "movement" in self._graphs:
            self.movement_head = MovementHead(cfg, shapes).to(self.device).eval()
            self.movement_head.load_state_dict(heads["movement_head"])
        self.tracker = build_tracker(cfg)
        self._prev_towers: list[torch.Tensor] | None = None

    def _load_graph(self, name: str) -> _TorchScriptGraph | _OnnxGraph:
        info = self.manifest["graphs"][name]
        path = self.export_dir / info["file"]
        if self.manifest["format"] == "torchscript":
            return _TorchScriptGraph(path, self.device)
        return _OnnxGraph(path, info["inputs"], self.device)

    @property
    def format(self) -> str:
        return self.manifest["format"]

    def reset(self) -> None:
        """Start a new video: forget the previous frame and restart track ids at 0."""
        self.tracker.reset()
        self._prev_towers = None

    def inference_video(self, video: dict) -> dict:
        """A whole video (``frames``: per-frame inputs, as from ``YTVISTestMapper``) →
        ``{"frames": [Instances]}``, as :meth:`SGNet.inference_video`."""
        self.reset()
        return {"frames": [self.inference_frame(frame) for frame in video["frames"]]}

    def _detect(self, head: dict[str, list[torch.Tensor]], image_size: tuple[int, int]):
        fcos = self.cfg.MODEL.FCOS
        locations = [
            compute_locations(m.shape[-2], m.shape[-1], stride, self.device)
            for m, stride in zip(head["logits"], self.strides, strict=True)
        ]
        return fcos_inference(
            head,
            locations,
            self.strides,
            [image_size],
            score_thresh=fcos.INFERENCE_TH_TEST,
            pre_nms_topk=fcos.PRE_NMS_TOPK_TEST,
            post_nms_topk=fcos.POST_NMS_TOPK_TEST,
            nms_thresh=fcos.NMS_TH,
            thresh_with_ctr=fcos.THRESH_WITH_CTR,
            class_agnostic_nms=fcos.NMS_CLASS_AGNOSTIC,
        )[0]

    def _masks(
        self, features: list[torch.Tensor], det: Instances
    ) -> tuple[MaskWindows, torch.Tensor]:
        """Mask windows of the detections and the base maps (as ``SGNet._masks``)."""
        sg = self.cfg.MODEL.SGNET
        *towers, bases = self._graphs["mask"](*features)
        im_inds = torch.zeros_like(det.pred_classes)
        coef = self.sam.coefficients(towers, im_inds, det.fpn_levels, det.loc_inds)
        windows = instance_windows(
            bases,
            coef,
            im_inds,
            det.pred_boxes.tensor,
            max_div=sg.SAM.MAX_DIV,
            unit=sg.SAM.UNIT,
            master_grid=sg.SAM.MASTER_GRID,
            mode=sg.BLENDER,
            base_stride=BASE_STRIDE,
        )
        return windows, bases

    @torch.no_grad()
    def inference_frame(self, frame: dict) -> Instances:
        """One frame (``image`` (C, H, W) resized input, ``height``/``width`` original size,
        optional ``is_first``) → its tracked instances at the original resolution:
        ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks`` (bool), ``track_ids``."""
        if frame.get("is_first", False):
            self.reset()
        image = frame["image"].to(self.device).float()
        outputs = self._graphs["frame"](image)
        head, features = split_frame_outputs(outputs, self.num_levels)
        in_h, in_w = image.shape[-2:]
        out_h, out_w = frame.get("height", in_h), frame.get("width", in_w)
        det = self._detect(head, (in_h, in_w))
        im_inds = torch.zeros_like(det.pred_classes)
        if len(det):
            windows, bases = self._masks(features, det)
            base_h, base_w = bases.shape[-2:]
            masks = frame_masks(
                windows,
                resize_matrix(base_h, BASE_STRIDE, in_h, out_h, self.device),
                resize_matrix(base_w, BASE_STRIDE, in_w, out_w, self.device),
                self.cfg.MODEL.SGNET.MASK_THRESH,
            )
        else:
            masks = torch.zeros(0, out_h, out_w, dtype=torch.bool, device=self.device)
        displacements = None
        if self.movement_head is not None:
            cur = head["bbox_towers"]
            if self._prev_towers is not None and len(det):
                towers = list(self._graphs["movement"](*cur, *self._prev_towers))
                strides = torch.tensor(self.strides, device=self.device)[det.fpn_levels]
                displacements = (
                    self.movement_head.predict(towers, im_inds, det.fpn_levels, det.loc_inds)
                    * strides[:, None]
                )
            self._prev_towers = cur
        return tracked_frame(det, masks, (in_h, in_w), (out_h, out_w), self.tracker, displacements)


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of paired (N, H, W) bool masks, 1 where both are empty."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def compare_frames(reference: list[Instances], other: list[Instances]) -> dict:
    """Agreement of two runs over the same frames (e.g. eager vs exported).

    Returns ``same_counts`` / ``same_classes`` / ``same_track_ids`` (bool, over all frames),
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
        out["same_track_ids"] &= bool(torch.equal(ref.track_ids, oth.track_ids))
        box_diff = (ref.pred_boxes.tensor - oth.pred_boxes.tensor).abs().max()
        out["max_box_diff"] = max(out["max_box_diff"], float(box_diff))
        out["max_score_diff"] = max(
            out["max_score_diff"], float((ref.scores - oth.scores).abs().max())
        )
        iou = _mask_iou(ref.pred_masks, oth.pred_masks).min()
        out["min_mask_iou"] = min(out["min_mask_iou"], float(iou))
    return out

