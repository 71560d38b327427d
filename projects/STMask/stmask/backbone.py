"""STMask's ResNet-FPN (YOLACT++'s): P3–P5 from detectron2's FPN with ReLU on its outputs, then
P6 and P7 by 3×3 stride-2 convs, the first on P5, with no activation between them. The top-down
path upsamples by nearest ×2 (detectron2's) or bilinearly to the lateral's size (the authors')."""

from __future__ import annotations

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, Backbone
from torch import nn
from torch.nn import functional as F

from vis_d2.modeling.backbone import build_resnet

__all__ = ["STMaskFPN", "build_stmask_resnet_fpn_backbone"]


class STMaskFPN(Backbone):
    """``fpn`` (without a top block) with ReLU on each of its outputs, then ``num_downsample``
    levels, each a 3×3 stride-2 conv on the level before it (the first on the ReLU'd last FPN
    level). Outputs ``p3`` … (B, C, H / s, W / s) for strides s = 8 … 128 by default.
    ``upsample``: the top-down path's "nearest" ×2 (detectron2's FPN) or "bilinear" to the
    lateral's size (YOLACT++'s, which the authors' weights were trained with)."""

    def __init__(self, fpn: FPN, num_downsample: int = 2, upsample: str = "nearest"):
        super().__init__()
        if fpn.top_block is not None:
            raise ValueError("STMaskFPN adds its own extra levels: build the FPN without top_block")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(
                f"MODEL.STMASK.FPN_UPSAMPLE must be nearest or bilinear, not {upsample}"
            )
        self.fpn = fpn
        self.upsample = upsample
        channels = fpn.output_shape()[fpn._out_features[-1]].channels
        self.downsample = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_downsample)
        )
        for conv in self.downsample:
            weight_init.c2_xavier_fill(conv)
        shapes = fpn.output_shape()
        last = fpn._out_features[-1]
        level, stride = int(last[1:]), shapes[last].stride
        self._out_features = list(fpn._out_features)
        self._out_feature_channels = {f: shapes[f].channels for f in self._out_features}
        self._out_feature_strides = {f: shapes[f].stride for f in self._out_features}
        for _ in range(num_downsample):
            level, stride = level + 1, stride * 2
            name = f"p{level}"
            self._out_features.append(name)
            self._out_feature_channels[name] = channels
            self._out_feature_strides[name] = stride

    @property
    def size_divisibility(self) -> int:
        return self._out_feature_strides[self._out_features[-1]]

    def _bilinear_fpn(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """detectron2's FPN forward (its modules, in its top-down order) with bilinear
        upsampling to each lateral's size."""
        fpn = self.fpn
        bottom_up = fpn.bottom_up(x)
        names = fpn.in_features[::-1]  # top (coarsest) first, as fpn.lateral_convs
        prev = fpn.lateral_convs[0](bottom_up[names[0]])
        results = [fpn.output_convs[0](prev)]
        for name, lateral_conv, output_conv in zip(
            names[1:], fpn.lateral_convs[1:], fpn.output_convs[1:], strict=True
        ):
            lateral = lateral_conv(bottom_up[name])
            top_down = F.interpolate(
                prev, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            prev = lateral + top_down
            if fpn._fuse_type == "avg":
                prev = prev / 2
            results.insert(0, output_conv(prev))
        return dict(zip(fpn._out_features, results, strict=True))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.fpn(x) if self.upsample == "nearest" else self._bilinear_fpn(x)
        out = {name: torch.relu(f) for name, f in features.items()}
        last = out[self.fpn._out_features[-1]]
        for name, conv in zip(self._out_features[len(out) :], self.downsample, strict=True):
            last = conv(last)
            out[name] = last
        return out


@BACKBONE_REGISTRY.register()
def build_stmask_resnet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """ResNet (``MODEL.RESNETS``) + FPN on ``MODEL.FPN.IN_FEATURES`` with ReLU outputs +
    ``MODEL.STMASK.NUM_DOWNSAMPLE`` strided levels; top-down upsampling
    ``MODEL.STMASK.FPN_UPSAMPLE``."""
    fpn = FPN(
        bottom_up=build_resnet(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=None,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    return STMaskFPN(fpn, cfg.MODEL.STMASK.NUM_DOWNSAMPLE, cfg.MODEL.STMASK.FPN_UPSAMPLE)
