#!/usr/bin/env python
"""Train or evaluate a vis_d2 model (detectron2's standard command line).

    python tools/train_net.py --config-file configs/SGNet_R101.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/SGNet_R101.yaml --eval-only MODEL.WEIGHTS m.pth
    python tools/train_net.py --config-file configs/SGNet_R101.yaml --eval-only --exported exp/
    python tools/train_net.py --config-file configs/synthetic/SGNet_R18_synthetic.yaml
    python tools/train_net.py --config-file projects/SipMask/configs/SipMask_R50_1x.yaml

A video META_ARCH trains on video splits and is scored by the YouTube-VIS evaluator; an image
one (e.g. SipMask) on detectron2's image splits (``coco_2017_train``, ...) with its
``DatasetMapper``, scored by its ``COCOEvaluator``.

Without a GPU, the model runs on the CPU and ``--num-gpus N`` starts N CPU processes (gloo),
sharing the cores among them unless OMP_NUM_THREADS says otherwise. ``--num-machines``,
``--machine-rank`` and ``--dist-url`` are detectron2's. ``--resume`` continues from the last
checkpoint of OUTPUT_DIR (iteration, optimizer, LR schedule, data stream, random states).
A training holds its OUTPUT_DIR (``training.lock``): a second one into it is refused while the
first runs. The workers of ``--num-gpus N`` end with the launcher, even one killed by SIGKILL.
Splits of one's own in YouTube-VIS format are registered from the command line with
``DATASETS.REGISTER "(('name', 'train.json', 'JPEGImages'),)" DATASETS.TRAIN "('name',)"``.
``--eval-only --exported DIR`` evaluates a model exported by tools/export_model.py (TorchScript,
or ONNX run by ONNX Runtime) instead of MODEL.WEIGHTS: the model and its post-processing come
from the export's config, the data sets and evaluation from ``--config-file`` and the options.
"""

from __future__ import annotations

# vis_d2 first: importing it filters known third-party deprecation notices, which must happen
# before detectron2 (and fvcore through it) is imported
import vis_d2  # noqa: F401

# isort: split
import contextlib
import logging
import os
import sys
import urllib.error

import torch
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from vis_d2.data import DatasetFormatError, register_config_splits
from vis_d2.engine import (
    CheckpointError,
    OutputDirInUseError,
    VISCheckpointer,
    close_process_group,
    exit_with_parent,
    hold_output_dir,
    trainer_class,
)
from vis_d2.engine.predictor import setup_cfg
from vis_d2.export import ExportedModel

logger = logging.getLogger("vis_d2")


def setup(cfg, args):
    local_processes = comm.get_local_size()
    if cfg.MODEL.DEVICE == "cpu" and local_processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_processes))
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="vis_d2")
    register_config_splits(cfg)
    weights = cfg.MODEL.WEIGHTS
    if args.exported:
        if not args.eval_only:
            raise ValueError("--exported evaluates an export: it needs --eval-only")
        if not os.path.isdir(args.exported):
            raise FileNotFoundError(f"--exported {args.exported} is not a folder")
    elif not weights:
        if args.eval_only:
            raise ValueError("--eval-only needs MODEL.WEIGHTS, the checkpoint to evaluate")
        logger.info("MODEL.WEIGHTS is empty: training starts from random initialisation")
    elif "://" not in weights and not os.path.exists(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS file {weights} does not exist")
    return cfg


@contextlib.contextmanager
def explain_download_errors(weights: str):
    """Turn a failed download of a ``MODEL.WEIGHTS`` URL into a message saying what to do."""
    try:
        yield
    except (OSError, urllib.error.URLError) as e:
        if "://" not in weights:
            raise
        raise RuntimeError(
            f"could not fetch MODEL.WEIGHTS {weights} ({e}). Without network access, download "
            "it elsewhere and pass MODEL.WEIGHTS /path/to/file, or MODEL.WEIGHTS '' to train "
            "from random initialisation."
        ) from e


def main(args):
    exit_with_parent()  # a worker of --num-gpus N ends with its launcher
    result = run(args)
    close_process_group()  # every rank done: no process group left to the exit
    return result


def run(args):
    """Evaluate (``--eval-only``) or train, as the command line says; returns the results."""
    cfg = setup_cfg(args.config_file, args.opts)
    trainer_cls = trainer_class(cfg)  # the video or the image trainer, as the META_ARCH needs
    if args.eval_only and args.exported:
        setup(cfg, args)
        exported = ExportedModel(args.exported, opts=args.opts, device=cfg.MODEL.DEVICE)
        arch = exported.cfg.MODEL.META_ARCHITECTURE
        if arch != cfg.MODEL.META_ARCHITECTURE:
            raise ValueError(
                f"--exported {args.exported} holds a {arch} model, --config-file a "
                f"{cfg.MODEL.META_ARCHITECTURE} one"
            )
        logger.info(f"evaluating the {exported.format} export in {args.exported}")
        return trainer_cls.test(cfg, exported.model)
    if args.eval_only:
        setup(cfg, args)
        model = trainer_cls.build_model(cfg)
        with explain_download_errors(cfg.MODEL.WEIGHTS):
            VISCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                cfg.MODEL.WEIGHTS, resume=args.resume, strict=True
            )
        return trainer_cls.test(cfg, model)
    # one training at a time writes an OUTPUT_DIR (its log, config, checkpoints)
    held = hold_output_dir(cfg.OUTPUT_DIR) if comm.is_main_process() else contextlib.nullcontext()
    with held:
        setup(cfg, args)
        trainer = trainer_cls(cfg)
        with explain_download_errors(cfg.MODEL.WEIGHTS):
            trainer.resume_or_load(resume=args.resume)
        return trainer.train()


def argument_parser():
    """detectron2's command line, plus ``--exported``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--exported",
        metavar="DIR",
        help="with --eval-only: evaluate this export of tools/export_model.py instead of "
        "MODEL.WEIGHTS",
    )
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (CheckpointError, DatasetFormatError, FileNotFoundError, OutputDirInUseError) as e:
        # errors about the user's files: their message says it all, a traceback adds nothing
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
