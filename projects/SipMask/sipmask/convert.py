"""The authors' released SipMask image checkpoints (JialeCao001/SipMask) → this implementation's
``SipMask`` (``tools/convert_weights.py``), from either of their code bases; the layout is read
from the names.

**mmdetection v1** (``SipMask-mmdetection``: ``{"meta", "state_dict"}``, names ``backbone.``,
``neck.``, ``bbox_head.``): caffe-style ResNet, FPN with P6/P7 from P5, ``SipMaskHead``.

* ``cls_convs``/``reg_convs`` (``ConvModule``: 3×3 conv, GN without conv bias in the
  high-accuracy and ``_gn`` models; conv with bias and no norm in the real-time ones) → the
  FCOS class/box towers (a missing conv bias is 0);
* ``fcos_cls``, ``fcos_reg``, ``fcos_centerness``, ``scales`` → the FCOS head;
* ``feat_align.conv_offset``, ``feat_align.conv_adaption`` (DeformConv, 4 offset groups, no
  bias) → ``feature_align.conv_offset``/``.conv``, offsets in the same (dy, dx) order. Their
  ``FeatureAlign`` always builds ``feat_align.norm`` (GroupNorm) but applies it only with a
  norm: the real-time models' is reported unused;
* ``sip_cof`` → ``coefficients.conv`` (channel 32q + k: sub-region q, row-major, in both);
  ``sip_mask_lat0``, ``sip_mask_lat`` → ``basis.lateral``, ``basis.output``;
* SipMask++: the deformable ResNet blocks (``conv2`` a ``DeformConvPack`` with
  ``conv2.conv_offset``) → detectron2's ``DeformBottleneckBlock`` (``conv2_offset``,
  ``conv2``); ``convs_scoring.{i}.conv`` (3×3, stride 2, bias, ReLU) → ``rescoring.convs``,
  ``mask_scoring`` → ``rescoring.score``.

**maskrcnn-benchmark** (``SipMask-benchmark``: ``{"model", "optimizer", ...}``, names
``backbone.body.``, ``backbone.fpn.``, ``rpn.head.``, ``module.``-prefixed when saved from
DistributedDataParallel, which :func:`~vis_d2.engine.weight_conversion.load_checkpoint_weights`
removes): C2-style ResNet with frozen BN (``stem.conv1``/``stem.bn1``, ``layer1-4``), FPN
``fpn_inner*``/``fpn_layer*``/``top_blocks.p6/p7``, head ``cls_tower``/``bbox_tower``
(Sequentials of conv with bias, GroupNorm, ReLU: our towers' layout), ``cls_logits``,
``bbox_pred``, ``centerness``, ``scales`` (shape (1,), ours ()), ``feat_align`` whose
``conv_adaption`` has a bias (``MODEL.SIPMASK.FEATURE_ALIGN_BIAS``), ``sip_cof``,
``sip_mask_lat0``, ``sip_mask_lat``.

A checkpoint that does not fit the config (norms, towers, deformable blocks, re-scoring,
classes) stops with an error naming the first tensor without a counterpart.
"""

from __future__ import annotations

import re

import torch

from vis_d2.engine.weight_conversion import (
    Conversion,
    ConversionBuilder,
    ConversionError,
    map_conv_module_tower,
    map_maskrcnn_benchmark_fpn,
    map_maskrcnn_benchmark_resnet,
    map_mmdet_fpn,
    map_mmdet_resnet,
    register_converter,
)

__all__ = ["checkpoint_layout", "convert_authors_checkpoint"]

MMDET_HEAD = "bbox_head."
BENCH_HEAD = "rpn.head."
UNAPPLIED_ALIGN_NORM = (
    "FeatureAlign's GroupNorm: built by their head but applied only with a norm (their "
    "real-time models have none)"
)


def checkpoint_layout(source: dict[str, torch.Tensor]) -> str:
    """The layout, "mmdetection" or "maskrcnn-benchmark", from the names of a checkpoint's weights.

    Raises:
        ConversionError: names of neither layout.
    """
    if any(k.startswith(MMDET_HEAD) for k in source):
        return "mmdetection"
    if any(k.startswith(BENCH_HEAD) for k in source):
        return "maskrcnn-benchmark"
    raise ConversionError(
        f"no weight is named {MMDET_HEAD}* (SipMask-mmdetection) or {BENCH_HEAD}* "
        f"(SipMask-benchmark): not a checkpoint of the authors' SipMask (first names: "
        f"{', '.join(list(source)[:3])})"
    )


@register_converter("SipMask")
def convert_authors_checkpoint(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> Conversion:
    """The authors' SipMask / SipMask++ weights (either code base's names) → this
    ``SipMask``'s."""
    b = ConversionBuilder(source, target)
    if checkpoint_layout(source) == "mmdetection":
        _map_mmdetection(b)
    else:
        _map_benchmark(b)
    return b.finish()


def _map_mmdetection(b: ConversionBuilder) -> None:
    head = MMDET_HEAD
    map_mmdet_resnet(b, "backbone.", "backbone.bottom_up.")
    map_mmdet_fpn(b, "neck.", "backbone.")
    map_conv_module_tower(b, "fcos.head.cls_tower.", head + "cls_convs.")
    map_conv_module_tower(b, "fcos.head.bbox_tower.", head + "reg_convs.")
    b.take_layer("fcos.head.cls_logits", head + "fcos_cls")
    b.take_layer("fcos.head.bbox_pred", head + "fcos_reg")
    b.take_layer("fcos.head.ctrness", head + "fcos_centerness")
    _map_scales(b, head)
    b.take("feature_align.conv_offset.weight", head + "feat_align.conv_offset.weight")
    b.take_layer("feature_align.conv", head + "feat_align.conv_adaption")
    if b.target_keys("feature_align.norm."):
        b.take_layer("feature_align.norm", head + "feat_align.norm")
    else:
        b.ignore(rf"^{re.escape(head)}feat_align\.norm\.", UNAPPLIED_ALIGN_NORM)
    _map_masks(b, head)
    if b.target_keys("rescoring."):
        map_conv_module_tower(b, "rescoring.convs.", head + "convs_scoring.")
        b.take_layer("rescoring.score", head + "mask_scoring")


def _map_benchmark(b: ConversionBuilder) -> None:
    head = BENCH_HEAD
    map_maskrcnn_benchmark_resnet(b, "backbone.body.", "backbone.bottom_up.")
    map_maskrcnn_benchmark_fpn(b, "backbone.fpn.", "backbone.")
    for tower in ("cls_tower", "bbox_tower"):
        for key in b.target_keys(f"fcos.head.{tower}."):
            b.take(key, head + key[len("fcos.head.") :])
    b.take_layer("fcos.head.cls_logits", head + "cls_logits")
    b.take_layer("fcos.head.bbox_pred", head + "bbox_pred")
    b.take_layer("fcos.head.ctrness", head + "centerness")
    _map_scales(b, head)
    b.take("feature_align.conv_offset.weight", head + "feat_align.conv_offset.weight")
    b.take_layer("feature_align.conv", head + "feat_align.conv_adaption")
    b.take_layer("feature_align.norm", head + "feat_align.norm")
    _map_masks(b, head)


def _map_scales(b: ConversionBuilder, head: str) -> None:
    """The per-level box scales, () or (1,) in the source, () here."""
    for key in b.target_keys("fcos.head.scales."):
        level = key.split(".")[3]
        b.take(key, f"{head}scales.{level}.scale", _as_scalar)


def _as_scalar(scale: torch.Tensor) -> torch.Tensor:
    """A one-element scale as a 0-d tensor (another shape is left for the shape check)."""
    return scale.reshape(()) if scale.numel() == 1 else scale


def _map_masks(b: ConversionBuilder, head: str) -> None:
    """The coefficient conv and the basis convs, named alike in both code bases."""
    b.take_layer("coefficients.conv", head + "sip_cof")
    b.take_layer("basis.lateral", head + "sip_mask_lat0")
    b.take_layer("basis.output", head + "sip_mask_lat")
