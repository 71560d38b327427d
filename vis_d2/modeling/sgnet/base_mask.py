"""SG-Net's base mask module (BMM, Sec. 3.2): K non-negative base maps at stride 2 from the
FPN levels P3-P5."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn
from torch.nn import functional as F

__all__ = ["BaseMaskModule"]


class BaseMaskModule(nn.Module):
    """P3-P5 (B, C, H_l, W_l) bilinearly resized to the first level's size and concatenated,
    then ``num_convs`` × (conv3×3 → ``convs_dim``, optional norm, ReLU), conv1×1 →
    ``out_channels``, ReLU, and a bilinear ×``upsample``: (B, out_channels, upsample·H_3,
    upsample·W_3), i.e. stride 2 (H/2 × W/2 for an H × W padded input) by default."""

    @configurable
    def __init__(
        self,
        *,
        in_features: list[str],
        in_channels: int,
        convs_dim: int = 128,
        num_convs: int = 2,
        out_channels: int = 36,
        upsample: int = 4,
        norm: str = "",
    ):
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"the base mask module needs at least one 3x3 conv, got {num_convs}")
        self.in_features = list(in_features)
        self.upsample = upsample
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(
                Conv2d(
                    in_channels if i == 0 else convs_dim,
                    convs_dim,
                    kernel_size=3,
                    padding=1,
                    bias=not norm,
                    norm=get_norm(norm, convs_dim),
                    activation=F.relu,
                )
            )
        layers.append(Conv2d(convs_dim, out_channels, kernel_size=1, activation=F.relu))
        self.tower = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        base = cfg.MODEL.SGNET.BASE
        missing = [f for f in base.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(f"base mask features {missing} are not among {list(input_shape)}")
        return {
            "in_features": list(base.IN_FEATURES),
            "in_channels": sum(input_shape[f].channels for f in base.IN_FEATURES),
            "convs_dim": base.CONVS_DIM,
            "num_convs": base.NUM_CONVS,
            "out_channels": base.OUT_CHANNELS,
            "upsample": base.UPSAMPLE,
            "norm": base.NORM,
        }

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """``features``: name → (B, C, H_l, W_l) → bases (B, out_channels, upsample·H_0,
        upsample·W_0) ≥ 0 (channels-last when upsampled), with (H_0, W_0) the size of the first
        input feature (P3)."""
        maps = [features[f] for f in self.in_features]
        size = maps[0].shape[-2:]
        maps = [maps[0]] + [
            F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]
        ]
        x = self.tower(torch.cat(maps, dim=1))
        if self.upsample != 1:
            # in channels-last layout: the mask assembly reads the K values of a pixel together
            # (mask_windows), and this upsampling is faster so than channels-first
            x = x.contiguous(memory_format=torch.channels_last)
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return x
