"""STMask's prediction head, shared by the FPN levels: per anchor shape its own last convs whose
kernel is the anchor's shape (FCA), optionally calibrated to the regressed box (FCB)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .fcb import FeatureCalibration

__all__ = ["BRANCHES", "CENTERNESS_ORDERS", "PredictionHead"]

# the branches of the head and their per-anchor outputs: class logits (K + 1, background
# first), box deltas + centerness (4 + 1), track embedding (D), mask coefficients (M)
BRANCHES = ("cls", "box", "track", "mask")
# which centerness each anchor row takes: "anchor", its own; "shape_major", the level's
# centerness maps read in (anchor shape, y, x) order into rows ordered (y, x, anchor shape),
# so row r takes the value at flat position r of the (A, H, W) maps (the authors' code
# concatenates the per-shape maps along y before flattening; their weights were trained so)
CENTERNESS_ORDERS = ("anchor", "shape_major")


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class PredictionHead(nn.Module):
    """``forward(features)``: the FPN levels (B, C, H_l, W_l) → per level a dict of

    - ``cls`` (B, H·W·A, K + 1) logits, ``box`` (B, H·W·A, 4) SSD deltas, ``ctr`` (B, H·W·A)
      tanh centerness, ``track`` (B, H·W·A, D) L2-normalised embeddings, ``mask`` (B, H·W·A, M)
      coefficients before tanh, rows ordered (y, x, anchor shape) as the anchors;
    - ``t2s`` (B, C, H_l, W_l): the shared "upfeature" conv's output (the temporal fusion
      reads it).

    ``anchor_shapes``: (k_h, k_w) per anchor, the kernel of its last convs. ``fcb``: "ada",
    "ali" or "none"; ``fcb_branches``: the branches among cls, track, mask whose last conv is
    calibrated to the anchor's regressed box (the box branch itself never is).
    ``centerness_order``: one of :data:`CENTERNESS_ORDERS`.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        anchor_shapes: list[tuple[int, int]],
        *,
        embed_dim: int = 128,
        num_coefficients: int = 32,
        extra_convs: int = 2,
        fcb: str = "ada",
        fcb_branches: tuple[str, ...] = ("cls",),
        centerness_order: str = "anchor",
    ):
        super().__init__()
        if centerness_order not in CENTERNESS_ORDERS:
            raise ValueError(
                f"MODEL.STMASK.CENTERNESS_ORDER {centerness_order!r} is not one of "
                f"{CENTERNESS_ORDERS}"
            )
        self.centerness_order = centerness_order
        unknown = set(fcb_branches) - {"cls", "track", "mask"}
        if unknown:
            raise ValueError(
                f"FCB_BRANCHES {sorted(unknown)}: only cls, track and mask can be calibrated"
            )
        self.anchor_shapes = [tuple(s) for s in anchor_shapes]
        self.outputs = {
            "cls": num_classes + 1,
            "box": 5,
            "track": embed_dim,
            "mask": num_coefficients,
        }
        self.upfeature = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.towers = nn.ModuleDict({b: _tower(channels, extra_convs) for b in BRANCHES})
        # per branch and anchor shape the last conv, with the anchor's kernel; the box branch's
        # is plain, the others read its deltas when calibrated
        self.last = nn.ModuleDict(
            {
                "box": nn.ModuleList(
                    nn.Conv2d(channels, self.outputs["box"], k, padding=(k[0] // 2, k[1] // 2))
                    for k in self.anchor_shapes
                )
            }
        )
        for branch in ("cls", "track", "mask"):
            mode = fcb if branch in fcb_branches else "none"
            self.last[branch] = nn.ModuleList(
                FeatureCalibration(channels, self.outputs[branch], k, mode=mode)
                for k in self.anchor_shapes
            )

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_shapes)

    def forward(self, features: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self._level(f) for f in features]

    def _level(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        t2s = self.upfeature(feature)
        towers = {b: self.towers[b](t2s) for b in BRANCHES}
        per_anchor: dict[str, list[torch.Tensor]] = {b: [] for b in BRANCHES}
        for a in range(self.num_anchors):
            box = self.last["box"][a](towers["box"])
            deltas = box[:, :4].detach()  # the box each location regresses, for FCB
            per_anchor["box"].append(box)
            for branch in ("cls", "track", "mask"):
                per_anchor[branch].append(self.last[branch][a](towers[branch], deltas))
        out = {b: _rows(per_anchor[b]) for b in BRANCHES}
        box = out.pop("box")
        ctr = box[..., 4]
        if self.centerness_order == "shape_major":
            ctr = torch.stack([b[:, 4] for b in per_anchor["box"]], dim=1).flatten(1)
        return {
            "cls": out["cls"],
            "box": box[..., :4],
            "ctr": torch.tanh(ctr),
            "track": F.normalize(out["track"], dim=-1),
            "mask": out["mask"],
            "t2s": t2s,
        }


def _rows(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-anchor maps (B, C, H, W) → (B, H·W·A, C), rows ordered (y, x, anchor)."""
    x = torch.stack(maps, dim=1)  # (B, A, C, H, W)
    batch, num_anchors, channels = x.shape[:3]
    return x.permute(0, 3, 4, 1, 2).reshape(batch, -1, channels)
