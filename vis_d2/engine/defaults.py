"""``VISTrainer``: detectron2's DefaultTrainer wired to video data, the YouTube-VIS evaluator,
video inference and the exponential LR schedule."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluator, print_csv_format
from detectron2.utils import comm
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data import build_video_test_loader, build_video_train_loader
from ..evaluation import YTVISEvaluator
from .inference import inference_on_videos
from .lr_scheduler import build_lr_scheduler

__all__ = ["VISTrainer"]

logger = logging.getLogger(__name__)


class VISTrainer(DefaultTrainer):
    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_video_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(dataset_name, output_folder)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test(
        cls, cfg: CfgNode, model: nn.Module, evaluators: list[DatasetEvaluator] | None = None
    ) -> dict:
        """Video inference and evaluation on every split of ``cfg.DATASETS.TEST``."""
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} test sets")
        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            loader = cls.build_test_loader(cfg, name)
            evaluator = (
                evaluators[idx] if evaluators is not None else cls.build_evaluator(cfg, name)
            )
            results[name] = inference_on_videos(model, loader, evaluator)
            if comm.is_main_process() and results[name]:
                logger.info(f"Evaluation results for {name} in csv format:")
                print_csv_format(results[name])
        return results if len(results) != 1 else next(iter(results.values()))
