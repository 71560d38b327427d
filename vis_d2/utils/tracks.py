"""YouTube-VIS results of one video, collected while the video streams by."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.structures import Instances

__all__ = ["TrackResults"]


class TrackResults:
    """Per-frame tracked instances → results.json entries, one per track id.

    Masks are RLE-encoded as each frame arrives, so only the compressed masks are kept. As in
    :func:`vis_d2.evaluation.frames_to_tracks`, a track's score is the mean of its frame
    scores, its category the majority vote of its frame labels (ties: the label seen first)
    mapped to a dataset id, and its segmentation ``None`` on frames where it is absent.
    """

    def __init__(self, video_id: int, contiguous_to_dataset_id: dict[int, int]):
        self.video_id = video_id
        self.to_dataset_id = contiguous_to_dataset_id
        self.num_frames = 0
        self._tracks: dict[int, dict] = {}

    def add(self, instances: Instances) -> None:
        """The next frame: ``pred_masks`` (N, H, W) bool, ``scores``, ``pred_classes``
        (contiguous ids), ``track_ids``."""
        t = self.num_frames
        self.num_frames += 1
        if len(instances) == 0:
            return
        masks = instances.pred_masks.to(torch.uint8).cpu().numpy().transpose(1, 2, 0)
        rles = mask_util.encode(np.asfortranarray(masks))
        for tid, score, label, rle in zip(
            instances.track_ids.tolist(),
            instances.scores.tolist(),
            instances.pred_classes.tolist(),
            rles,
            strict=True,
        ):
            track = self._tracks.setdefault(tid, {"scores": [], "labels": [], "segs": {}})
            if t in track["segs"]:
                raise ValueError(f"track {tid} appears twice in frame {t}")
            rle["counts"] = rle["counts"].decode("ascii")
            track["scores"].append(score)
            track["labels"].append(label)
            track["segs"][t] = rle

    def results(self) -> list[dict]:
        """``[{video_id, category_id, score, segmentations}]`` in track-id order, with one
        segmentation (compressed RLE, str counts, or None) per frame added so far."""
        return [
            {
                "video_id": self.video_id,
                "category_id": self.to_dataset_id[
                    Counter(track["labels"]).most_common(1)[0][0]
                ],
                "score": float(np.mean(track["scores"])),
                "segmentations": [track["segs"].get(t) for t in range(self.num_frames)],
            }
            for _, track in sorted(self._tracks.items())
        ]

    @property
    def track_ids(self) -> list[int]:
        """The track ids seen so far, in the order of :meth:`results`."""
        return sorted(self._tracks)
