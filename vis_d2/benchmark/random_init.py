"""Making a randomly initialised model do a trained model's work: batch-norm statistics of
its input, and forced detections with realistic box sizes (the mask work follows the boxes'
areas, and random weights give empty or arbitrary boxes).

Forcing replaces the box regression among a frame graph's outputs (:class:`ForcedOutputs`,
installed with :meth:`VISModel.use_graphs`), so the model's own code runs unchanged, eager or
exported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

from ..modeling.meta_arch import Graph, VISModel

__all__ = ["BoxSizes", "ForcedOutputs", "estimate_norm_statistics", "force_frame_outputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoxSizes:
    """The box sizes a randomly initialised model's forced detections get: side √(w·h)
    log-uniform in [``min_side``, ``max_side``] network-input pixels and aspect ratio w / h
    log-uniform in [1 / ``max_aspect``, ``max_aspect``], one fixed size per location (drawn
    from ``seed`` and the map), centred on it.

    The default, sides of 32–256 px at a 360-px-high input, gives an equal third to each of
    YouTube-VIS's evaluation size ranges (small / medium / large: sides < 128, 128–256, > 256
    px at its 1280×720 frames, i.e. < 64, 64–128, > 128 px at 640×360); mean area 15,500 px².
    """

    min_side: float = 32.0
    max_side: float = 256.0
    max_aspect: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_side <= self.max_side or self.max_aspect < 1:
            raise ValueError(f"box sizes need 0 < min_side <= max_side and max_aspect >= 1: {self}")

    def sample(self, num: int, key: int = 0) -> torch.Tensor:
        """(num, 2) widths and heights in pixels, the same for the same (num, key)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + key * 7919 + num)
        u = torch.rand(num, 2, generator=generator, dtype=torch.float64)
        side = self.min_side * (self.max_side / self.min_side) ** u[:, 0]
        aspect = self.max_aspect ** (2 * u[:, 1] - 1)
        return torch.stack((side * aspect.sqrt(), side / aspect.sqrt()), dim=1).float()

    def describe(self) -> str:
        return (
            f"forced boxes of sides {self.min_side:g}-{self.max_side:g} px and aspect ratios "
            f"1/{self.max_aspect:g}-{self.max_aspect:g}, log-uniform"
        )


class ForcedOutputs:
    """A graph whose outputs pass through ``replace`` (outputs → outputs) before the model's
    Python part reads them."""

    def __init__(
        self,
        graph: Graph,
        replace: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]],
    ) -> None:
        self.graph = graph
        self.replace = replace

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.replace(tuple(self.graph(*inputs)))


def force_frame_outputs(
    model: VISModel,
    replace: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]],
    graph: str = "frame",
) -> None:
    """Run ``model``'s graph ``graph`` (eager or exported, as it runs now) with its outputs
    replaced by ``replace``."""
    graphs = dict(model.graphs())
    graphs[graph] = ForcedOutputs(graphs[graph], replace)
    model.use_graphs(graphs)


def estimate_norm_statistics(model: nn.Module, run: Callable[[], Any]) -> int:
    """Set the statistics of every frozen or eval-mode batch norm of ``model`` to those of its
    input during ``run()`` (its first call), and return how many were set.

    A data-dependent initialisation for models without trained weights: with identity
    statistics the activations of a random ResNet grow from block to block, and the heads
    then see inputs (and produce boxes and scores) far from those of a trained model.
    """
    norms = [
        m
        for m in model.modules()
        if isinstance(m, FrozenBatchNorm2d | nn.modules.batchnorm._BatchNorm)
        and m.running_mean is not None
    ]
    handles: dict[nn.Module, Any] = {}

    def set_statistics(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().float()
        dims = [d for d in range(x.dim()) if d != 1]
        module.running_mean.copy_(x.mean(dim=dims))
        module.running_var.copy_(x.var(dim=dims))
        handles.pop(module).remove()

    for norm in norms:
        handles[norm] = norm.register_forward_pre_hook(set_statistics)
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles.values():
            handle.remove()
    if handles:
        logger.warning(f"{len(handles)} of {len(norms)} batch norms did not run; left unchanged")
    return len(norms) - len(handles)
