"""A deformable convolution module on ``torchvision.ops.deform_conv2d``, which (unlike
detectron2's ``DeformConv``) supports offset groups, forward and backward on the CPU."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d

__all__ = ["DeformConv"]


class DeformConv(nn.Module):
    """``forward(x, offset)``: x (N, C_in, H, W), offset (N, 2·G·k_h·k_w, H', W') → (N, C_out,
    H', W'). The offsets of offset group g (input channels g·C_in/G ...) and kernel tap t
    (row-major) are channels 2·(g·k_h·k_w + t) (dy) and 2·(g·k_h·k_w + t) + 1 (dx), in input
    pixels; zero offsets make it the plain convolution with the same weights."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if in_channels % offset_groups:
            raise ValueError(f"{in_channels} input channels in {offset_groups} offset groups")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.kernel_size = (kh, kw)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.offset_groups = offset_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def offset_channels(self) -> int:
        """2·G·k_h·k_w: the channel count of the offsets."""
        return 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return (
            f"{in_channels}, {out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, offset_groups={self.offset_groups}, "
            f"bias={self.bias is not None}"
        )
