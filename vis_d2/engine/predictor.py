"""Config, model and per-frame input preparation for running a vis_d2 model outside the trainer
(the video counterpart of detectron2's ``DefaultPredictor`` set-up)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import Metadata, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from torch import nn

from ..config import get_cfg
from ..data import build_frame_augmentation, frame_transforms, load_categories
from .checkpoint import VISCheckpointer

__all__ = [
    "FramePreprocessor",
    "load_model",
    "check_weights",
    "dataset_ids",
    "metadata_of",
    "setup_cfg",
]

logger = logging.getLogger(__name__)


def setup_cfg(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """A frozen config from ``config_file`` and ``KEY VALUE`` overrides; CUDA devices fall
    back to the CPU when no GPU is available.

    Raises:
        FileNotFoundError: ``config_file`` does not exist.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file} does not exist")
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def check_weights(cfg: CfgNode) -> None:
    """Fail early on a ``MODEL.WEIGHTS`` file that does not exist (URLs are not checked).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    weights = cfg.MODEL.WEIGHTS
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS file {weights} does not exist")


def load_model(cfg: CfgNode) -> nn.Module:
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded (random initialisation, with a
    warning, when it is empty), in eval mode.

    Raises:
        FileNotFoundError: ``MODEL.WEIGHTS`` names a file that does not exist.
        CheckpointError: the file is not a checkpoint or its weights do not fit the model.
    """
    check_weights(cfg)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        VISCheckpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[], strict=True)
    else:
        logger.warning("MODEL.WEIGHTS is empty: the model runs with random initialisation")
    return model.eval()


def metadata_of(cfg: CfgNode) -> Metadata:
    """Metadata (class names, dataset ids) of the first test set, empty when there is none."""
    if len(cfg.DATASETS.TEST):
        load_categories(cfg.DATASETS.TEST[0])
        return MetadataCatalog.get(cfg.DATASETS.TEST[0])
    return Metadata()


def dataset_ids(metadata: Metadata, num_classes: int) -> dict[int, int]:
    """Contiguous class id → dataset category id, from the metadata where it has one, else
    id + 1 (YouTube-VIS ids start at 1)."""
    to_contiguous = metadata.get("thing_dataset_id_to_contiguous_id", {})
    inverse = {c: d for d, c in to_contiguous.items()}
    return {c: inverse.get(c, c + 1) for c in range(num_classes)}


class FramePreprocessor:
    """A decoded frame → a VIS model's per-frame input, resized as ``YTVISTestMapper`` does
    (``ResizeShortestEdge`` to ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST`` with
    ``INPUT.RESIZE_BACKEND``).

    ``__call__(frame)``: BGR uint8 (H, W, 3) → ``{"image": (3, H', W') uint8 tensor in
    INPUT.FORMAT, "height": H, "width": W}``.
    """

    def __init__(self, cfg: CfgNode):
        self.augmentations = T.AugmentationList(build_frame_augmentation(cfg, is_train=False))
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"INPUT.FORMAT {self.input_format} is not supported; use BGR or RGB")

    def __call__(self, frame: np.ndarray) -> dict:
        image = frame if self.input_format == "BGR" else np.ascontiguousarray(frame[:, :, ::-1])
        height, width = image.shape[:2]
        image = frame_transforms(self.augmentations, image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}


def setup_console_logging() -> None:
    """Log fvcore, detectron2 and vis_d2 to the console as detectron2's tools do (for command
    line entry points; library code leaves logging set-up to its caller)."""
    setup_logger(name="fvcore")
    setup_logger(name="detectron2")
    setup_logger(name="vis_d2", abbrev_name="vis_d2")
