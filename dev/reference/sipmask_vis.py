#!/usr/bin/env python
"""Write the SipMask-VIS reference fixture by running the authors' own code.

    python dev/reference/sipmask_vis.py --authors /path/to/SipMask/SipMask-VIS \\
        [--output tests/fixtures/sipmask_vis_reference.npz]

``--authors`` is the ``SipMask-VIS`` folder of a checkout of the authors' repository
(JialeCao001/SipMask). Their model classes (caffe-style ResNet-50, FPN, ``SipMaskHead``) and
their test-time functions (``SipMaskHead.forward``, ``get_bboxes``: post-processing, masks,
tracking; mmdetection v1's ``distance2bbox``/``bbox_overlaps``/``force_fp32``) are imported from
that folder unchanged. Only what is compiled or belongs to the mmcv/mmdet packaging is stood in
for, here: ``DeformConv`` by ``torchvision.ops.deform_conv2d``; the ``CropSplit`` CUDA op by a
tensor version of its kernel; mmcv's init functions, the registries and the loss builders (not
used at test time) by small stubs; ``mmcv.imrescale`` by ``cv2.resize`` with mmcv 0.2's size
rule; ``torch.cuda.current_device`` by the CPU while their test runs.

The checkpoint is generated from formulas (``tests/sipmask_vis_reference.py``) for the names and
shapes of their model's ``state_dict()``, which the fixture stores with its checksum; the test
regenerates it, converts it with ``tools/convert_weights.py`` and compares every stage.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import deform_conv2d

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import sipmask_vis_reference as ref  # noqa: E402

MEAN = np.array([102.9801, 115.9465, 122.7717], dtype=np.float32)  # their img_norm_cfg, std 1
TEST_SCALE = (640, 360)  # their img_scale
SIZE_DIVISOR = 32
TEST_CFG = {"nms_pre": 200, "min_bbox_size": 0, "score_thr": 0.03,
            "nms": {"type": "nms", "iou_thr": 0.5}, "max_per_img": 10}  # fmt: skip
# their post-processing once more on frame 0 with every score a candidate and 100 detections
# kept: the per-level top-200 locations and the clamp before NMS then decide which boxes stay
DENSE_CFG = {**TEST_CFG, "score_thr": 0.0, "max_per_img": 100}


class _Cfg(dict):
    """mmcv's ``Config`` as their head reads it: keys as attributes and ``get``."""

    __getattr__ = dict.__getitem__


# ------------------------------------------------------------------------- stand-ins
class DeformConvStandIn(nn.Module):
    """mmdet v1's ``DeformConv`` (same parameters and forward) by torchvision's
    ``deform_conv2d``: offsets per deformable group, per kernel tap, as (dy, dx)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deformable_groups=1, bias=False):  # fmt: skip
        super().__init__()
        assert not bias
        k = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *k))

    def forward(self, x, offset):
        return deform_conv2d(x, offset, self.weight, stride=self.stride, padding=self.padding,
                             dilation=self.dilation)  # fmt: skip


class CropSplitStandIn(nn.Module):
    """The forward of the ``CropSplit`` CUDA kernel (``mmdet/ops/crop``), on tensors: data
    (c·c, h, w, n), rois (n, 4) → (h, w, n); pixel (pw, ph) of roi n is kept when
    x1 ≤ pw < x2 and y1 ≤ ph < y2 and takes cell (idx_h, idx_w) = ((ph − y1) / roi_h,
    (pw − x1) / roi_w) truncated, roi_w = float((x2 − x1 + 0.1) / c) computed in double."""

    def __init__(self, c=2):
        super().__init__()
        self.c = c

    def forward(self, data, rois):
        cells, height, width, n = data.shape
        x1, y1, x2, y2 = (rois[:, i] for i in range(4))
        roi_w = ((x2 - x1).double() + 0.1).div(self.c).float()
        roi_h = ((y2 - y1).double() + 0.1).div(self.c).float()
        pw = torch.arange(width, dtype=torch.float32)[None, :, None]
        ph = torch.arange(height, dtype=torch.float32)[:, None, None]
        inside = (pw >= x1) & (ph >= y1) & (pw < x2) & (ph < y2)
        idx_w = ((pw - x1) / roi_w).trunc().long()
        idx_h = ((ph - y1) / roi_h).trunc().long()
        cell = (idx_h * self.c + idx_w).clamp(0, cells - 1)
        picked = data.permute(1, 2, 3, 0).gather(3, cell.expand(height, width, n)[..., None])
        return torch.where(inside, picked[..., 0], torch.zeros((), dtype=data.dtype))


def _unused(name):
    """A placeholder for what their test path never calls: building it is allowed (their
    head builds its training op), calling it fails."""

    class Unused:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            raise NotImplementedError(f"{name} is not stood in for (not used at test time)")

    return Unused


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that relative imports resolve in sys.modules
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Registry:
    def register_module(self, cls):
        return cls


def _init(module, *args, **kwargs):
    """mmcv.cnn's weight initialisers: the checkpoint overwrites every weight."""


def load_authors(root: Path) -> dict[str, type]:
    """The authors' ResNet, FPN and SipMaskHead classes, imported from ``root``/mmdet."""
    mm = root / "mmdet"
    _module("mmcv")
    _module("mmcv.cnn", constant_init=_init, kaiming_init=_init, normal_init=_init,
            xavier_init=_init)  # fmt: skip
    _module("mmcv.runner", load_checkpoint=_init)
    _module("mmdet")
    core = _module("mmdet.core")
    _load("mmdet.core.fp16.utils", mm / "core/fp16/utils.py")
    sys.modules["mmdet.core.fp16"] = _module("mmdet.core.fp16")
    fp16 = _load("mmdet.core.fp16.decorators", mm / "core/fp16/decorators.py")
    geometry = _load("mmdet.core.bbox.geometry", mm / "core/bbox/geometry.py")
    transforms = _load("mmdet.core.bbox.transforms", mm / "core/bbox/transforms.py")
    core.__dict__.update(
        auto_fp16=fp16.auto_fp16, force_fp32=fp16.force_fp32,
        bbox_overlaps=geometry.bbox_overlaps, distance2bbox=transforms.distance2bbox,
        multi_apply=_unused("multi_apply"), multiclass_nms=_unused("multiclass_nms"),
        multiclass_nms_idx=_unused("multiclass_nms_idx"),
    )  # fmt: skip
    _module("mmdet.ops", DeformConv=DeformConvStandIn, CropSplit=CropSplitStandIn,
            CropSplitGt=_unused("CropSplitGt"), ContextBlock=_unused("ContextBlock"),
            ModulatedDeformConv=_unused("ModulatedDeformConv"))  # fmt: skip
    _module("mmdet.models")
    _module("mmdet.models.plugins", GeneralizedAttention=_unused("GeneralizedAttention"))
    _module("mmdet.models.registry", BACKBONES=_Registry(), NECKS=_Registry(), HEADS=_Registry())
    _module("mmdet.models.builder", build_loss=lambda cfg: None)
    _module("mmdet.models.losses", cross_entropy=_unused("cross_entropy"),
            accuracy=_unused("accuracy"))  # fmt: skip
    spec = importlib.util.spec_from_file_location(
        "mmdet.models.utils", mm / "models/utils/__init__.py",
        submodule_search_locations=[str(mm / "models/utils")],
    )  # fmt: skip
    utils = importlib.util.module_from_spec(spec)
    sys.modules["mmdet.models.utils"] = utils
    spec.loader.exec_module(utils)
    _module("mmdet.models.backbones")
    _module("mmdet.models.necks")
    _module("mmdet.models.anchor_heads")
    resnet = _load("mmdet.models.backbones.resnet", mm / "models/backbones/resnet.py")
    fpn = _load("mmdet.models.necks.fpn", mm / "models/necks/fpn.py")
    head = _load("mmdet.models.anchor_heads.sipmask_head",
                 mm / "models/anchor_heads/sipmask_head.py")  # fmt: skip
    return {"ResNet": resnet.ResNet, "FPN": fpn.FPN, "SipMaskHead": head.SipMaskHead}


class AuthorsModel(nn.Module):
    """Their detector as ``configs/sipmask/sipmask_r50_caffe_fpn_gn_1x.py`` builds it
    (``SingleStageDetector``: backbone, neck, bbox_head)."""

    def __init__(self, classes: dict[str, type]):
        super().__init__()
        self.backbone = classes["ResNet"](depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                                          frozen_stages=1, norm_cfg={"type": "BN",
                                          "requires_grad": False}, style="caffe")  # fmt: skip
        self.neck = classes["FPN"](in_channels=[256, 512, 1024, 2048], out_channels=256,
                                   start_level=1, add_extra_convs=True,
                                   extra_convs_on_inputs=False, num_outs=5,
                                   relu_before_extra_convs=True)  # fmt: skip
        self.bbox_head = classes["SipMaskHead"](num_classes=41, in_channels=256, stacked_convs=3,
                                                feat_channels=256, strides=[8, 16, 32, 64, 128],
                                                center_sampling=True,
                                                center_sample_radius=1.5)  # fmt: skip


# ------------------------------------------------------------------ their test pipeline
def imrescale(img: np.ndarray, scale: tuple[int, int]) -> tuple[np.ndarray, float]:
    """mmcv 0.2's ``imrescale(img, scale, return_scale=True)``: scale factor
    min(long / max(h, w), short / min(h, w)), size int(side · factor + 0.5), cv2 bilinear."""
    h, w = img.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    size = (int(w * float(factor) + 0.5), int(h * float(factor) + 0.5))
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR), factor


def image_transform(frame: np.ndarray) -> tuple[torch.Tensor, dict, np.ndarray]:
    """mmdet v1's test ``ImageTransform`` (keep ratio, no flip): rescale, normalise with
    their mean/std (BGR kept), pad to a multiple of 32 with zeros → (1, 3, H', W') and the
    img_meta; also the resized uint8 frame."""
    resized, factor = imrescale(frame, TEST_SCALE)
    img = (resized.astype(np.float32) - MEAN) / 1.0
    h, w = img.shape[:2]
    ph, pw = -(-h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-w // SIZE_DIVISOR) * SIZE_DIVISOR
    padded = np.zeros((ph, pw, 3), dtype=np.float32)
    padded[:h, :w] = img
    meta = {"ori_shape": frame.shape, "img_shape": img.shape, "pad_shape": padded.shape,
            "scale_factor": factor, "flip": False}  # fmt: skip
    return torch.from_numpy(padded.transpose(2, 0, 1).copy())[None], meta, resized


def run(authors: Path, output: Path, commit: str = "") -> None:
    torch.set_grad_enabled(False)
    classes = load_authors(authors)
    bbox_overlaps = sys.modules["mmdet.core"].bbox_overlaps
    model = AuthorsModel(classes).eval()
    names = list(model.state_dict())
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    ckpt = ref.checkpoint(names, shapes)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    head = model.bbox_head

    captured = []  # get_bboxes_single's (boxes+scores, labels, masks) of each frame
    single = head.get_bboxes_single

    def recording(*args, **kwargs):
        result = single(*args, **kwargs)
        captured.append(result)
        return result

    head.get_bboxes_single = recording
    torch.cuda.current_device = lambda: "cpu"  # their test builds its dummies on this device

    out: dict[str, np.ndarray] = {
        "ckpt_keys": np.array(names),
        "ckpt_shapes": np.array([",".join(map(str, s)) for s in shapes]),
        "ckpt_sha256": np.array(ref.checksum(ckpt["state_dict"])),
        "frames_sha256": np.array(ref.frames_checksum(ref.frames())),
    }
    resized_frames = []
    for t, frame in enumerate(ref.frames()):
        img, meta, resized = image_transform(frame)
        meta["is_first"] = t == 0
        resized_frames.append(resized)
        out[f"f{t}_input"] = ref.summarise(img)["sample"]
        feats = model.neck(model.backbone(img))
        for level, f in enumerate(feats):
            for k, v in ref.summarise(f).items():
                out[f"f{t}_fpn{level}_{k}"] = v
        outs = head(feats, feats, False)
        cls_scores, bbox_preds, centernesses, cof_preds, feat_masks, track_feats, _ = outs
        for level in range(len(feats)):
            for name, maps in (("logits", cls_scores), ("reg", bbox_preds),
                               ("ctr", centernesses), ("coef", cof_preds)):  # fmt: skip
                for k, v in ref.summarise(maps[level]).items():
                    out[f"f{t}_{name}{level}_{k}"] = v
        for name, maps in (("basis", feat_masks), ("embed", track_feats)):
            for k, v in ref.summarise(maps).items():
                out[f"f{t}_{name}_{k}"] = v
        if t == 0:
            dense = head.get_bboxes_single(
                *(list(o[0] for o in level) for level in outs[:3]),
                [c[0] for c in cof_preds], feat_masks[0],
                head.get_points([c.shape[-2:] for c in cls_scores], torch.float32, "cpu"),
                meta["img_shape"], meta["ori_shape"], meta["scale_factor"], _Cfg(DENSE_CFG),
                rescale=True,
            )  # fmt: skip
            out["dense_boxes"] = dense[0][:, :4].numpy().copy()
            out["dense_scores"] = dense[0][:, 4].numpy().copy()
            out["dense_labels"] = dense[1].numpy().copy()
            captured.clear()
        memory = None if t == 0 else head.prev_bboxes[:, :4].clone()
        results = head.get_bboxes(*outs, [meta], _Cfg(TEST_CFG), rescale=True)
        det_bboxes, det_labels, _, det_obj_ids = results[0]
        masks = captured[-1][2]
        oh, ow = frame.shape[:2]
        full = np.zeros((len(det_labels), oh, ow), dtype=bool)
        if len(det_labels):
            m = masks.numpy().astype(bool)[:, :oh, :ow]  # their paste: the top-left crop
            full[:, : m.shape[1], : m.shape[2]] = m
        # copies: their tracker memory is this tensor, updated in place at the next frames
        out[f"f{t}_boxes"] = det_bboxes[:, :4].numpy().copy()
        out[f"f{t}_scores"] = det_bboxes[:, 4].numpy().copy()
        out[f"f{t}_labels"] = det_labels.numpy().copy()  # 0-based: their class channels
        out[f"f{t}_masks"] = np.packbits(full, axis=-1)
        out[f"f{t}_ids"] = np.asarray(det_obj_ids, dtype=np.int64)
        if memory is not None:  # the IoUs of their match score: bbox_overlaps, +1
            out[f"f{t}_track_ious"] = bbox_overlaps(det_bboxes[:, :4], memory).numpy()
        print(f"frame {t}: {len(det_labels)} detections, ids {list(out[f'f{t}_ids'])}, "
              f"scores {np.round(out[f'f{t}_scores'], 4).tolist()}")  # fmt: skip
    out["resized_sha256"] = np.array(ref.frames_checksum(resized_frames))
    write_fixture(out, output, authors, commit)


def write_fixture(out: dict[str, np.ndarray], output: Path, authors: Path, commit: str) -> None:
    """Save the arrays ``out`` to ``output`` with the authors' commit: ``commit``, else the
    HEAD of ``authors`` when it is a git checkout."""
    if not commit:
        commit = subprocess.run(["git", "-C", str(authors), "log", "-1", "--format=%H"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
    out["authors_commit"] = np.array(commit or "unknown")
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **out)
    print(f"wrote {output} ({output.stat().st_size / 1024:.0f} KiB)")


def command_line(doc: str, authors_help: str, default_output: Path) -> argparse.Namespace:
    """``--authors`` (a folder of the authors' repository), ``--output``, ``--commit``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--authors", required=True, type=Path, help=authors_help)
    parser.add_argument("--output", type=Path, default=default_output)
    parser.add_argument("--commit", default="", help="the authors' commit, when --authors is "
                        "an export without git history")  # fmt: skip
    return parser.parse_args()


def main() -> None:
    args = command_line(__doc__, "the SipMask-VIS folder of the authors' repository",
                        REPO / "tests/fixtures/sipmask_vis_reference.npz")  # fmt: skip
    run(args.authors, args.output, args.commit)


if __name__ == "__main__":
    main()
