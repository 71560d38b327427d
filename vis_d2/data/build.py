"""Data loaders for per-video dicts, sharded across processes: a resumable training stream and
detectron2's inference sampler."""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetCatalog,
    DatasetFromList,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.build import trivial_batch_collator, worker_init_reset_seed
from detectron2.data.detection_utils import check_metadata_consistency
from detectron2.utils import comm
from detectron2.utils.logger import log_first_n
from tabulate import tabulate

from .dataset_mapper import BoxAwareDatasetMapper, YTVISDatasetMapper, YTVISTestMapper
from .transforms import build_image_augmentation

__all__ = [
    "ResumableTrainingSampler",
    "build_image_test_loader",
    "build_image_train_loader",
    "build_video_test_loader",
    "build_video_train_loader",
    "get_video_dataset_dicts",
]

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
            if not kept:
                raise ValueError(
                    f"no video of {', '.join(names)} shows a (non-crowd) instance in any "
                    "frame: there is nothing to train on"
                )
            if len(kept) < len(videos):
                logger.info(
                    f"Left out {len(videos) - len(kept)} of {len(videos)} videos that "
                    "have no instance"
                )
            videos = kept
        if len(names) > 1:
            check_metadata_consistency("thing_classes", names)
        _log_class_histogram(videos, MetadataCatalog.get(names[0]).thing_classes)
    return videos


class ResumableTrainingSampler:
    """This process's endless stream of training batches, a pure function of (seed, iteration).

    The global stream of samples is a sequence of epochs, epoch e a permutation of the data set
    drawn from (seed, e). Process r of W takes the stream positions r, r + W, r + 2W, ... and
    cuts them into batches of ``batch_size``, so iteration i of all processes together covers
    positions [i·B, (i+1)·B) with B = W · batch_size. With ``group_ids`` (one per data set
    item), a batch is filled from one group only, as detectron2's aspect-ratio grouping does.

    A batch is a list of ``(dataset index, sample seed)``; the seed, a function of (seed,
    stream position), drives the sample's own random choices (frames, augmentation). The
    stream restarted at ``start_iter`` therefore continues an interrupted one exactly.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        start_iter: int = 0,
        group_ids: Sequence[int] | None = None,
    ):
        if size <= 0 or batch_size <= 0:
            raise ValueError(f"needs a non-empty data set and batch, got {size} and {batch_size}")
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        if group_ids is not None and len(group_ids) != size:
            raise ValueError(f"{len(group_ids)} group ids for a data set of {size}")
        self._size = size
        self._batch_size = batch_size
        self._shuffle = shuffle
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._start_iter = start_iter
        # a single group is no grouping, and lets the stream start without a replay
        self._group_ids = list(group_ids) if group_ids and len(set(group_ids)) > 1 else None
        self._rank = comm.get_rank()
        self._world_size = comm.get_world_size()

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self._shuffle:
            return np.arange(self._size)
        return np.random.default_rng([self._seed, 0, epoch]).permutation(self._size)

    def _sample_seed(self, position: int) -> int:
        return int(np.random.SeedSequence([self._seed, 1, position]).generate_state(1)[0])

    def _positions(self, start: int) -> Iterator[tuple[int, int]]:
        """(dataset index, global position) of this process's samples from its ``start``-th."""
        epoch, order = -1, None
        for position in itertools.count(self._rank + self._world_size * start, self._world_size):
            e, offset = divmod(position, self._size)
            if e != epoch:
                epoch, order = e, self._epoch_order(e)
            yield int(order[offset]), position

    def _grouped(self, samples: Iterator[tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
        buckets: dict[int, list[tuple[int, int]]] = {}
        for sample in samples:
            bucket = buckets.setdefault(self._group_ids[sample[0]], [])
            bucket.append(sample)
            if len(bucket) == self._batch_size:
                yield bucket.copy()
                bucket.clear()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self._group_ids is None:
            samples = self._positions(self._start_iter * self._batch_size)
            batches = (list(itertools.islice(samples, self._batch_size)) for _ in itertools.count())
        else:  # where a group's batches stand depends on the whole stream before: replay it
            batches = itertools.islice(self._grouped(self._positions(0)), self._start_iter, None)
        for batch in batches:
            yield [(index, self._sample_seed(position)) for index, position in batch]


@contextlib.contextmanager
def _seeded_rngs(seed: int):
    """Seed python's, numpy's and torch's (CPU) global generators, and restore them after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class _TrainingBatches(torchdata.IterableDataset):
    """The sampler's batches, mapped. Data loader worker k of n maps batches k, k + n, ...,
    which the loader returns in turn: the batches come in sampler order whatever n is. Each
    sample is mapped with the global generators seeded from its sample seed, so what a sample
    becomes depends neither on the worker nor on what the worker mapped before."""

    def __init__(self, dataset: list[dict], mapper: Callable[[dict], dict], sampler):
        self._dataset = DatasetFromList(dataset, copy=False)
        self._mapper = mapper
        self._sampler = sampler

    def __iter__(self) -> Iterator[list[dict]]:
        batches = iter(self._sampler)
        worker = torchdata.get_worker_info()
        if worker is not None and worker.num_workers > 1:
            batches = itertools.islice(batches, worker.id, None, worker.num_workers)
        for batch in batches:
            yield [self._map(index, seed) for index, seed in batch]

    def _map(self, index: int, seed: int) -> dict:
        item = self._dataset[index]
        with _seeded_rngs(seed):
            sample = self._mapper(item)
        if sample is None:
            what = f"video {item['video_id']}" if "video_id" in item else item.get("file_name")
            raise ValueError(
                f"the training mapper returned None for {what}; "
                "every sample of the training stream must map"
            )
        return sample


def _training_stream(
    cfg: CfgNode,
    dataset: list[dict],
    mapper: Callable[[dict], dict],
    start_iter: int,
) -> torchdata.DataLoader:
    """An endless loader of mapped batches of ``dataset``, SOLVER.IMS_PER_BATCH items per
    iteration over all processes, from iteration ``start_iter`` on (see
    :class:`ResumableTrainingSampler`)."""
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN} is not supported; "
            "use TrainingSampler (items are drawn uniformly)"
        )
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH <= 0 or cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} must be a positive multiple of "
            f"the number of processes ({world_size})"
        )
    groups = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        groups = [int(d["width"] <= d["height"]) for d in dataset]
    sampler = ResumableTrainingSampler(
        len(dataset),
        cfg.SOLVER.IMS_PER_BATCH // world_size,
        seed=cfg.SEED if cfg.SEED >= 0 else None,
        start_iter=start_iter,
        group_ids=groups,
    )
    if start_iter:
        logger.info(f"The training stream resumes at iteration {start_iter}")
    return torchdata.DataLoader(
        _TrainingBatches(dataset, mapper, sampler),
        batch_size=None,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
        worker_init_fn=worker_init_reset_seed,
    )


def build_video_train_loader(
    cfg: CfgNode, mapper: Callable[[dict], dict] | None = None, *, start_iter: int = 0
) -> torchdata.DataLoader:
    """An endless loader of frame-pair batches over DATASETS.TRAIN, SOLVER.IMS_PER_BATCH pairs
    per iteration over all processes, from iteration ``start_iter`` on.

    Batches come from a :class:`ResumableTrainingSampler` seeded with ``SEED`` (a seed shared by
    the processes when SEED < 0), grouped by orientation with DATALOADER.ASPECT_RATIO_GROUPING.
    """
    dataset = get_video_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    mapper = mapper if mapper is not None else YTVISDatasetMapper(cfg, True)
    return _training_stream(cfg, dataset, mapper, start_iter)


def build_image_train_loader(
    cfg: CfgNode, mapper: Callable[[dict], dict] | None = None, *, start_iter: int = 0
) -> torchdata.DataLoader:
    """The image counterpart of :func:`build_video_train_loader`: batches of detectron2's
    dataset dicts of DATASETS.TRAIN (``get_detection_dataset_dicts``) mapped by ``mapper``
    (default: :class:`BoxAwareDatasetMapper`, detectron2's ``DatasetMapper`` with the image
    augmentation of the config, :func:`vis_d2.data.build_image_augmentation`), in the
    same resumable, seeded stream."""
    dataset = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    if mapper is None:
        mapper = BoxAwareDatasetMapper(cfg, True)
    return _training_stream(cfg, dataset, mapper, start_iter)


def build_image_test_loader(
    cfg: CfgNode, dataset_name: str, mapper: Callable[[dict], dict] | None = None
) -> torchdata.DataLoader:
    """detectron2's test loader of ``dataset_name`` with its ``DatasetMapper`` and the image
    augmentation of the config (the test resize)."""
    if mapper is None:
        mapper = DatasetMapper(cfg, False, augmentations=build_image_augmentation(cfg, False))
    return build_detection_test_loader(cfg, dataset_name, mapper=mapper)


def build_video_test_loader(cfg: CfgNode, dataset_name: str, mapper: YTVISTestMapper | None = None):
    """A loader of whole videos (batch 1, frames decoded lazily), sharded across processes."""
    dataset = get_video_dataset_dicts(dataset_name, filter_empty=False)
    return build_detection_test_loader(
        dataset,
        mapper=mapper if mapper is not None else YTVISTestMapper(cfg),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
