"""``SOLVER.LR_SCHEDULER_NAME``: the learning rates a training sees at each iteration, through the
scheduler the trainer builds (vis_d2's exponential and linear decays, detectron2's cosine)."""

import math

import pytest
import torch
from detectron2.config import get_cfg

from vis_d2.config import add_vis_config
from vis_d2.engine import VISTrainer

BASE_LR, WARMUP, MAX_ITER = 0.1, 10, 100


def _lrs(**solver) -> list[float]:
    """The LR of each of MAX_ITER iterations (read before the step, as the trainer does)."""
    cfg = add_vis_config(get_cfg())
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER = BASE_LR, MAX_ITER
    cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR = WARMUP, 0.01
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler = VISTrainer.build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(MAX_ITER):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize(
    "solver, after_warmup",
    [
        (
            {"LR_SCHEDULER_NAME": "WarmupExponentialLR", "EXP_DECAY_FINAL": 0.05},
            lambda t: 0.05 ** (t / MAX_ITER),
        ),
        ({"LR_SCHEDULER_NAME": "WarmupLinearLR"}, lambda t: 1 - t / MAX_ITER),
        (
            {"LR_SCHEDULER_NAME": "WarmupCosineLR"},
            lambda t: 0.5 * (1 + math.cos(math.pi * t / MAX_ITER)),
        ),
    ],
    ids=["exponential", "linear", "cosine"],
)
def test_schedules_after_the_warmup(solver, after_warmup):
    lrs = _lrs(**solver)
    for t in range(WARMUP, MAX_ITER):
        assert lrs[t] == pytest.approx(BASE_LR * after_warmup(t), rel=1e-6), t
    assert lrs[0] == pytest.approx(BASE_LR * 0.01, rel=1e-6)  # the warm-up starts at 1%
    assert all(a < b for a, b in zip(lrs[:WARMUP], lrs[1 : WARMUP + 1], strict=True))
