"""SipMask-VIS's track branch: an instance embedding map at the stride of P3."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vis_d2.layers import build_tower, normal_init

__all__ = ["TrackHead"]


class TrackHead(nn.Module):
    """``forward(features)``: FPN levels P3-P5, (B, C, H_l, W_l) each → a tower of
    ``num_convs`` (3×3 conv, GN, ReLU) shared by the levels, the outputs bilinearly resized to
    P3 and concatenated, a 1×1 conv → (B, embed_dim, H_3, W_3) embeddings (no normalisation;
    an instance's is read at the cell of its box centre)."""

    def __init__(
        self,
        in_channels: int,
        num_levels: int = 3,
        num_convs: int = 2,
        embed_dim: int = 512,
        norm: str = "GN",
    ):
        super().__init__()
        self.tower = build_tower(in_channels, in_channels, num_convs, norm)
        self.embed = nn.Conv2d(num_levels * in_channels, embed_dim, 1)
        normal_init(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        towers = [self.tower(f) for f in features]
        size = towers[0].shape[-2:]
        towers = [towers[0]] + [
            F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in towers[1:]
        ]
        return self.embed(torch.cat(towers, dim=1))
