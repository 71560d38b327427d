"""``YTVISEvaluator``: per-frame tracked instances → per-video results.json → official-equal AP."""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from tabulate import tabulate

from .ytvis_eval import STAT_NAMES, evaluate_ytvis

__all__ = ["YTVISEvaluator", "frames_to_tracks"]

logger = logging.getLogger(__name__)


def _encode(masks: torch.Tensor) -> list[dict]:
    """(N, H, W) bool masks → compressed RLEs with str counts."""
    array = np.asfortranarray(masks.to(torch.uint8).cpu().numpy().transpose(1, 2, 0))
    rles = mask_util.encode(array)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def frames_to_tracks(
    frames: list[Instances], video_id: int, contiguous_to_dataset_id: dict[int, int]
) -> list[dict]:
    """Group the per-frame instances of one video by ``track_ids`` into results.json entries.

    Each frame's ``Instances`` has ``pred_masks`` ((N, H, W), bool or probabilities thresholded
    at 0.5, original resolution), ``scores``, ``pred_classes`` (contiguous) and ``track_ids``.
    A track's score is the mean of its frame scores, its category the majority vote of its
    frame labels (ties: the label seen first), its segmentation ``None`` where it is absent.
    """
    length = len(frames)
    tracks: dict[int, dict] = {}
    for t, inst in enumerate(frames):
        if len(inst) == 0:
            continue
        masks = inst.pred_masks
        if masks.dtype != torch.bool:
            masks = masks >= 0.5
        rles = _encode(masks)
        for tid, score, label, seg in zip(
            inst.track_ids.tolist(),
            inst.scores.tolist(),
            inst.pred_classes.tolist(),
            rles,
            strict=True,
        ):
            track = tracks.setdefault(tid, {"scores": [], "labels": [], "segs": [None] * length})
            if track["segs"][t] is not None:
                raise ValueError(f"video {video_id}: track {tid} appears twice in frame {t}")
            track["scores"].append(score)
            track["labels"].append(label)
            track["segs"][t] = seg
    return [
        {
            "video_id": video_id,
            "score": float(np.mean(track["scores"])),
            "category_id": contiguous_to_dataset_id[Counter(track["labels"]).most_common(1)[0][0]],
            "segmentations": track["segs"],
        }
        for track in tracks.values()
    ]


class YTVISEvaluator(DatasetEvaluator):
    """Evaluate video instance segmentation on a YouTube-VIS-format split.

    ``process`` takes, per video input, an output ``{"frames": [Instances per frame]}`` (see
    :func:`frames_to_tracks`). ``evaluate`` gathers the results of all processes, writes
    ``results.json`` and ``results.zip`` (the CodaLab submission) into ``output_dir`` and, when
    the split's json has annotations, returns ``{"segm": {AP, AP50, ... in percent, "AP-<class>"}}``
    computed exactly as the official YouTube-VIS API does.
    """

    def __init__(
        self, dataset_name: str, output_dir: str | None = None, *, distributed: bool = True
    ):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        self._json_file = meta.json_file
        self._class_names = meta.thing_classes
        self._to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
        self._results: list[dict] = []

    def reset(self) -> None:
        self._results = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for video, output in zip(inputs, outputs, strict=True):
            frames = output["frames"]
            if len(frames) != video["length"]:
                raise ValueError(
                    f"video {video['video_id']}: {len(frames)} predicted frames for "
                    f"a video of {video['length']}"
                )
            self._results.extend(frames_to_tracks(frames, video["video_id"], self._to_dataset_id))

    def _gather(self) -> list[dict] | None:
        if not self._distributed:
            return self._results
        comm.synchronize()
        gathered = comm.gather(self._results, dst=0)
        return list(itertools.chain(*gathered)) if comm.is_main_process() else None

    def _write(self, results: list[dict]) -> None:
        PathManager.mkdirs(self._output_dir)
        path = os.path.join(self._output_dir, "results.json")
        payload = json.dumps(results)
        # written to a temporary name first so an interrupted run never leaves a partial file
        with tempfile.NamedTemporaryFile("w", dir=self._output_dir, delete=False) as f:
            f.write(payload)
        os.replace(f.name, path)
        zip_path = os.path.join(self._output_dir, "results.zip")
        with zipfile.ZipFile(zip_path + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("results.json", payload)
        os.replace(zip_path + ".tmp", zip_path)
        logger.info(
            f"Wrote {len(results)} tracks to {path} and {zip_path} (for the CodaLab server)"
        )

    def evaluate(self) -> OrderedDict | None:
        results = self._gather()
        if results is None:  # not the main process
            return None
        if self._output_dir:
            self._write(results)
        with PathManager.open(self._json_file, "r") as f:
            gt = json.load(f)
        if not gt.get("annotations"):
            logger.info(
                f"{self._json_file} has no annotations: results are written but not "
                "scored (submit results.zip to the evaluation server)"
            )
            return OrderedDict()
        result = evaluate_ytvis(
            gt, results, gt_source=self._json_file, results_source="predictions"
        )
        logger.info(
            f"Evaluation of {self._dataset_name} (YouTube-VIS protocol):\n{result.summary()}"
        )
        segm = {name: 100 * result.stats[name] for name in STAT_NAMES}
        per_class = [
            (name, 100 * ap if ap >= 0 else float("nan"))
            for name, ap in result.per_category_ap.items()
        ]
        logger.info(
            "Per-category AP:\n"
            + tabulate(per_class, headers=["category", "AP"], floatfmt=".2f", tablefmt="pipe")
        )
        segm.update({f"AP-{name}": ap for name, ap in per_class})
        return OrderedDict(segm=segm)
