"""ResNet-FPN with P3–P7 (P6/P7 computed from the P5 output), as FCOS uses it."""

from __future__ import annotations

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from torch import nn

from .resnet import build_resnet

__all__ = ["LastLevelP6", "build_fcos_resnet_fpn_backbone"]


class LastLevelP6(nn.Module):
    """P6 only: a 3×3 stride-2 conv on ``in_feature`` (detectron2 ships P6+P7 and max-pool P6)."""

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.p6(x)]


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """detectron2's ResNet + FPN; ``MODEL.FCOS.TOP_LEVELS`` extra levels (0, 1: P6, 2: P6+P7)
    computed from the FPN's P5 output, so p3..p7 have strides 8..128 and FPN.OUT_CHANNELS channels.
    """
    bottom_up = build_resnet(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    top_levels = cfg.MODEL.FCOS.TOP_LEVELS
    if top_levels == 2:
        top_block = LastLevelP6P7(out_channels, out_channels, in_feature="p5")
    elif top_levels == 1:
        top_block = LastLevelP6(out_channels, out_channels, in_feature="p5")
    elif top_levels == 0:
        top_block = None
    else:
        raise ValueError(f"MODEL.FCOS.TOP_LEVELS must be 0, 1 or 2, not {top_levels}")
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
