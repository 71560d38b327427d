"""Layers that heads of every vis_d2 method build on: conv towers shared across FPN levels,
per-level scales, the FCOS-style initialisation."""

from __future__ import annotations

import torch
from detectron2.layers import ShapeSpec, get_norm
from torch import nn

__all__ = ["Scale", "build_tower", "normal_init", "shared_channels"]


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def build_tower(in_channels: int, out_channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """``num_convs`` × (3×3 conv with bias, norm, ReLU); norm "GN" is GroupNorm(32, C), "" none."""
    if norm not in ("GN", ""):
        raise ValueError(f"tower norm '{norm}' is not supported; use 'GN' or ''")
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers.append(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
        )
        if norm:
            layers.append(get_norm(norm, out_channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def normal_init(module: nn.Module, std: float = 0.01) -> None:
    """Every conv of ``module``: weights ~ N(0, std²), bias 0 (the FCOS head initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)


def shared_channels(input_shape: list[ShapeSpec], head: str) -> int:
    """The channel count of levels that one head, shared across levels, reads."""
    channels = {s.channels for s in input_shape}
    if len(channels) != 1:
        raise ValueError(f"{head} needs the same channel count on every level, got {channels}")
    return channels.pop()
