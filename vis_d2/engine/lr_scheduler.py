"""LR schedules that detectron2 v0.6's ``build_lr_scheduler`` lacks."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from fvcore.common.param_scheduler import ExponentialParamScheduler

__all__ = ["build_lr_scheduler"]


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer):
    """detectron2's schedulers plus ``WarmupExponentialLR``: warm-up, then the LR decays
    exponentially from BASE_LR to BASE_LR · SOLVER.EXP_DECAY_FINAL at SOLVER.MAX_ITER."""
    if cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupExponentialLR":
        return d2_build_lr_scheduler(cfg, optimizer)
    sched = WarmupParamScheduler(
        ExponentialParamScheduler(1.0, cfg.SOLVER.EXP_DECAY_FINAL),
        cfg.SOLVER.WARMUP_FACTOR,
        min(cfg.SOLVER.WARMUP_ITERS / cfg.SOLVER.MAX_ITER, 1.0),
        cfg.SOLVER.WARMUP_METHOD,
    )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=cfg.SOLVER.MAX_ITER)
