"""``VISCheckpointer``: detectron2's checkpointer with atomic writes, clear errors for unreadable
or mismatched checkpoints, and strict loading for resuming and evaluation."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.file_io import atomic_write

__all__ = ["CheckpointError", "VISCheckpointer"]

logger = logging.getLogger(__name__)

MAX_LISTED_KEYS = 5


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


def _first(items: list[str]) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > MAX_LISTED_KEYS else ""
    return ", ".join(items[:MAX_LISTED_KEYS]) + more


class VISCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` that

    * writes every ``.pth`` and ``last_checkpoint`` atomically (:func:`atomic_write`), the
      ``last_checkpoint`` tag only once its ``.pth`` is complete, so a kill during a save never
      leaves a partial checkpoint or a tag naming one;
    * raises :class:`CheckpointError` naming the file for a checkpoint that cannot be read
      (truncated, not a checkpoint, no model weights);
    * with ``strict`` loading, raises :class:`CheckpointError` naming the file and the first
      offending keys when model weights are missing from it or have other shapes. Resuming is
      strict; loading ``MODEL.WEIGHTS`` to start a training is not (a backbone's ImageNet
      weights leave the heads missing, which detectron2 reports as warnings).
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        os.makedirs(self.save_dir, exist_ok=True)
        atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write(
            os.path.join(self.save_dir, "last_checkpoint"),
            lambda f: f.write(last_filename_basename.encode()),
        )

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``last_checkpoint`` names; an error if that file is gone."""
        path = super().get_checkpoint_file()
        if path and not os.path.isfile(path):
            tag = os.path.join(self.save_dir, "last_checkpoint")
            raise CheckpointError(
                f"{tag} names {os.path.basename(path) or 'no file'}, but {path} does not exist; "
                "to start a new training instead, remove the tag or leave out --resume"
            )
        return path

    def resume_or_load(
        self, path: str, *, resume: bool = True, strict: bool | None = None
    ) -> dict[str, Any]:
        """Resume from ``last_checkpoint`` when ``resume`` and it exists (model and every
        checkpointable), otherwise load the model weights of ``path``. ``strict`` (see
        :meth:`load`) defaults to whether it resumes."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file(), strict=strict is not False)
        return self.load(path, checkpointables=[], strict=bool(strict))

    def load(
        self, path: str, checkpointables: list[str] | None = None, *, strict: bool = False
    ) -> dict[str, Any]:
        """Load ``path`` (see detectron2); with ``strict``, model weights missing from the
        checkpoint or of other shapes are a :class:`CheckpointError`."""
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file {path} does not exist")
        self._loading = (path, strict)
        try:
            return super().load(path, checkpointables)
        finally:
            del self._loading

    def _load_file(self, filename: str) -> dict[str, Any]:
        try:
            checkpoint = super()._load_file(filename)
        except Exception as e:  # torch.load and pickle fail in many ways on a bad file
            raise CheckpointError(
                f"{filename} cannot be read as a checkpoint ({type(e).__name__}: {e}); "
                "it may be truncated (an interrupted copy or download) or not a checkpoint"
            ) from e
        model = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
        if not isinstance(model, Mapping) or not model:
            raise CheckpointError(
                f"{filename} is not a model checkpoint: it holds {type(model).__name__} "
                f"{'data' if model else '(empty)'} where model weights (names to tensors) belong"
            )
        bad = [k for k, v in model.items() if not isinstance(k, str) or not _is_array(v)]
        if bad:
            raise CheckpointError(
                f"{filename} is not a model checkpoint: its 'model' entry maps "
                f"{_first([repr(k) for k in bad])} to something other than a tensor"
            )
        return checkpoint

    def _load_model(self, checkpoint: Any):
        incompatible = super()._load_model(checkpoint)
        path, strict = self._loading
        shapes = incompatible.incorrect_shapes
        reshaped = {k for k, _, _ in shapes}  # not loaded, hence also among the missing keys
        missing = sorted(k for k in incompatible.missing_keys if k not in reshaped)
        if strict and (shapes or missing):
            problems = []
            if shapes:
                listed = [
                    f"{k} {tuple(a)} in the file, {tuple(b)} in the model" for k, a, b in shapes
                ]
                problems.append(
                    f"{len(shapes)} weights have other shapes than the model's: {_first(listed)}"
                )
            if missing:
                problems.append(
                    f"{len(missing)} model weights are missing from it: {_first(missing)}"
                )
            raise CheckpointError(
                f"{path} does not fit the model ({'; '.join(problems)}). Is it a checkpoint of "
                "this config (same architecture, number of classes, channel sizes)?"
            )
        return incompatible


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))
