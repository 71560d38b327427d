"""SipMask's spatial coefficients (the SP module): per location, one coefficient vector for
each of the S × S sub-regions of the box it predicts."""

from __future__ import annotations

import torch
from torch import nn

from vis_d2.modeling.fcos import flatten_levels

__all__ = ["SpatialCoefficients"]


class SpatialCoefficients(nn.Module):
    """``forward(towers)``: the (aligned) class towers, (B, C, H_l, W_l) per level → per level
    (B, S²·K, H_l, W_l) coefficients from one 3×3 conv shared by the levels, no activation.
    Channel q·K + k is coefficient k of sub-region q, row-major (for S = 2: top-left,
    top-right, bottom-left, bottom-right). Weights drawn from normal(0, ``init_std``), bias 0."""

    def __init__(
        self, in_channels: int, sub_regions: int = 2, num_bases: int = 32, init_std: float = 0.01
    ):
        super().__init__()
        self.sub_regions = sub_regions
        self.num_bases = num_bases
        self.conv = nn.Conv2d(in_channels, sub_regions**2 * num_bases, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=init_std)
        nn.init.zeros_(self.conv.bias)

    def forward(self, towers: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.conv(t) for t in towers]

    def read(self, maps: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """The (N, S², K) coefficients of the locations ``rows`` (N,) of the level-first
        flattening of ``maps`` (:func:`vis_d2.modeling.fcos.flatten_levels`)."""
        return flatten_levels(maps)[rows].view(-1, self.sub_regions**2, self.num_bases)
