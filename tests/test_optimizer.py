"""``SOLVER.OPTIMIZER``: SGD and AdamW on detectron2's parameter groups."""

import copy

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from vis_d2.config import add_vis_config
from vis_d2.engine import VISTrainer, build_optimizer


def _cfg(**solver):
    cfg = add_vis_config(get_cfg())
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 1, 1))


def test_default_is_detectrons_sgd():
    opt = build_optimizer(_cfg(), _model())
    assert type(opt).__name__ == "SGD" and opt.defaults["momentum"] == 0.9


def test_adamw_keeps_the_parameter_groups_and_betas():
    model = _model()
    opt = VISTrainer.build_optimizer(_cfg(OPTIMIZER="adamw", BETAS=(0.8, 0.99)), model)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.8, 0.99) for g in opt.param_groups)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(model[1].weight)] == 0.0  # WEIGHT_DECAY_NORM
    assert decay[id(model[0].weight)] == 0.05
    before = model[0].weight.detach().clone()
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    assert not torch.equal(before, model[0].weight)


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="'LAMB'"):
        build_optimizer(_cfg(OPTIMIZER="LAMB"), _model())


@pytest.mark.parametrize("name", ["SGD", "ADAMW"])
def test_fused_update_equals_the_per_parameter_loop(name):
    torch.manual_seed(0)
    model = _model()
    reference = copy.deepcopy(model)
    initial = copy.deepcopy(model)
    opt = build_optimizer(_cfg(OPTIMIZER=name), model)
    assert opt.defaults["fused"]
    # the same parameter groups and hyper-parameters, stepped parameter by parameter
    twin = dict(zip(model.parameters(), reference.parameters(), strict=True))
    groups = [
        {**{k: v for k, v in g.items() if k != "fused"}, "params": [twin[p] for p in g["params"]]}
        for g in opt.param_groups
    ]
    loop = type(opt)(groups, foreach=False, fused=False)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(3):
        for m, o in ((model, opt), (reference, loop)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    params = zip(model.parameters(), reference.parameters(), initial.parameters(), strict=True)
    for p, q, p0 in params:
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
