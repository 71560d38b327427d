"""LR schedules that detectron2 v0.6's ``build_lr_scheduler`` lacks."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from fvcore.common.param_scheduler import (
    ExponentialParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

__all__ = ["build_lr_scheduler"]


def _main_schedule(cfg: CfgNode) -> ParamScheduler | None:
    """The LR multiplier over the whole training (before the warm-up), for vis_d2's names."""
    name = cfg.SOLVER.LR_SCHEDULER_NAME
    if name == "WarmupExponentialLR":
        return ExponentialParamScheduler(1.0, cfg.SOLVER.EXP_DECAY_FINAL)
    if name == "WarmupLinearLR":
        return LinearParamScheduler(1.0, 0.0)
    return None


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer):
    """detectron2's schedulers plus, after the same warm-up:

    * ``WarmupExponentialLR``: the LR decays exponentially from BASE_LR to
      BASE_LR · SOLVER.EXP_DECAY_FINAL at SOLVER.MAX_ITER;
    * ``WarmupLinearLR``: the LR decays linearly from BASE_LR to 0 at SOLVER.MAX_ITER.
    """
    sched = _main_schedule(cfg)
    if sched is None:
        return d2_build_lr_scheduler(cfg, optimizer)
    sched = WarmupParamScheduler(
        sched,
        cfg.SOLVER.WARMUP_FACTOR,
        min(cfg.SOLVER.WARMUP_ITERS / cfg.SOLVER.MAX_ITER, 1.0),
        cfg.SOLVER.WARMUP_METHOD,
    )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=cfg.SOLVER.MAX_ITER)
