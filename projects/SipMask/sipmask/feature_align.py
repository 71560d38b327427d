"""SipMask's feature alignment: the class tower resampled towards the box each location
regresses, by a deformable 3×3 convolution whose offsets come from the detached ltrb."""

from __future__ import annotations

import torch
from detectron2.layers import get_norm
from torch import nn

from vis_d2.layers import DeformConv

__all__ = ["FeatureAlign"]


class FeatureAlign(nn.Module):
    """``forward(x, ltrb)``: x (N, C, H, W) a level's class tower output, ltrb (N, 4, H, W)
    the level's box regression in strides (detached here) → (N, C, H, W).

    A 1×1 conv without bias (zero-initialised, so training starts from the plain conv) maps
    the ltrb to the offsets of a 3×3 deformable conv with ``deform_groups`` offset groups
    (normal(0, 0.01) weights; a zero-initialised bias with ``bias``, as the
    maskrcnn-benchmark models have), followed by the norm (GroupNorm(32) or none) and ReLU."""

    def __init__(self, channels: int, deform_groups: int = 4, norm: str = "GN", bias: bool = False):
        super().__init__()
        self.conv = DeformConv(
            channels, channels, 3, padding=1, offset_groups=deform_groups, bias=bias
        )
        self.conv_offset = nn.Conv2d(4, self.conv.offset_channels, 1, bias=False)
        self.norm = get_norm(norm, channels) if norm else nn.Identity()
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.normal_(self.conv.weight, std=0.01)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
        offset = self.conv_offset(ltrb.detach())
        return torch.relu(self.norm(self.conv(x, offset)))
