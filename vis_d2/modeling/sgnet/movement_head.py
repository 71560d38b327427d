"""SG-Net's centerness-movement head (Sec. 3.3, Eq. 4): the displacement of each
instance's box centre between the previous and the current frame, its targets and its L1 loss."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn
from torch.nn import functional as F

from ...layers import build_tower, normal_init, shared_channels

__all__ = ["MovementHead", "movement_targets", "movement_loss"]


class MovementHead(nn.Module):
    """Per level l: D_l = conv1×1(ReLU(GN(conv3×3([X_t, X_{t-1}])))), 2 channels (dx, dy) in
    units of the level's stride, with X the (B, C, H_l, W_l) box-tower output of each frame.

    ``num_convs`` sets how many conv3×3-GN-ReLU layers precede the 1×1 conv (the first maps
    2C → C, the others C → C); 0 gives the single 1×1 conv on the 2C-channel concatenation.
    Weights are shared across levels. The dense part (:meth:`forward_towers`) runs on the whole
    maps; the 1×1 conv is evaluated only where it is read (:meth:`predict`).
    """

    @configurable
    def __init__(self, *, in_channels: int, num_convs: int = 1, norm: str = "GN"):
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs}")
        self.tower = build_tower(2 * in_channels, in_channels, num_convs, norm)
        self.predictor = nn.Conv2d(in_channels if num_convs else 2 * in_channels, 2, 1)
        normal_init(self)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: list[ShapeSpec]) -> dict:
        return {
            "in_channels": shared_channels(input_shape, "the movement head"),
            "num_convs": cfg.MODEL.SGNET.TRACK.NUM_CONVS,
        }

    def forward_towers(
        self, current: list[torch.Tensor], previous: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per level, (B, C, H_l, W_l) features of frame t and t-1 → the (B, C', H_l, W_l) input
        of the 1×1 conv (C' = C, or 2C when ``num_convs`` is 0)."""
        if len(current) != len(previous):
            raise ValueError(f"{len(current)} current and {len(previous)} previous levels")
        return [
            self.tower(torch.cat((cur, prev), dim=1))
            for cur, prev in zip(current, previous, strict=True)
        ]

    def predict(
        self,
        towers: list[torch.Tensor],
        im_inds: torch.Tensor,
        levels: torch.Tensor,
        loc_inds: torch.Tensor,
    ) -> torch.Tensor:
        """The 1×1 conv read at N locations, each given by its image index, level index and
        row-major cell index in that level's H_l·W_l map (all (N,) int64) → (N, 2) (dx, dy)
        in units of the location's stride."""
        feats = towers[0].new_zeros((len(levels), towers[0].shape[1]))
        for level, tower in enumerate(towers):
            # gathered even when empty: every tower stays in the graph, as DDP needs
            sel = torch.nonzero(levels == level).squeeze(1)
            feats = feats.index_put((sel,), tower.flatten(2)[im_inds[sel], :, loc_inds[sel]])
        return F.linear(feats, self.predictor.weight.flatten(1), self.predictor.bias)

    def dense(self, towers: list[torch.Tensor]) -> list[torch.Tensor]:
        """The 1×1 conv over whole maps: per level (B, 2, H_l, W_l) in stride units."""
        return [self.predictor(t) for t in towers]


def movement_targets(
    centres: torch.Tensor, prev_centres: torch.Tensor, strides: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of N supervised locations: ``centres`` (N, 2) (x, y) box centre in input px of
    each location's instance at frame t, ``prev_centres`` (N, 2) the same instance's centre at
    t-1 (NaN where it is absent there), ``strides`` (N,) of each location's level.

    Returns (targets (N, 2) = (c_t - c_{t-1}) / stride in stride units, 0 where invalid;
    valid (N,) bool, True where the instance exists at t-1).
    """
    valid = torch.isfinite(prev_centres).all(dim=1) & torch.isfinite(centres).all(dim=1)
    targets = (centres - prev_centres) / strides[:, None].to(centres.dtype)
    return torch.where(valid[:, None], targets, torch.zeros_like(targets)), valid


def movement_loss(pred: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 4: L1 between ``pred`` and ``targets`` (both (N, 2), stride units), as the mean over
    the valid locations of |dx - dx*| + |dy - dy*|. With no valid location it is
    ``pred.sum() * 0`` (zero, and still connected to the graph)."""
    if not bool(valid.any()):
        return pred.sum() * 0
    return (pred[valid] - targets[valid]).abs().sum(dim=1).mean()
