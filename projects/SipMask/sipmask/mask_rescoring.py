"""SipMask++'s mask re-scoring: each detection's mask IoU predicted from its soft mask, so that
a detection's score can rank its mask rather than its box."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskRescoring"]


class MaskRescoring(nn.Module):
    """``forward(masks)``: N soft masks (N, H, W) on the basis map (probabilities, 0 outside
    the detection's box) → (N, K) predicted mask IoU per class, ≥ 0.

    Six 3×3 convolutions of stride 2 without padding (1 → 16 → 16 → 16 → 32 → 64 → 128
    channels, ReLU after each; Kaiming-normal fan-out weights), a 1×1 convolution to the K
    classes (normal(0, 0.001)) with ReLU, and the maximum over the remaining positions. The
    map must be at least :attr:`MIN_SIDE` pixels on each side (inputs of 2 × that at stride 2).
    """

    CHANNELS = (16, 16, 16, 32, 64, 128)
    MIN_SIDE = 2 ** (len(CHANNELS) + 1) - 1  # 127: the smallest side the six convs keep ≥ 1

    def __init__(self, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for channels in self.CHANNELS:
            conv = nn.Conv2d(in_channels, channels, 3, stride=2)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
            in_channels = channels
        self.convs = nn.Sequential(*layers)
        self.score = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.normal_(self.score.weight, std=0.001)
        nn.init.zeros_(self.score.bias)

    def check_map_size(self, height: int, width: int) -> None:
        """Raise ValueError when an (height, width) basis map is too small to re-score on."""
        if min(height, width) < self.MIN_SIDE:
            raise ValueError(
                f"mask re-scoring needs basis maps of at least {self.MIN_SIDE} pixels a side, "
                f"got {height}x{width}: use inputs of at least {2 * self.MIN_SIDE} pixels a side"
            )

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        self.check_map_size(*masks.shape[-2:])
        x = torch.relu(self.score(self.convs(masks[:, None])))
        return x.amax(dim=(2, 3))
