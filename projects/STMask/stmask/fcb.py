"""STMask's feature calibration (FCB): a branch's features resampled to the box its anchor
regresses, by a deformable convolution of the anchor's kernel shape whose offsets come from the
detached box deltas, before the branch's output convolution of the same kernel."""

from __future__ import annotations

import torch
from torch import nn

from vis_d2.layers import DeformConv

__all__ = ["FCB_MODES", "FeatureCalibration", "aligned_offsets"]

FCB_MODES = ("ada", "ali", "none")


def _check_odd(kernel: tuple[int, int]) -> None:
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"kernel {tuple(kernel)}: the kernel points need a centre (odd sizes)")


def aligned_offsets(
    deltas: torch.Tensor,
    kernel: tuple[int, int],
    variances: tuple[float, float] = (0.1, 0.2),
) -> torch.Tensor:
    """The deformable-conv offsets that move a k_h×k_w kernel onto the regressed box (FCB "ali").

    deltas (B, 4, H, W): (t_x, t_y, t_w, t_h) of the anchor, SSD-coded (centre shift
    variances[0]·t in anchor sizes, size scale exp(variances[1]·t)) → (B, 2·k_h·k_w, H, W),
    in feature cells, (dy, dx) per kernel point row-major (:class:`DeformConv`'s layout). The
    anchor is k_h × k_w cells, so the point at (row i, col j) from the centre moves by
    dy = v0·t_y·k_h + (exp(v1·t_h) − 1)·i and dx = v0·t_x·k_w + (exp(v1·t_w) − 1)·j."""
    _check_odd(kernel)
    kh, kw = kernel
    v_centre, v_size = variances
    dtype, device = deltas.dtype, deltas.device
    rows, cols = torch.meshgrid(
        torch.arange(-(kh // 2), kh // 2 + 1, device=device, dtype=dtype),
        torch.arange(-(kw // 2), kw // 2 + 1, device=device, dtype=dtype),
        indexing="ij",
    )
    rows, cols = rows.reshape(1, -1, 1, 1), cols.reshape(1, -1, 1, 1)  # (1, k_h·k_w, 1, 1)
    tx, ty, tw, th = deltas.unbind(1)  # each (B, H, W)
    dy = (v_centre * kh * ty).unsqueeze(1) + (torch.exp(v_size * th) - 1).unsqueeze(1) * rows
    dx = (v_centre * kw * tx).unsqueeze(1) + (torch.exp(v_size * tw) - 1).unsqueeze(1) * cols
    return torch.stack((dy, dx), dim=2).flatten(1, 2)  # (B, k_h·k_w, 2, H, W) → (dy, dx) pairs


class FeatureCalibration(nn.Module):
    """``forward(x, deltas)``: x (B, C_in, H, W) a branch's features, deltas (B, 4, H, W) the
    box deltas of one anchor shape (detached here) → (B, C_out, H, W) the branch's outputs for
    that anchor.

    Modes: "ada" (offsets = a zero-initialised 1×1 conv without bias of the deltas), "ali"
    (:func:`aligned_offsets`, no parameters) feed a k_h×k_w :class:`DeformConv` C_in → C_in
    (one offset group, no bias) + ReLU before a plain k_h×k_w conv C_in → C_out; "none" is that
    plain conv alone (the authors' branch without FCB) and ignores the deltas."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        mode: str = "ada",
        variances: tuple[float, float] = (0.1, 0.2),
    ):
        super().__init__()
        if mode not in FCB_MODES:
            raise ValueError(f"FCB mode {mode!r} not in {FCB_MODES}")
        kernel = tuple(kernel_size)
        _check_odd(kernel)
        self.mode = mode
        self.kernel_size = kernel
        self.variances = tuple(variances)
        padding = (kernel[0] // 2, kernel[1] // 2)
        if mode != "none":
            self.deform = DeformConv(in_channels, in_channels, kernel, padding=padding, bias=False)
        if mode == "ada":
            self.conv_offset = nn.Conv2d(4, self.deform.offset_channels, 1, bias=False)
            nn.init.zeros_(self.conv_offset.weight)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=padding)

    def offsets(self, deltas: torch.Tensor) -> torch.Tensor:
        """deltas (B, 4, H, W) → the deformable conv's offsets (B, 2·k_h·k_w, H, W), in cells."""
        deltas = deltas.detach()
        if self.mode == "ada":
            return self.conv_offset(deltas)
        return aligned_offsets(deltas, self.kernel_size, self.variances)

    def forward(self, x: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        if self.mode != "none":
            x = torch.relu(self.deform(x, self.offsets(deltas)))
        return self.conv(x)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
