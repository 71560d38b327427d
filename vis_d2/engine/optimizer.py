"""``build_optimizer``: detectron2's parameter groups with SGD (its default) or AdamW."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from torch import nn

__all__ = ["build_optimizer"]


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` "SGD" (momentum, nesterov) or "ADAMW" (``SOLVER.BETAS``), on
    detectron2's parameter groups (``WEIGHT_DECAY_NORM``, ``BIAS_LR_FACTOR``, ...) with its
    optional gradient clipping.

    The update runs as one fused kernel over all parameters where torch has one for their
    device (CPU and CUDA): the same arithmetic as the per-parameter loop, in one kernel launch
    instead of one per parameter."""
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    fused = all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point()
        for group in params
        for p in group["params"]
    )
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(
            params,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            fused=fused,
        )
    if name == "ADAMW":
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params,
            lr=cfg.SOLVER.BASE_LR,
            betas=tuple(cfg.SOLVER.BETAS),
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            fused=fused,
        )
    raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', not '{cfg.SOLVER.OPTIMIZER}'")
