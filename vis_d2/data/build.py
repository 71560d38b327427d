"""Data loaders for per-video dicts, on detectron2's samplers (sharded across processes)."""

from __future__ import annotations

import itertools
import logging

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.utils.logger import log_first_n
from tabulate import tabulate

from .dataset_mapper import YTVISDatasetMapper, YTVISTestMapper

__all__ = ["get_video_dataset_dicts", "build_video_train_loader", "build_video_test_loader"]

logger = logging.getLogger(__name__)


def _has_instances(video: dict) -> bool:
    return any(obj.get("iscrowd", 0) == 0 for frame in video["annotations"] for obj in frame)


def _log_class_histogram(videos: list[dict], class_names: list[str]) -> None:
    """Instance tracks per class (a track counts once however many frames it spans)."""
    counts = np.zeros(len(class_names), dtype=int)
    for video in videos:
        tracks = {obj["id"]: obj["category_id"] for frame in video["annotations"] for obj in frame}
        for category in tracks.values():
            counts[category] += 1
    pairs = list(itertools.chain(*[(n, int(c)) for n, c in zip(class_names, counts, strict=True)]))
    columns = min(6, len(pairs))
    rows = [pairs[i : i + columns] for i in range(0, len(pairs), columns)]
    table = tabulate(rows, headers=["category", "#tracks"] * (columns // 2), tablefmt="pipe")
    log_first_n(
        logging.INFO, f"Instance tracks among {len(videos)} videos:\n{table}", key="message"
    )


def get_video_dataset_dicts(names: str | list[str], filter_empty: bool = True) -> list[dict]:
    """Load and concatenate the per-video dicts of the named splits.

    With ``filter_empty``, videos without any non-crowd instance are left out, and how many is
    logged.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("no dataset names given")
    videos = []
    for name in names:
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"dataset '{name}' is empty")
        videos.extend(dicts)
    if "annotations" in videos[0]:
        if filter_empty:
            kept = [v for v in videos if _has_instances(v)]
            if len(kept) < len(videos):
                logger.info(
                    f"Left out {len(videos) - len(kept)} of {len(videos)} videos that "
                    "have no instance"
                )
            videos = kept
        _log_class_histogram(videos, MetadataCatalog.get(names[0]).thing_classes)
    return videos


def build_video_train_loader(cfg: CfgNode, mapper: YTVISDatasetMapper | None = None):
    """An endless loader of frame-pair batches (SOLVER.IMS_PER_BATCH) over DATASETS.TRAIN."""
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN} is not supported "
            "for videos; use TrainingSampler (videos are drawn uniformly)"
        )
    dataset = get_video_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    return build_detection_train_loader(
        cfg, mapper=mapper if mapper is not None else YTVISDatasetMapper(cfg, True), dataset=dataset
    )


def build_video_test_loader(cfg: CfgNode, dataset_name: str, mapper: YTVISTestMapper | None = None):
    """A loader of whole videos (batch 1, frames decoded lazily), sharded across processes."""
    dataset = get_video_dataset_dicts(dataset_name, filter_empty=False)
    return build_detection_test_loader(
        dataset,
        mapper=mapper if mapper is not None else YTVISTestMapper(cfg),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
