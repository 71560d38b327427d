"""SipMask's basis masks: K non-negative maps at stride 2 from the box towers of P3-P5."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BasisModule"]


class BasisModule(nn.Module):
    """``forward(towers)``: the box-tower outputs of the first levels, (B, C, H_l, W_l) each,
    bilinearly resized to the first level's size and concatenated → 1×1 conv → ``dim``, ReLU,
    3×3 conv → ``num_bases``, ReLU, bilinear ×``upsample`` → (B, num_bases, upsample·H_0,
    upsample·W_0) channels-last: stride 2 on P3 with the default ×4."""

    def __init__(self, in_channels: int, dim: int = 512, num_bases: int = 32, upsample: int = 4):
        super().__init__()
        self.lateral = nn.Conv2d(in_channels, dim, 1)
        self.output = nn.Conv2d(dim, num_bases, 3, padding=1)
        self.upsample = upsample
        for conv in (self.lateral, self.output):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, towers: list[torch.Tensor]) -> torch.Tensor:
        size = towers[0].shape[-2:]
        maps = [towers[0]] + [
            F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in towers[1:]
        ]
        x = torch.relu(self.output(torch.relu(self.lateral(torch.cat(maps, dim=1)))))
        # channels-last, as the mask assembly reads the K values of a pixel together
        x = x.contiguous(memory_format=torch.channels_last)
        return F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
