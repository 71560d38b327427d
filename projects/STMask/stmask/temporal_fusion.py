"""STMask's temporal fusion (TF) module (Li et al., CVPR 2021, Sec. 3.3), following the
authors' released code: the correlation of the FPN features of frames t−1 and t, the
TemporalNet that regresses from it, per instance of frame t−1, a box shift Δb and a mask
coefficient shift ΔC, and the box shift loss (the mask shift loss is the shared
:func:`vis_d2.modeling.mask_windows.mask_loss` on the shifted masks).

Units: boxes are XYXY in input pixels unless said otherwise; the TF map X is at the stride of
the correlated FPN level (P4, stride 16, in the authors' configuration) and the prototypes at
stride 4. Box deltas use detectron2's R-CNN coding with weights (10, 10, 5, 5), which is the
authors' SSD coding with variances (0.1, 0.2).
"""

from __future__ import annotations

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

from vis_d2.modeling.mask_windows import blend, paste_windows

from .mask_crop import crop_boxes

__all__ = [
    "SHIFT_TRANSFORM",
    "TemporalNet",
    "box_shift_loss",
    "box_shift_targets",
    "correlation",
    "cross_frame_masks",
    "shift_boxes",
    "shift_coefficients",
    "temporal_features",
]

# cx' = cx + Δx·w / 10, w' = w·exp(Δw / 5); detectron2 clamps Δw / 5 at log(1000 / 16)
# (the authors do not clamp), which only binds for a box grown more than 62.5×
SHIFT_TRANSFORM = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))


def correlation(x1: torch.Tensor, x2: torch.Tensor, patch: int = 11) -> torch.Tensor:
    """FlowNetC correlation (kernel 1, stride 1) of ``x1`` (frame t−1) and ``x2`` (frame t),
    both (B, C, H, W) → (B, patch², H, W): channel (dy + r)·patch + (dx + r), r = patch // 2,
    holds (1/C) Σ_c x1[:, c, y, x]·x2[:, c, y + dy, x + dx], 0 where (y + dy, x + dx) is
    off the map.

    One batched matrix product per (image, row y): the row of x1 (W, C) against the 2r + 1
    rows y + dy of the zero-padded x2 (C, patch·(W + 2r)); the band x' = x + r + dx of each
    (W, W + 2r) block is the result. This costs (W + 2r)/patch times the MACs of the direct
    sum but runs as BLAS instead of (2r + 1)² shifted elementwise products."""
    if x1.shape != x2.shape:
        raise ValueError(f"correlation needs equal shapes, got {x1.shape} and {x2.shape}")
    if patch % 2 != 1:
        raise ValueError(f"the correlation patch must be odd, got {patch}")
    r = patch // 2
    batch, channels, height, width = x1.shape
    padded_width = width + 2 * r
    rows = F.pad(x2, (r, r, r, r)).unfold(2, patch, 1)  # (B, C, H, W + 2r, patch): rows y + dy
    rows = rows.permute(0, 2, 1, 4, 3).reshape(batch * height, channels, patch * padded_width)
    x1_rows = x1.permute(0, 2, 3, 1).reshape(batch * height, width, channels)
    blocks = torch.bmm(x1_rows, rows).view(batch * height, width, patch, padded_width)
    blocks = blocks.transpose(1, 2).reshape(batch * height * patch, width * padded_width)
    # flat index x·(W + 2r) + x + j, i.e. row x, column j of a (W, W + 2r + 1) view
    band = F.pad(blocks, (0, width)).view(-1, width, padded_width + 1)[..., :patch]
    band = band.reshape(batch, height, patch, width, patch).permute(0, 2, 4, 1, 3)
    return band.reshape(batch, patch * patch, height, width) / channels


def temporal_features(
    corr: torch.Tensor, t2s_prev: torch.Tensor, t2s_cur: torch.Tensor
) -> torch.Tensor:
    """The TF input X = ReLU(cat[LeakyReLU_0.1(corr), t2s_prev, t2s_cur]): (B, P², H, W)
    correlation and the (B, C, H, W) T2S features of frames t−1 and t → (B, P² + 2C, H, W)
    (633 channels for P = 11, C = 256). ReLU(LeakyReLU(x)) = ReLU(x), values and gradients,
    so the authors' LeakyReLU on the correlation is folded into the ReLU."""
    return F.relu(torch.cat([corr, t2s_prev, t2s_cur], dim=1))


class TemporalNet(nn.Module):
    """``forward(x, boxes)``: the TF map X (B, in_channels, H, W) and the boxes of frame t−1
    in X's cell coordinates (input px / stride), either (N, 5) (image index, x1, y1, x2, y2)
    or a list of (N_b, 4) per image → box deltas Δb (N, 4) and coefficient shifts ΔC
    (N, num_coeffs). RoIAlign to pool_size² (aligned, adaptive sampling, as mmcv's defaults
    that the authors call) → three 3×3 convs with ReLU → mean over the pool_size² bins →
    two linear layers.

    Init: the convs xavier-uniform with zero bias (as the authors' init_weights_coco does
    for every new layer); the two linear layers all zero (the authors: xavier), so that TF
    starts as the identity, Δb = 0 and ΔC = 0: shifted candidates begin as the previous
    frame's box and mask instead of random jumps, and the linear layers still receive
    gradients from the first step (the trunk from the second)."""

    def __init__(
        self,
        in_channels: int = 633,
        channels: tuple[int, int, int] = (512, 512, 1024),
        num_coeffs: int = 32,
        pool_size: int = 7,
    ):
        super().__init__()
        self.pool_size = pool_size
        widths = (in_channels, *channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, padding=1) for i in range(len(channels))
        )
        self.box_shift = nn.Linear(channels[-1], 4)
        self.coeff_shift = nn.Linear(channels[-1], num_coeffs)
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        for fc in (self.box_shift, self.coeff_shift):
            nn.init.zeros_(fc.weight)
            nn.init.zeros_(fc.bias)

    def roi_features(
        self, x: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]
    ) -> torch.Tensor:
        """(N, in_channels, pool_size, pool_size) RoIAlign features of ``boxes``."""
        return roi_align(
            x, boxes, self.pool_size, spatial_scale=1.0, sampling_ratio=0, aligned=True
        )

    def forward(
        self, x: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.roi_features(x, boxes)
        for conv in self.convs:
            h = F.relu(conv(h))
        h = h.mean(dim=(2, 3))
        return self.box_shift(h), self.coeff_shift(h)


def shift_boxes(boxes_prev: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Eq. 11–12: (N, 4) XYXY boxes of frame t−1 (px) moved by Δb (N, 4) → (N, 4) XYXY
    float32: cx' = cx + 0.1·Δx·w, cy' = cy + 0.1·Δy·h, w' = w·exp(0.2·Δw), h' = h·exp(0.2·Δh)."""
    return SHIFT_TRANSFORM.apply_deltas(deltas, boxes_prev)


def box_shift_targets(boxes_prev: torch.Tensor, boxes_cur: torch.Tensor) -> torch.Tensor:
    """The Δb (N, 4) that :func:`shift_boxes` turns ``boxes_prev`` into ``boxes_cur`` with
    (both (N, 4) XYXY px, positive sizes)."""
    return SHIFT_TRANSFORM.get_deltas(boxes_prev, boxes_cur)


def shift_coefficients(coef_prev: torch.Tensor, delta_c: torch.Tensor) -> torch.Tensor:
    """Eq. 13: C' = C + ΔC on the pre-tanh coefficients (N, K) of frame t−1."""
    return coef_prev + delta_c


def cross_frame_masks(
    protos: torch.Tensor,
    coef: torch.Tensor,
    boxes: torch.Tensor,
    im_inds: torch.Tensor,
    stride: float = 4.0,
    crop: tuple[str, float] = ("centre", 0),
) -> torch.Tensor:
    """Eq. 14: masks M = crop(σ(P·tanh(C)ᵀ), box) of N instances on their image's
    prototypes. ``protos`` (B, K, H, W) non-negative maps of stride ``stride`` (px), ``coef``
    (N, K) pre-tanh, ``boxes`` (N, 4) XYXY px, ``im_inds`` (N,) int64 → (N, H, W)
    probabilities, 0 at pixels whose centre ((u + 0.5)·stride, (v + 0.5)·stride) is outside
    the box (x1 ≤ · < x2, y1 ≤ · < y2): the shared box-window assembly with one cell.
    ``crop``: the cell rule and padding of ``MODEL.STMASK.MASK_CROP`` (:mod:`.mask_crop`; the
    default: the box itself)."""
    rule, padding = crop
    windows = blend(
        protos, im_inds, crop_boxes(boxes, stride, padding), coef.tanh()[:, None], 1, 1,
        cell_rule=rule,
    )
    return paste_windows(windows, *protos.shape[-2:])


def box_shift_loss(
    deltas: torch.Tensor, prev_gt_boxes: torch.Tensor, cur_gt_boxes: torch.Tensor
) -> torch.Tensor:
    """Mean over N instances of Σ_4 smooth-L1 (β = 1) of Δb (N, 4) against
    :func:`box_shift_targets` (GT box at t−1 as the anchor, GT box at t; (N, 4) XYXY px).
    :class:`~.criterion.STMaskCriterion` passes every shared positive of the batch at once,
    so the mean is over the batch's positives (the authors take it per image, sum over the
    images, an image without a shared instance adding 0, and divide by their number). A zero
    connected to the graph when N = 0."""
    if len(deltas) == 0:
        return deltas.sum() * 0
    targets = box_shift_targets(prev_gt_boxes, cur_gt_boxes).to(deltas.dtype)
    return F.smooth_l1_loss(deltas, targets, reduction="none", beta=1.0).sum(dim=1).mean()
