"""SG-Net's spatial attention module (SAM, Sec. 3.2): per location, one
K-d coefficient vector for each cell of a ``master_grid`` × ``master_grid`` grid."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn
from torch.nn import functional as F

from ...layers import build_tower, normal_init, shared_channels

__all__ = ["SpatialAttention"]


class SpatialAttention(nn.Module):
    """Shared over the FPN levels: conv3×3 (C → ``convs_dim``), GN, ReLU (the tower), then a
    conv3×3 (``convs_dim`` → num_cells·K) whose output channel ``cell·K + k`` is coefficient k
    of master-grid cell ``cell`` (row-major). Both convs: normal(std 0.01), bias 0.

    The tower runs densely (:meth:`forward_towers`); the second conv is evaluated only at the
    locations that are read (:meth:`coefficients`), or densely for checks
    (:meth:`dense_coefficients`).
    """

    @configurable
    def __init__(
        self, *, in_channels: int, convs_dim: int = 256, master_grid: int = 6, num_bases: int = 36
    ):
        super().__init__()
        self.master_grid = master_grid
        self.num_cells = master_grid * master_grid
        self.num_bases = num_bases
        self.tower = build_tower(in_channels, convs_dim, 1, "GN")
        self.predictor = nn.Conv2d(convs_dim, self.num_cells * num_bases, 3, padding=1)
        normal_init(self)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: list[ShapeSpec]) -> dict:
        sgnet = cfg.MODEL.SGNET
        return {
            "in_channels": shared_channels(input_shape, "SAM"),
            "convs_dim": sgnet.SAM.CONVS_DIM,
            "master_grid": sgnet.SAM.MASTER_GRID,
            "num_bases": sgnet.BASE.OUT_CHANNELS,
        }

    def forward_towers(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level (B, C, H_l, W_l) → (B, convs_dim, H_l, W_l)."""
        return [self.tower(f) for f in features]

    def coefficients(
        self,
        towers: list[torch.Tensor],
        im_inds: torch.Tensor,
        levels: torch.Tensor,
        loc_inds: torch.Tensor,
    ) -> torch.Tensor:
        """The second conv read at N locations, each given by its image index, level index and
        row-major cell index in that level's H_l·W_l map (all (N,) int64) → (N, num_cells, K).

        Each location's 3×3 neighbourhood (zero outside the map) is gathered from one table of
        all zero-padded levels, and the conv is applied as one matrix product.
        """
        num_images, channels = towers[0].shape[:2]
        device = towers[0].device
        padded = [F.pad(t, (1, 1, 1, 1)) for t in towers]
        sizes = [p.shape[-2] * p.shape[-1] for p in padded]
        rows_per_image = sum(sizes)
        table = torch.cat([p.flatten(2) for p in padded], dim=2)  # (B, C, S)
        table = table.transpose(1, 2).reshape(num_images * rows_per_image, channels)
        offsets = torch.tensor([0, *sizes[:-1]], device=device).cumsum(0)
        widths = torch.tensor([t.shape[-1] for t in towers], device=device)
        width = widths[levels]
        y, x = loc_inds // width, loc_inds % width
        # neighbour (dy, dx) of the cell (y, x) sits at padded (y + dy, x + dx), dy, dx in 0..2
        dy = torch.arange(3, device=device).repeat_interleave(3)
        dx = torch.arange(3, device=device).repeat(3)
        rows = (
            im_inds[:, None] * rows_per_image
            + offsets[levels][:, None]
            + (y[:, None] + dy) * (width[:, None] + 2)
            + x[:, None]
            + dx
        )
        patches = table.index_select(0, rows.reshape(-1)).view(len(rows), 9, channels)
        patches = patches.transpose(1, 2).reshape(len(rows), channels * 9)
        out = F.linear(patches, self.predictor.weight.flatten(1), self.predictor.bias)
        return out.view(len(rows), self.num_cells, self.num_bases)

    def dense_coefficients(self, towers: list[torch.Tensor]) -> list[torch.Tensor]:
        """The second conv over whole maps: per level (B, num_cells·K, H_l, W_l)."""
        return [self.predictor(t) for t in towers]
