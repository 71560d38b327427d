"""STMask's (YOLACT's) protonet: K non-negative prototype masks at stride 4 from P3."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ProtoNet"]


class ProtoNet(nn.Module):
    """P3 (B, C, H, W) → prototypes (B, K, 2H, 2W) ≥ 0: ``num_convs`` × (3×3 conv → ``dim``,
    ReLU), bilinear ×2, 3×3 conv → ``dim``, ReLU, 1×1 conv → ``num_protos``, ReLU."""

    def __init__(self, in_channels: int, dim: int = 256, num_convs: int = 3, num_protos: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else dim, dim, 3, padding=1), nn.ReLU()]
        self.tower = nn.Sequential(*layers)
        self.refine = nn.Conv2d(dim if num_convs else in_channels, dim, 3, padding=1)
        self.output = nn.Conv2d(dim, num_protos, 1)

    def forward(self, p3: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.tower(p3), scale_factor=2, mode="bilinear", align_corners=False)
        return torch.relu(self.output(torch.relu(self.refine(x))))
