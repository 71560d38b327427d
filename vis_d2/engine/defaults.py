"""``VISTrainer``: detectron2's DefaultTrainer wired to video data, the YouTube-VIS evaluator,
video inference and the exponential LR schedule, with exact resuming and atomic checkpoints;
``ImageTrainer``: the same for image models on detectron2's image data and COCO evaluator;
``trainer_class`` picks the one a config's META_ARCH needs."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, create_ddp_model, hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, print_csv_format
from detectron2.utils import comm
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data import (
    build_image_test_loader,
    build_image_train_loader,
    build_video_test_loader,
    build_video_train_loader,
)
from ..evaluation import YTVISEvaluator
from ..modeling.meta_arch import FrameModel, is_video_model
from ..utils.precision import use_autocast
from .checkpoint import VISCheckpointer
from .hooks import PeriodicCheckpointer, preserved_rng_states
from .inference import inference_on_videos
from .lr_scheduler import build_lr_scheduler
from .optimizer import build_optimizer

__all__ = ["ImageTrainer", "VISTrainer", "trainer_class"]

logger = logging.getLogger(__name__)


class _StepMixin:
    """What the vis_d2 step trainers add to detectron2's: a non-finite loss stops training in
    the process where it occurs, before the optimizer step, with a message naming the losses
    and the iteration; the data loader can be replaced (to restart its stream)."""

    iter: int

    def _write_metrics(
        self, loss_dict: Mapping[str, torch.Tensor], data_time: float, prefix: str = ""
    ) -> None:
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        bad = [f"{k} = {v}" for k, v in values.items() if not math.isfinite(v)]
        if bad:
            where = f" in process {comm.get_rank()}" if comm.get_world_size() > 1 else ""
            raise FloatingPointError(
                f"Loss became infinite or NaN at iteration {self.iter}{where}: "
                f"{', '.join(bad)} (all losses: {values})"
            )
        super()._write_metrics(loss_dict, data_time, prefix)

    def reset_data_loader(self, data_loader: Iterable) -> None:
        """Train on ``data_loader`` from the next step on; the current iterator is dropped."""
        del self._data_loader_iter
        self.data_loader = data_loader
        self._data_loader_iter = iter(data_loader)


class _SimpleTrainer(_StepMixin, SimpleTrainer):
    pass


class _AMPTrainer(_StepMixin, AMPTrainer):
    pass


class _CPUBFloat16Trainer(_StepMixin, SimpleTrainer):
    """``SOLVER.AMP.ENABLED`` on the CPU: detectron2's step with the forward pass (losses
    included) under bf16 autocast, chosen only where the CPU runs bf16 natively (AMX /
    AVX-512 BF16; :func:`vis_d2.utils.precision.use_autocast`). bf16 keeps fp32's exponent
    range, so no gradient scaler is needed (detectron2's ``AMPTrainer`` is fp16 on CUDA
    only)."""

    def run_step(self) -> None:
        assert self.model.training, "[_CPUBFloat16Trainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_dict = self.model(data)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


def _truncate_metrics(path: str, start_iter: int) -> None:
    """Cut the JSON lines of ``path`` (detectron2's metrics.json) before the first record of an
    iteration >= ``start_iter`` or the first unreadable line (a write cut short by a kill)."""
    if not os.path.isfile(path):
        return
    keep = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not line.endswith(b"\n") or not isinstance(record, dict):
                break
            if record.get("iteration", -1) >= start_iter:
                break
            keep += len(line)
        else:
            return
    os.truncate(path, keep)  # one call: the file is either cut or untouched
    logger.info(f"Cut {path} to its records before iteration {start_iter}")


# buffers are not synchronised at each forward (detectron2's default); torch >= 2.14 deprecates
# broadcast_buffers=False for forward_sync_buffers=False, which still syncs them once at start
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def _check_num_classes(cfg: CfgNode, model: FrameModel) -> None:
    """The training splits' class count (known once they are loaded) against the model's:
    more classes than the model has would make some of them background or crash the loss,
    fewer leaves outputs that never learn."""
    classes = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes
    num_classes, key = model.num_classes, model.num_classes_key
    message = (
        f"DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)} has {len(classes)} classes and "
        f"{key} is {num_classes}"
    )
    if len(classes) > num_classes:
        raise ValueError(f"{message}: set {key} {len(classes)}")
    if len(classes) < num_classes:
        logger.warning(f"{message}: {num_classes - len(classes)} class outputs never learn")


class VISTrainer(DefaultTrainer):
    """detectron2's DefaultTrainer for videos.

    Differences from it: checkpoints are written by :class:`VISCheckpointer` (atomic; strict
    on resume) and hold the optimizer state and every process's random generator states;
    ``resume_or_load`` restarts the training stream (:func:`build_video_train_loader`) at the
    resumed iteration and cuts ``metrics.json`` back to the iterations before it, so that a
    resumed training continues the interrupted one exactly. A non-finite loss stops training
    in any process, naming the loss and the iteration.
    """

    def __init__(self, cfg: CfgNode):
        # TrainerBase's initialisation, then DefaultTrainer's parts with vis_d2's step trainer
        # and checkpointer in place of detectron2's
        super(DefaultTrainer, self).__init__()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        _check_num_classes(cfg, model)
        model = create_ddp_model(model, **_NO_BUFFER_SYNC)
        step_trainer = _SimpleTrainer
        # use_autocast logs the choice, naming the CPU
        if use_autocast(cfg.SOLVER.AMP.ENABLED, cfg.MODEL.DEVICE, "SOLVER.AMP.ENABLED"):
            on_cpu = torch.device(cfg.MODEL.DEVICE).type == "cpu"
            step_trainer = _CPUBFloat16Trainer if on_cpu else _AMPTrainer
        self._trainer = step_trainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = VISCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self) -> list:
        """detectron2's hooks, its main-process checkpointer hook replaced by
        :class:`~vis_d2.engine.hooks.PeriodicCheckpointer` on every process."""
        ret = [h for h in super().build_hooks() if not isinstance(h, hooks.PeriodicCheckpointer)]
        at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
        ret.insert(at, PeriodicCheckpointer(self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD))
        return ret

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from the last checkpoint of OUTPUT_DIR when ``resume`` and there is one
        (strictly: its weights must fit the model), else load MODEL.WEIGHTS and start at 0."""
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1  # the checkpoint's iteration is a finished one
            self._trainer.reset_data_loader(
                self.build_train_loader(self.cfg, start_iter=self.start_iter)
            )
            if comm.is_main_process():
                metrics = os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")
                _truncate_metrics(metrics, self.start_iter)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "The checkpoint holds no optimizer state: the optimizer starts afresh "
                "(momentum and similar statistics are lost)"
            )

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, *, start_iter: int = 0):
        return build_video_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(
            dataset_name, output_folder, classes_per_track=cfg.TEST.CLASSES_PER_TRACK
        )

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

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
        with preserved_rng_states():  # evaluating does not change the training's random numbers
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


class ImageTrainer(VISTrainer):
    """:class:`VISTrainer` for image models (detectron2's batch of images in, ``[{"instances"}]``
    out): training batches from :func:`vis_d2.data.build_image_train_loader` (detectron2's
    dataset dicts and ``DatasetMapper``, the same exact-resume stream), evaluation by
    detectron2's ``DefaultTrainer.test`` with its ``COCOEvaluator`` (box and mask AP)."""

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, *, start_iter: int = 0):
        return build_image_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_image_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def test(
        cls, cfg: CfgNode, model: nn.Module, evaluators: list[DatasetEvaluator] | None = None
    ) -> dict:
        """detectron2's image inference and evaluation on every split of ``cfg.DATASETS.TEST``."""
        with preserved_rng_states():  # evaluating does not change the training's random numbers
            return DefaultTrainer.test.__func__(cls, cfg, model, evaluators)


def trainer_class(cfg: CfgNode) -> type[VISTrainer]:
    """:class:`VISTrainer` for a video META_ARCH (a :class:`~vis_d2.modeling.VISModel`),
    :class:`ImageTrainer` for any other (an image model with detectron2's interface)."""
    return VISTrainer if is_video_model(cfg.MODEL.META_ARCHITECTURE) else ImageTrainer
