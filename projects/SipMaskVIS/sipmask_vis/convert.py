"""The authors' released SipMask-VIS checkpoints (mmdetection v1, JialeCao001/SipMask,
``SipMask-VIS/``: e.g. ``vis_sipmask_ms_1x_final.pth``) → this implementation's
``SipMaskVIS`` (``tools/convert_weights.py``).

Their model is ``backbone`` (caffe-style ResNet), ``neck`` (FPN, P6/P7 from the P5 output)
and ``bbox_head`` (``SipMaskHead``); every weight maps one to one, in the same layout:

* ``cls_convs``/``reg_convs``/``track_convs`` (3×3 conv without bias, GN, ReLU) → the FCOS
  class/box towers and the track tower; their conv biases are set to 0;
* ``fcos_cls`` (40 sigmoid classes), ``fcos_reg``, ``fcos_centerness``, ``scales`` → the FCOS
  head (the box regression is linear after the scale in both);
* ``feat_align.conv_offset`` and ``feat_align.conv_adaption`` (mmdetection's DeformConv, 4
  offset groups) → ``feature_align.conv_offset``/``.conv``: both deformable convs read the
  offsets per offset group, per kernel tap row-major, as (dy, dx) (mmdetection's
  ``deform_conv_cuda_kernel.cu`` and torchvision's ``deform_conv2d``), so no permutation;
* ``sip_cof`` (channels [32q, 32q + 32) are sub-region q of 2×2, row-major) →
  ``coefficients.conv`` (channel 32q + k), same order;
* ``sip_mask_lat0`` (1×1, 768 → 512), ``sip_mask_lat`` (3×3, 512 → 32) → ``basis.lateral``,
  ``basis.output``; ``sipmask_track`` (1×1, 768 → 512) → ``track_head.embed``, the inputs of
  both concatenated P3, P4, P5 as here.
"""

from __future__ import annotations

import torch

from vis_d2.engine.weight_conversion import (
    Conversion,
    ConversionBuilder,
    map_conv_module_tower,
    map_mmdet_fpn,
    map_mmdet_resnet,
    register_converter,
)

__all__ = ["convert_authors_checkpoint"]

HEAD = "bbox_head."


@register_converter("SipMaskVIS")
def convert_authors_checkpoint(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> Conversion:
    """The authors' SipMask-VIS weights (mmdetection v1 names) → this ``SipMaskVIS``'s."""
    b = ConversionBuilder(source, target)
    map_mmdet_resnet(b, "backbone.", "backbone.bottom_up.")
    map_mmdet_fpn(b, "neck.", "backbone.")

    map_conv_module_tower(b, "fcos.head.cls_tower.", HEAD + "cls_convs.")
    map_conv_module_tower(b, "fcos.head.bbox_tower.", HEAD + "reg_convs.")
    b.take_layer("fcos.head.cls_logits", HEAD + "fcos_cls")
    b.take_layer("fcos.head.bbox_pred", HEAD + "fcos_reg")
    b.take_layer("fcos.head.ctrness", HEAD + "fcos_centerness")
    for key in b.target_keys("fcos.head.scales."):
        level = key.split(".")[3]
        b.take(key, f"{HEAD}scales.{level}.scale")

    b.take("feature_align.conv_offset.weight", HEAD + "feat_align.conv_offset.weight")
    b.take("feature_align.conv.weight", HEAD + "feat_align.conv_adaption.weight")
    b.take_layer("feature_align.norm", HEAD + "feat_align.norm")
    b.take_layer("coefficients.conv", HEAD + "sip_cof")
    b.take_layer("basis.lateral", HEAD + "sip_mask_lat0")
    b.take_layer("basis.output", HEAD + "sip_mask_lat")

    map_conv_module_tower(b, "track_head.tower.", HEAD + "track_convs.")
    b.take_layer("track_head.embed", HEAD + "sipmask_track")
    return b.finish()
