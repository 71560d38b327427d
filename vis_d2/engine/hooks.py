"""Training hooks: a checkpointer hook that also saves and restores every process's random state."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from detectron2.engine import hooks
from detectron2.utils import comm

__all__ = ["PeriodicCheckpointer", "get_rng_states", "preserved_rng_states", "set_rng_states"]

logger = logging.getLogger(__name__)


def get_rng_states() -> dict[str, Any]:
    """The states of python's, numpy's and torch's global generators (CUDA's when in use)."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states from :func:`get_rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


@contextlib.contextmanager
def preserved_rng_states() -> Iterator[None]:
    """Leave the global generators as they were, whatever the block draws from them."""
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """detectron2's periodic checkpointer hook, registered on every process.

    Before each save, all processes gather their generator states (:func:`get_rng_states`)
    into it, so the checkpoint holds them (under the trainer's hook states). A training
    resumed from it restores its process's states when it starts, and draws the same random
    numbers (e.g. the model's random subsets) as an uninterrupted one.
    """

    def __init__(self, checkpointer, period: int, **kwargs: Any):
        super().__init__(checkpointer, period, **kwargs)
        self._rng_states: list[dict[str, Any]] = []
        self._resumed_state: dict[str, Any] | None = None

    def _saves_at(self, iteration: int) -> bool:
        return (iteration + 1) % self.period == 0 or iteration >= self.max_iter - 1

    def before_train(self) -> None:
        super().before_train()
        if self._resumed_state is not None:
            set_rng_states(self._resumed_state)
            self._resumed_state = None

    def after_step(self) -> None:
        if self._saves_at(self.trainer.iter):
            self._rng_states = comm.gather(get_rng_states(), dst=0)  # a collective: all take part
        super().after_step()

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": self._rng_states} if self._rng_states else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("rng_states", [])
        if len(states) == comm.get_world_size():
            self._resumed_state = states[comm.get_rank()]
        else:
            logger.warning(
                f"The checkpoint holds the random states of {len(states)} processes, not "
                f"{comm.get_world_size()}: they are not restored, so the resumed training draws "
                "other random numbers than an uninterrupted one would"
            )
