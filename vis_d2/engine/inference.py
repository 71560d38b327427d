"""Video inference loop: frames timed one by one, outputs handed to an evaluator per video."""

from __future__ import annotations

import datetime
import logging
import time
from contextlib import ExitStack

import torch
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, inference_context
from detectron2.utils.comm import get_world_size
from detectron2.utils.logger import log_every_n_seconds
from torch import nn

from ..utils.memory import TRIM_EVERY, trim_heap

__all__ = ["inference_on_videos"]

logger = logging.getLogger(__name__)

WARMUP_FRAMES = 5


def inference_on_videos(
    model: nn.Module, data_loader, evaluator: DatasetEvaluator | list | None
) -> dict:
    """Run ``model`` online over every video of ``data_loader`` (batches of one video from
    ``YTVISTestMapper``) and return ``evaluator.evaluate()``.

    The model must offer ``reset()`` and ``inference_frame(frame)``. An evaluator that offers
    ``video_results(video)`` (:class:`~vis_d2.evaluation.YTVISEvaluator`) gets each frame's
    instances as soon as they are predicted and the video's accumulator as its output
    (``{"tracks": ...}``), so memory does not grow with the frames' masks; any other evaluator
    gets ``{"frames": [Instances per frame]}``. Reading a frame is timed apart from the model:
    the log reports the model's time per frame and its FPS (frames / model time), leaving out
    the first ``WARMUP_FRAMES`` frames when there are more.
    """
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, list):
        evaluator = DatasetEvaluators(evaluator)
    # detectron2's DatasetEvaluators gives every evaluator the same outputs; each one here gets
    # its own (a stream of its own, or the frames)
    evaluators = evaluator._evaluators if isinstance(evaluator, DatasetEvaluators) else [evaluator]
    evaluator.reset()
    total = len(data_loader)
    logger.info(f"Start inference on {total} videos ({get_world_size()} processes)")
    if getattr(model, "inference_amp", False):
        kind = "bf16 on the CPU" if model.device.type == "cpu" else "fp16 on CUDA"
        logger.info(f"TEST.AMP.ENABLED: the dense graphs run under autocast ({kind})")
    model_times: list[float] = []
    read_times: list[float] = []
    start = time.perf_counter()
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        for idx, inputs in enumerate(data_loader):
            for video in inputs:
                model.reset()
                streams = [getattr(e, "video_results", None) for e in evaluators]
                streams = [make(video) if make else None for make in streams]
                frames: list | None = [] if None in streams else None
                t_read = time.perf_counter()
                for frame in video["frames"]:
                    t0 = time.perf_counter()
                    instances = model.inference_frame(frame)
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    t1 = time.perf_counter()
                    model_times.append(t1 - t0)
                    read_times.append(t0 - t_read)
                    for stream in streams:
                        if stream is not None:
                            stream.add(instances)
                    if frames is not None:
                        frames.append(instances)
                    del instances  # not alive while the next frame is predicted
                    if len(model_times) % TRIM_EVERY == 0:
                        trim_heap()  # a long video's resident size stays flat
                    t_read = time.perf_counter()
                for e, stream in zip(evaluators, streams, strict=True):
                    output = {"frames": frames} if stream is None else {"tracks": stream}
                    e.process([video], [output])
            eta = (time.perf_counter() - start) / (idx + 1) * (total - idx - 1)
            log_every_n_seconds(
                logging.INFO,
                f"Inference done {idx + 1}/{total} videos, {len(model_times)} frames. "
                f"ETA={datetime.timedelta(seconds=int(eta))}",
                n=5,
            )
    if model_times:
        skip = WARMUP_FRAMES if len(model_times) > WARMUP_FRAMES else 0
        per_frame = sum(model_times[skip:]) / len(model_times[skip:])
        reading = sum(read_times[skip:]) / len(read_times[skip:])
        logger.info(
            f"Inference: {len(model_times)} frames in {time.perf_counter() - start:.1f} s; model "
            f"{1000 * per_frame:.1f} ms/frame = {1 / per_frame:.2f} FPS (frames / model time, "
            f"first {skip} frames left out), frame reading {1000 * reading:.1f} ms/frame"
        )
    results = evaluator.evaluate()
    return results if results is not None else {}
