#!/usr/bin/env python
"""Write the SipMask image reference fixture by running the authors' own code.

    python dev/reference/sipmask.py --authors /path/to/SipMask/SipMask-mmdetection \\
        [--output tests/fixtures/sipmask_reference.npz]

``--authors`` is the ``SipMask-mmdetection`` folder of a checkout of the authors' repository
(JialeCao001/SipMask). Their model classes (caffe-style ResNet-50, FPN, ``SipMaskHead``, with
mmdetection v1's ``ConvModule``, ``Scale`` and norm/conv builders) and their test-time functions
(``SipMaskHead.forward``, ``get_bboxes``, ``get_bboxes_single``: candidates, NMS, masks and their
paste; ``multiclass_nms_idx`` and the ``nms`` wrapper; ``distance2bbox``, ``force_fp32``) are
imported from that folder unchanged, built with the settings of
``configs/sipmask/sipmask_r50_caffe_fpn_gn_1x.py``. Only what is compiled or belongs to the
mmcv/mmdet packaging is stood in for, here: ``DeformConv`` and the ``CropSplit`` CUDA op as in
``sipmask_vis.py``; the CPU kernel of mmdetection v1's ``nms`` op (``nms_cpu.cpp``) by the same
loop on tensors; mmcv's init functions, the registries and the loss builders (not used at test
time) by stubs; ``mmcv.imrescale`` by ``cv2.resize`` with mmcv 0.2's size rule. Their detector's
``simple_test`` (``SingleStageDetector``: backbone, neck, head, ``get_bboxes`` with
``rescale=True``, as their ``tools/test.py``) is three lines, written out in :func:`run`.

The checkpoint is generated from formulas (``tests/sipmask_reference.py``) for the names and
shapes of their model's ``state_dict()``, which the fixture stores with its checksum; the test
regenerates it, converts it with ``tools/convert_weights.py`` and compares every stage.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

import sipmask_reference as ref  # noqa: E402


def _script(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the SipMask-VIS reference script: its stand-ins, stubs and mmcv.imrescale
vis = _script("sipmask_vis_reference_script", HERE / "sipmask_vis.py")

STRIDES = (8, 16, 32, 64, 128)
NMS_PRE = 1000
TEST_CFG = {"nms_pre": NMS_PRE, "min_bbox_size": 0, "score_thr": 0.05,
            "nms": {"type": "nms", "iou_thr": 0.5}, "max_per_img": 100}  # fmt: skip


def nms_cpu_stand_in(dets: torch.Tensor, threshold: float) -> torch.Tensor:
    """``nms_cpu.nms`` of mmdetection v1 (``ops/nms/src/nms_cpu.cpp``) on tensors: boxes by
    descending score; each kept box suppresses the later ones whose IoU with it, widths and
    heights + 1, is ≥ ``threshold``; the kept indices in input order."""
    x1, y1, x2, y2, scores = (dets[:, i] for i in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.sort(0, descending=True)[1]
    suppressed = torch.zeros(len(dets), dtype=torch.bool)
    threshold = torch.tensor(threshold, dtype=torch.float32)
    for pos in range(len(order)):
        i = order[pos]
        if suppressed[i]:
            continue
        later = order[pos + 1 :]
        w = (torch.minimum(x2[i], x2[later]) - torch.maximum(x1[i], x1[later]) + 1).clamp(min=0)
        h = (torch.minimum(y2[i], y2[later]) - torch.maximum(y1[i], y1[later]) + 1).clamp(min=0)
        inter = w * h
        ovr = inter / (areas[i] + areas[later] - inter)
        suppressed[later[ovr >= threshold]] = True
    return (~suppressed).nonzero()[:, 0]


def load_authors(root: Path) -> dict[str, object]:
    """The authors' ResNet, FPN and SipMaskHead classes and ``multiclass_nms_idx``, imported
    from ``root``/mmdet."""
    mm = root / "mmdet"
    module, load, unused = vis._module, vis._load, vis._unused
    init = vis._init
    module("mmcv")
    module("mmcv.cnn", constant_init=init, kaiming_init=init, normal_init=init,
           xavier_init=init)  # fmt: skip
    module("mmcv.runner", load_checkpoint=init)
    module("mmdet")
    module("mmdet.utils", get_root_logger=lambda *a, **k: None)
    core = module("mmdet.core")
    module("mmdet.core.fp16")
    load("mmdet.core.fp16.utils", mm / "core/fp16/utils.py")
    fp16 = load("mmdet.core.fp16.decorators", mm / "core/fp16/decorators.py")
    geometry = load("mmdet.core.bbox.geometry", mm / "core/bbox/geometry.py")
    transforms = load("mmdet.core.bbox.transforms", mm / "core/bbox/transforms.py")
    ops = module("mmdet.ops")
    nms_ops = module("mmdet.ops.nms")
    module("mmdet.ops.nms.nms_cpu", nms=nms_cpu_stand_in)
    module("mmdet.ops.nms.nms_cuda", nms=unused("nms_cuda"))
    module("mmdet.ops.nms.soft_nms_cpu", soft_nms_cpu=unused("soft_nms_cpu"))
    nms_ops.nms_wrapper = load("mmdet.ops.nms.nms_wrapper", mm / "ops/nms/nms_wrapper.py")
    bbox_nms = load("mmdet.core.post_processing.bbox_nms",
                    mm / "core/post_processing/bbox_nms.py")  # fmt: skip
    core.__dict__.update(
        auto_fp16=fp16.auto_fp16, force_fp32=fp16.force_fp32,
        bbox_overlaps=geometry.bbox_overlaps, distance2bbox=transforms.distance2bbox,
        multi_apply=unused("multi_apply"), multiclass_nms=bbox_nms.multiclass_nms,
        multiclass_nms_idx=bbox_nms.multiclass_nms_idx,
    )  # fmt: skip
    module("mmdet.ops.dcn", DeformConvPack=unused("DeformConvPack"),
           ModulatedDeformConvPack=unused("ModulatedDeformConvPack"))  # fmt: skip
    for name in ("activation", "conv_ws", "conv", "norm", "conv_module", "scale"):
        load(f"mmdet.ops.{name}", mm / f"ops/{name}.py")
    m = sys.modules
    ops.__dict__.update(
        ConvModule=m["mmdet.ops.conv_module"].ConvModule, Scale=m["mmdet.ops.scale"].Scale,
        build_conv_layer=m["mmdet.ops.conv"].build_conv_layer,
        build_norm_layer=m["mmdet.ops.norm"].build_norm_layer,
        DeformConv=vis.DeformConvStandIn, CropSplit=vis.CropSplitStandIn,
        CropSplitGt=unused("CropSplitGt"), ContextBlock=unused("ContextBlock"),
        GeneralizedAttention=unused("GeneralizedAttention"),
    )  # fmt: skip
    module("mmdet.models")
    module("mmdet.models.registry", BACKBONES=vis._Registry(), NECKS=vis._Registry(),
           HEADS=vis._Registry())  # fmt: skip
    module("mmdet.models.builder", build_loss=lambda cfg: None)
    load("mmdet.models.utils", mm / "models/utils/weight_init.py")
    module("mmdet.models.backbones")
    module("mmdet.models.necks")
    module("mmdet.models.anchor_heads")
    resnet = load("mmdet.models.backbones.resnet", mm / "models/backbones/resnet.py")
    fpn = load("mmdet.models.necks.fpn", mm / "models/necks/fpn.py")
    head = load("mmdet.models.anchor_heads.sipmask_head",
                mm / "models/anchor_heads/sipmask_head.py")  # fmt: skip
    return {"ResNet": resnet.ResNet, "FPN": fpn.FPN, "SipMaskHead": head.SipMaskHead}


class AuthorsModel(nn.Module):
    """Their detector as ``configs/sipmask/sipmask_r50_caffe_fpn_gn_1x.py`` builds it
    (``SipMask``, a ``SingleStageDetector``: backbone, neck, bbox_head)."""

    def __init__(self, classes: dict[str, type]):
        super().__init__()
        self.backbone = classes["ResNet"](depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                                          frozen_stages=1, norm_cfg={"type": "BN",
                                          "requires_grad": False}, style="caffe")  # fmt: skip
        self.neck = classes["FPN"](in_channels=[256, 512, 1024, 2048], out_channels=256,
                                   start_level=1, add_extra_convs=True,
                                   extra_convs_on_inputs=False, num_outs=5,
                                   relu_before_extra_convs=True)  # fmt: skip
        self.bbox_head = classes["SipMaskHead"](num_classes=81, in_channels=256, stacked_convs=4,
                                                feat_channels=256, strides=list(STRIDES),
                                                center_sampling=True,
                                                center_sample_radius=1.5)  # fmt: skip


def image_transform(image: np.ndarray) -> tuple[torch.Tensor, dict, np.ndarray]:
    """Their test pipeline (``Resize`` keep_ratio to :data:`ref.TEST_SCALE`, ``Normalize``
    with their mean and std 1, BGR kept, ``Pad`` with zeros to a multiple of 32) → (1, 3, H',
    W'), the img_meta (``scale_factor`` the scalar of ``mmcv.imrescale``), and the resized
    uint8 image."""
    resized, factor = vis.imrescale(image, ref.TEST_SCALE)
    img = resized.astype(np.float32) - vis.MEAN
    h, w = img.shape[:2]
    size = vis.SIZE_DIVISOR
    padded = np.zeros((-(-h // size) * size, -(-w // size) * size, 3), dtype=np.float32)
    padded[:h, :w] = img
    meta = {"ori_shape": image.shape, "img_shape": img.shape, "pad_shape": padded.shape,
            "scale_factor": factor, "flip": False}  # fmt: skip
    return torch.from_numpy(padded.transpose(2, 0, 1).copy())[None], meta, resized


def candidate_cells(head_outs, image: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(level, cell index) of every candidate of ``get_bboxes_single``, in its order: per
    level, the ``nms_pre`` best cells by their best class probability × centerness (their
    ``topk``, the same call on the same tensors), all cells of a smaller level."""
    cls_scores, _, centernesses = head_outs[:3]
    levels, cells = [], []
    for level, (cls, ctr) in enumerate(zip(cls_scores, centernesses, strict=True)):
        scores = cls[image].permute(1, 2, 0).reshape(-1, cls.shape[1]).sigmoid()
        ctr = ctr[image].permute(1, 2, 0).reshape(-1).sigmoid()
        inds = torch.arange(len(scores))
        if len(scores) > NMS_PRE:
            inds = (scores * ctr[:, None]).max(dim=1)[0].topk(NMS_PRE)[1]
        levels.append(np.full(len(inds), level))
        cells.append(inds.numpy())
    return np.concatenate(levels), np.concatenate(cells)


def run(authors: Path, output: Path, commit: str = "") -> None:
    torch.set_grad_enabled(False)
    classes = load_authors(authors)
    model = AuthorsModel(classes).eval()
    names = list(model.state_dict())
    shapes = [tuple(v.shape) for v in model.state_dict().values()]
    ckpt = ref.checkpoint(names, shapes)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    head = model.bbox_head

    nms_calls = []  # multiclass_nms_idx's (bboxes, labels, idxs_keep) of each image
    nms_idx = sys.modules["mmdet.models.anchor_heads.sipmask_head"].multiclass_nms_idx

    def recording(*args, **kwargs):
        result = nms_idx(*args, **kwargs)
        nms_calls.append(result)
        return result

    sys.modules["mmdet.models.anchor_heads.sipmask_head"].multiclass_nms_idx = recording

    out: dict[str, np.ndarray] = {
        "ckpt_keys": np.array(names),
        "ckpt_shapes": np.array([",".join(map(str, s)) for s in shapes]),
        "ckpt_sha256": np.array(ref.checksum(ckpt["state_dict"])),
        "images_sha256": np.array(ref.images_checksum(ref.images())),
    }
    resized_images = []
    for n, image in enumerate(ref.images()):
        img, meta, resized = image_transform(image)
        resized_images.append(resized)
        out[f"i{n}_input"] = ref.summarise(img)["sample"]
        # their simple_test: extract_feat, bbox_head, get_bboxes(..., rescale=True)
        feats = model.neck(model.backbone(img))
        outs = head(feats)
        results = head.get_bboxes(*outs, [meta], vis._Cfg(TEST_CFG), rescale=True)
        det_bboxes, det_labels, cls_segms = results[0]
        for level, f in enumerate(feats):
            for k, v in ref.summarise(f).items():
                out[f"i{n}_fpn{level}_{k}"] = v
        cls_scores, bbox_preds, centernesses, cof_preds, feat_masks = outs
        for level in range(len(feats)):
            for name, maps in (("logits", cls_scores), ("reg", bbox_preds),
                               ("ctr", centernesses), ("coef", cof_preds)):  # fmt: skip
                for k, v in ref.summarise(maps[level]).items():
                    out[f"i{n}_{name}{level}_{k}"] = v
        for k, v in ref.summarise(feat_masks).items():
            out[f"i{n}_basis_{k}"] = v
        # the masks of their result: RLEs per class, in detection order within a class
        labels = det_labels.numpy()
        height, width = image.shape[:2]
        masks = np.zeros((len(labels), height, width), dtype=bool)
        taken = {label: 0 for label in set(labels.tolist())}
        for i, label in enumerate(labels.tolist()):
            masks[i] = mask_util.decode(cls_segms[label][taken[label]]).astype(bool)
            taken[label] += 1
        levels, cells = candidate_cells(outs)
        kept = nms_calls[-1][2].numpy()
        out[f"i{n}_boxes"] = det_bboxes[:, :4].numpy().copy()
        out[f"i{n}_scores"] = det_bboxes[:, 4].numpy().copy()
        out[f"i{n}_labels"] = labels.copy()  # 0-based: their class channels
        out[f"i{n}_levels"] = levels[kept]
        out[f"i{n}_cells"] = cells[kept]
        out[f"i{n}_masks"] = np.packbits(masks, axis=-1)
        print(f"image {n}: {image.shape[:2]} -> {resized.shape[:2]}, {len(labels)} "
              f"detections, classes {np.bincount(labels).tolist()}, mask pixels "
              f"{int(masks.sum())}")  # fmt: skip
    out["resized_sha256"] = np.array(ref.images_checksum(resized_images))
    vis.write_fixture(out, output, authors, commit)


def main() -> None:
    args = vis.command_line(__doc__, "SipMask-mmdetection of the authors' repository",
                            REPO / "tests/fixtures/sipmask_reference.npz")  # fmt: skip
    run(args.authors, args.output, args.commit)


if __name__ == "__main__":
    main()
