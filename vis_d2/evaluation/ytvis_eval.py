"""YouTube-VIS scoring, number for number equal to ``ytvoseval`` of youtubevos/cocoapi.

A track (a ground-truth instance or a detection) is one mask per frame of its video, ``None``
where it is absent. The IoU of a detection and a ground truth is the ratio of their per-frame
intersections summed over the video to their per-frame unions summed over the video. Matching,
accumulation and the 12 summary numbers then follow COCO's ``segm`` protocol with a video in the
place of an image:

- IoU thresholds 0.50:0.05:0.95, 101 recall thresholds 0:0.01:1, maxDets 1/10/100 per
  (video, category), area ranges all/small/medium/large with inclusive bounds;
- the area of a ground truth is the mean of its non-null, non-zero per-frame ``areas`` from the
  json, that of a detection the mean of its non-zero per-frame mask areas (0 when there are none);
- ``iscrowd`` ground truths are ignored and can absorb any number of detections; their IoU is the
  same video IoU as for any other ground truth;
- detections are ranked by score with a stable sort, so ties keep their input order.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETS",
    "RECALL_THRESHOLDS",
    "STAT_NAMES",
    "YTVISEvalResult",
    "evaluate_ytvis",
]

STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # (T,)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # (R,)
MAX_DETS: tuple[int, ...] = (1, 10, 100)  # (M,), per (video, category)
# (label, lowest, highest) mean track area in pixels, both bounds inclusive; (A,)
AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e10),
    ("small", 0.0, 128.0**2),
    ("medium", 128.0**2, 256.0**2),
    ("large", 256.0**2, 1e10),
)

# stat name -> (average precision if True else average recall, IoU threshold or None for the
# mean over all thresholds, area-range label, maxDets)
_STAT_SPECS: dict[str, tuple[bool, float | None, str, int]] = {
    "AP": (True, None, "all", 100),
    "AP50": (True, 0.5, "all", 100),
    "AP75": (True, 0.75, "all", 100),
    "APs": (True, None, "small", 100),
    "APm": (True, None, "medium", 100),
    "APl": (True, None, "large", 100),
    "AR1": (False, None, "all", 1),
    "AR10": (False, None, "all", 10),
    "AR100": (False, None, "all", 100),
    "ARs": (False, None, "small", 100),
    "ARm": (False, None, "medium", 100),
    "ARl": (False, None, "large", 100),
}


@dataclass
class YTVISEvalResult:
    """Scores of one set of results.

    stats: the 12 numbers of :data:`STAT_NAMES`, fractions in [0, 1], -1.0 where undefined.
    per_category_ap: category name -> AP (IoU 0.50:0.95, all areas, maxDets 100), -1.0 for a
        category without (non-crowd) ground truth.
    precision: (T=10 IoU thresholds, R=101 recall thresholds, K categories sorted by id, A=4 area
        ranges, M=3 maxDets) interpolated precision, -1 where undefined.
    """

    stats: dict[str, float]
    per_category_ap: dict[str, float]
    precision: np.ndarray

    def summary(self) -> str:
        """The 12 stats, one line each, in the layout of COCO's ``summarize``."""
        lines = []
        for name in STAT_NAMES:
            is_ap, iou_thr, area, max_det = _STAT_SPECS[name]
            title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
            if iou_thr is None:
                iou = f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}"
            else:
                iou = f"{iou_thr:0.2f}"
            lines.append(
                f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_det:>3d} ]"
                f" = {self.stats[name]:0.3f}"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Video:
    height: int
    width: int
    length: int


@dataclass
class _Track:
    ident: int  # annotation id (ground truth) or 1-based position in the results (detection)
    rles: list[dict | None]  # (F,) per-frame RLE, None where absent
    frame_areas: np.ndarray  # (F,) int64 mask pixels per frame, 0 where absent
    mean_area: float  # pixels; compared with AREA_RANGES
    score: float = 0.0
    crowd: bool = False


@dataclass
class _VideoEval:
    """One (video, category, area range): detections best first, at most MAX_DETS[-1]."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool, matched to a ground truth whose id is not 0
    ignored: np.ndarray  # (T, D) bool
    n_positive: int  # ground truths that are neither crowd nor outside the area range


def _error(source: str, where: str, message: str) -> ValueError:
    return ValueError(f"{source}: {where}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _get(obj: Any, key: str, source: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise _error(source, where, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise _error(source, where, f"missing key '{key}'")
    return obj[key]


def _get_int(obj: Any, key: str, source: str, where: str, minimum: int | None = None) -> int:
    value = _get(obj, key, source, where)
    if not _is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise _error(source, where, f"'{key}' must be an integer{bound}, got {value!r}")
    return int(value)


def _get_list(obj: Any, key: str, source: str, where: str) -> list:
    value = _get(obj, key, source, where)
    if not isinstance(value, list):
        raise _error(source, where, f"'{key}' must be a list, got {type(value).__name__}")
    return value


def _parse_videos(gt: dict, source: str) -> dict[int, _Video]:
    videos: dict[int, _Video] = {}
    for i, video in enumerate(_get_list(gt, "videos", source, "top level")):
        vid = _get_int(video, "id", source, f"videos[{i}]")
        where = f"videos[{i}] (id {vid})"
        if vid in videos:
            raise _error(source, where, "duplicate video id")
        height = _get_int(video, "height", source, where, minimum=1)
        width = _get_int(video, "width", source, where, minimum=1)
        if "length" in video:
            length = _get_int(video, "length", source, where, minimum=0)
        elif "file_names" in video:
            length = len(_get_list(video, "file_names", source, where))
        else:
            raise _error(source, where, "missing key 'length' (and no 'file_names' to count)")
        videos[vid] = _Video(height, width, length)
    return videos


def _parse_categories(gt: dict, source: str) -> list[tuple[int, str]]:
    """(id, name) of every category, sorted by id."""
    categories: dict[int, str] = {}
    for i, category in enumerate(_get_list(gt, "categories", source, "top level")):
        cid = _get_int(category, "id", source, f"categories[{i}]")
        where = f"categories[{i}] (id {cid})"
        name = _get(category, "name", source, where)
        if not isinstance(name, str):
            raise _error(source, where, f"'name' must be a string, got {name!r}")
        if cid in categories:
            raise _error(source, where, "duplicate category id")
        if name in categories.values():
            raise _error(source, where, f"duplicate category name {name!r}")
        categories[cid] = name
    return sorted(categories.items())


def _check_rle(seg: dict, video: _Video, source: str, where: str) -> None:
    if "counts" not in seg or "size" not in seg:
        raise _error(source, where, "an RLE mask needs both 'size' and 'counts'")
    size = seg["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_is_int, size))):
        raise _error(source, where, f"RLE 'size' must be [height, width], got {size!r}")
    if [int(size[0]), int(size[1])] != [video.height, video.width]:
        raise _error(
            source,
            where,
            f"mask size {list(size)} differs from the video's [height, width] = "
            f"{[video.height, video.width]}",
        )


def _gt_frame(seg: Any, video: _Video, source: str, where: str) -> dict | None:
    """One ground-truth frame (polygons, uncompressed or compressed RLE) as RLE; falsy -> None."""
    if not seg:
        return None
    if isinstance(seg, list):
        try:
            return mask_utils.merge(mask_utils.frPyObjects(seg, video.height, video.width))
        except Exception as e:  # pycocotools raises assorted types on malformed polygons
            raise _error(source, where, f"malformed polygon segmentation ({e})") from e
    if not isinstance(seg, dict):
        raise _error(source, where, f"unsupported segmentation type {type(seg).__name__}")
    _check_rle(seg, video, source, where)
    counts = seg["counts"]
    if isinstance(counts, (str, bytes)):
        return seg
    if isinstance(counts, list):
        try:
            return mask_utils.frPyObjects(seg, video.height, video.width)
        except Exception as e:  # pycocotools raises assorted types on malformed counts
            raise _error(source, where, f"malformed uncompressed RLE ({e})") from e
    raise _error(source, where, f"RLE 'counts' must be a string or a list, got {counts!r}")


def _result_frame(seg: Any, video: _Video, source: str, where: str) -> dict | None:
    """One result frame: a compressed RLE (str or bytes counts); falsy -> None."""
    if not seg:
        return None
    if not isinstance(seg, dict):
        raise _error(source, where, f"expected a compressed RLE or null, got {type(seg).__name__}")
    _check_rle(seg, video, source, where)
    if not isinstance(seg["counts"], (str, bytes)):
        raise _error(source, where, "result masks must be compressed RLE (string 'counts')")
    return seg


def _rle_lengths(strings: list[bytes]) -> np.ndarray:
    """The pixel count (sum of the run lengths) that each compressed RLE string describes; -1
    for a string that is malformed or has a negative run.

    pycocotools checks neither when it reads a string, and computes IoUs and areas from
    whatever the runs say, so counts of a smaller mask under a larger ``size`` would score.
    The format (pycocotools' maskApi.c): each run length is a little-endian sequence of 5-bit
    groups in characters 48 + group, bit 0x20 marking that another group follows and bit 0x10
    of the last group the sign; from the fourth on, a run is stored as its difference to the
    run two before. Decoded here for all strings at once with array operations."""
    out = np.full(len(strings), -1, dtype=np.int64)
    lens = np.array([len(s) for s in strings], dtype=np.int64)
    buf = np.frombuffer(b"".join(strings), dtype=np.uint8).astype(np.int64) - 48
    if buf.size == 0:
        return out
    string_end = np.cumsum(lens)  # one past each string's last char
    char_string = np.repeat(np.arange(len(strings)), lens)
    n = len(strings)

    def any_per_string(owner: np.ndarray, flags: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=flags, minlength=n) > 0

    bad = any_per_string(char_string, (buf < 0) | (buf > 63))
    last = (buf & 0x20) == 0  # the last char of a value
    nonempty = lens > 0
    bad[nonempty] |= ~last[string_end[nonempty] - 1]  # a string ends inside a value
    bad |= ~nonempty
    starts = np.flatnonzero(np.r_[True, last[:-1]])  # first char of each value
    value_of_char = np.cumsum(np.r_[0, last[:-1].astype(np.int64)])
    shift = 5 * (np.arange(buf.size) - starts[value_of_char])
    bad |= any_per_string(char_string, shift > 50)
    shift = np.minimum(shift, 50)
    x = np.add.reduceat((buf & 0x1F) << shift, starts)
    ends = np.flatnonzero(last)
    negative = (buf[ends] & 0x10) != 0
    x[negative] -= np.int64(1) << (shift[ends][negative] + 5)
    value_string = char_string[ends]
    first_value = np.searchsorted(value_string, np.arange(len(strings)))
    index = np.arange(len(x)) - first_value[value_string]
    # counts[i] = x[i] + counts[i - 2] for i > 2: one running sum per string and parity,
    # counts 0 (and the chain of even counts from 2 on) apart
    chain = value_string * 3 + np.where(index == 0, 0, 1 + index % 2)
    order = np.argsort(chain, kind="stable")
    sums = np.cumsum(x[order])
    chain_sorted = chain[order]
    chain_start = np.flatnonzero(np.r_[True, chain_sorted[1:] != chain_sorted[:-1]])
    before = np.repeat(np.r_[0, sums[chain_start[1:] - 1]], np.diff(np.r_[chain_start, len(x)]))
    counts = np.empty_like(x)
    counts[order] = sums - before
    bad |= any_per_string(value_string, counts < 0)
    totals = np.bincount(value_string, weights=counts, minlength=len(strings))
    return np.where(bad, -1, totals.astype(np.int64))


def _track_frames(
    segs: list,
    video: _Video,
    source: str,
    where: str,
    parse_frame: Callable[[Any, _Video, str, str], dict | None],
) -> tuple[list[dict | None], np.ndarray]:
    """Per-frame RLEs (F,) and their pixel areas (F,) int64 of one track."""
    if len(segs) != video.length:
        raise _error(
            source, where, f"'segmentations' has {len(segs)} frames, the video has {video.length}"
        )
    rles = [parse_frame(seg, video, source, f"{where}, frame {f}") for f, seg in enumerate(segs)]
    areas = np.zeros(len(rles), dtype=np.int64)
    present = [f for f, rle in enumerate(rles) if rle is not None]
    if present:
        counts = [rles[f]["counts"] for f in present]
        lengths = _rle_lengths([c.encode() if isinstance(c, str) else c for c in counts])
        pixels = video.height * video.width
        for f, length in zip(present, lengths.tolist(), strict=True):
            if length != pixels:
                described = "malformed counts" if length < 0 else f"counts for {length} pixels"
                raise _error(
                    source,
                    f"{where}, frame {f}",
                    f"RLE with {described}, but its size [{video.height}, {video.width}] has "
                    f"{pixels}",
                )
        try:
            areas[present] = _rle_areas([rles[f] for f in present])
        except Exception as e:  # pycocotools raises assorted types on malformed RLE
            raise _error(source, where, f"malformed RLE mask ({e})") from e
    return rles, areas


# pycocotools' area() builds an internal uint8 array from the number of masks it is given,
# which NumPy 2 refuses from 256 masks on (a track present in 256 frames or more)
_AREA_CHUNK = 255


def _rle_areas(rles: list[dict]) -> np.ndarray:
    """The pixel areas (N,) of compressed RLE masks, by pycocotools in chunks it can take."""
    chunks = [rles[i : i + _AREA_CHUNK] for i in range(0, len(rles), _AREA_CHUNK)]
    return np.concatenate([mask_utils.area(chunk) for chunk in chunks])


def _mean_nonzero(values: list | np.ndarray) -> float:
    """Mean of the truthy entries (neither null nor zero), 0.0 when there are none."""
    kept = [v for v in values if v]
    return float(np.array(kept).mean()) if kept else 0.0


def _parse_ground_truth(
    gt: dict, source: str, videos: dict[int, _Video], category_ids: set[int]
) -> dict[tuple[int, int], list[_Track]]:
    """Ground-truth tracks keyed by (video id, category id), in json order."""
    tracks: dict[tuple[int, int], list[_Track]] = defaultdict(list)
    seen: set[int] = set()
    for i, ann in enumerate(_get_list(gt, "annotations", source, "top level")):
        ann_id = _get_int(ann, "id", source, f"annotations[{i}]")
        where = f"annotations[{i}] (id {ann_id})"
        if ann_id in seen:
            raise _error(source, where, "duplicate annotation id")
        seen.add(ann_id)
        vid = _get_int(ann, "video_id", source, where)
        if vid not in videos:
            raise _error(source, where, f"video_id {vid} is not in 'videos'")
        cat = _get_int(ann, "category_id", source, where)
        if cat not in category_ids:
            raise _error(source, where, f"category_id {cat} is not in 'categories'")
        iscrowd = _get(ann, "iscrowd", source, where)
        if not isinstance(iscrowd, (bool, numbers.Integral)):
            raise _error(source, where, f"'iscrowd' must be 0 or 1, got {iscrowd!r}")
        areas = _get_list(ann, "areas", source, where)
        for f, a in enumerate(areas):
            if a is not None and not (_is_real(a) and math.isfinite(a)):
                raise _error(source, f"{where}, frame {f}", f"area must be a number or null: {a!r}")
        segs = _get_list(ann, "segmentations", source, where)
        rles, frame_areas = _track_frames(segs, videos[vid], source, where, _gt_frame)
        tracks[vid, cat].append(
            _Track(ann_id, rles, frame_areas, _mean_nonzero(areas), crowd=bool(iscrowd))
        )
    return tracks


def _parse_results(
    results: Any,
    source: str,
    videos: dict[int, _Video],
    category_ids: set[int],
    gt_source: str,
) -> dict[tuple[int, int], list[_Track]]:
    """Detection tracks keyed by (video id, category id), in input order."""
    if not isinstance(results, list):
        raise ValueError(f"{source}: expected a list of results, got {type(results).__name__}")
    tracks: dict[tuple[int, int], list[_Track]] = defaultdict(list)
    for i, res in enumerate(results):
        where = f"result {i}"
        vid = _get_int(res, "video_id", source, where)
        where = f"result {i} (video_id {vid})"
        if vid not in videos:
            raise _error(source, where, f"video_id {vid} is not a video of {gt_source}")
        cat = _get_int(res, "category_id", source, where)
        if cat not in category_ids:
            raise _error(source, where, f"category_id {cat} is not a category of {gt_source}")
        score = _get(res, "score", source, where)
        if not (_is_real(score) and math.isfinite(score)):
            raise _error(source, where, f"'score' must be a finite number, got {score!r}")
        segs = _get_list(res, "segmentations", source, where)
        rles, frame_areas = _track_frames(segs, videos[vid], source, where, _result_frame)
        tracks[vid, cat].append(
            _Track(i + 1, rles, frame_areas, _mean_nonzero(frame_areas), score=float(score))
        )
    return tracks


def _frame_intersections(
    d_rles: list[dict], g_rles: list[dict], d_areas: np.ndarray, g_areas: np.ndarray
) -> np.ndarray:
    """(len(d_rles), len(g_rles)) int64 exact pixel counts of pairwise intersections in one frame.

    pycocotools gives IoU = i / u with u = a_d + a_g - i, hence i = IoU (a_d + a_g) / (1 + IoU);
    the floating-point error of that expression is far below half a pixel, so rounding to the
    nearest integer recovers the exact count.
    """
    iou = np.asarray(mask_utils.iou(d_rles, g_rles, [0] * len(g_rles)), dtype=np.float64)
    iou = iou.reshape(len(d_rles), len(g_rles))
    total = (d_areas[:, None] + g_areas[None, :]).astype(np.float64)
    return np.rint(iou * total / (1.0 + iou)).astype(np.int64)


def _video_ious(dts: list[_Track], gts: list[_Track]) -> np.ndarray:
    """(D, G) video IoU: Σ_f |d_f ∩ g_f| / Σ_f |d_f ∪ g_f|, 0 where the union is empty."""
    inter = np.zeros((len(dts), len(gts)), dtype=np.int64)
    if not dts or not gts:
        return inter.astype(np.float64)
    for f in range(len(gts[0].rles)):
        d_idx = [k for k, t in enumerate(dts) if t.rles[f] is not None]
        g_idx = [k for k, t in enumerate(gts) if t.rles[f] is not None]
        if d_idx and g_idx:
            inter[np.ix_(d_idx, g_idx)] += _frame_intersections(
                [dts[k].rles[f] for k in d_idx],
                [gts[k].rles[f] for k in g_idx],
                np.array([dts[k].frame_areas[f] for k in d_idx]),
                np.array([gts[k].frame_areas[f] for k in g_idx]),
            )
    d_sum = np.array([t.frame_areas.sum() for t in dts])
    g_sum = np.array([t.frame_areas.sum() for t in gts])
    union = d_sum[:, None] + g_sum[None, :] - inter
    ious = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=ious, where=union > 0)
    return ious


def _match(
    ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray, gt_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching at all IoU thresholds at once.

    ious: (D, G), detections best first, ground truths non-ignored first. Each detection takes
    the still free (or crowd) ground truth of highest IoU >= the threshold, the later one on ties,
    and never an ignored one once a non-ignored one qualified.
    Returns matched (T, D) (to a ground truth whose id is not 0) and ignored (T, D) (matched to
    an ignored ground truth).
    """
    n_thr = len(IOU_THRESHOLDS)
    n_dt, n_gt = ious.shape
    taken = np.zeros((n_thr, n_gt), dtype=bool)
    matched = np.zeros((n_thr, n_dt), dtype=bool)
    ignored = np.zeros((n_thr, n_dt), dtype=bool)
    rows = np.arange(n_thr)
    for d in range(n_dt):
        best = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
        choice = np.full(n_thr, -1)
        for g in range(n_gt):
            settled = (choice >= 0) & ~gt_ignore[choice] & gt_ignore[g]
            take = ~settled & (~taken[:, g] | gt_crowd[g]) & (ious[d, g] >= best)
            best = np.where(take, ious[d, g], best)
            choice = np.where(take, g, choice)
        hit = choice >= 0
        taken[rows[hit], choice[hit]] = True
        ignored[hit, d] = gt_ignore[choice[hit]]
        matched[hit, d] = gt_ids[choice[hit]] != 0
    return matched, ignored


def _evaluate_video(
    ious: np.ndarray, dts: list[_Track], gts: list[_Track], lowest: float, highest: float
) -> _VideoEval:
    """Match one (video, category) within one area range; ``dts`` best first."""
    gt_area = np.array([g.mean_area for g in gts], dtype=np.float64)
    gt_crowd = np.array([g.crowd for g in gts], dtype=bool)
    gt_ignore = gt_crowd | (gt_area < lowest) | (gt_area > highest)
    order = np.argsort(gt_ignore, kind="stable")
    gt_ids = np.array([g.ident for g in gts], dtype=np.int64)
    matched, ignored = _match(ious[:, order], gt_ignore[order], gt_crowd[order], gt_ids[order])
    dt_area = np.array([d.mean_area for d in dts], dtype=np.float64)
    outside = (dt_area < lowest) | (dt_area > highest)
    ignored |= ~matched & outside[None, :]
    scores = np.array([d.score for d in dts], dtype=np.float64)
    return _VideoEval(scores, matched, ignored, int(np.count_nonzero(~gt_ignore)))


def _accumulate(entries: list[_VideoEval]) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, M) and recall (T, M) of one (category, area range) over its videos.

    ``entries`` come in video-id order; -1 throughout when there is no positive ground truth.
    """
    n_thr, n_rec, n_max = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(MAX_DETS)
    precision = -np.ones((n_thr, n_rec, n_max))
    recall = -np.ones((n_thr, n_max))
    n_positive = sum(e.n_positive for e in entries)
    if n_positive == 0:
        return precision, recall
    for m, max_det in enumerate(MAX_DETS):
        scores = np.concatenate([e.scores[:max_det] for e in entries])
        order = np.argsort(-scores, kind="stable")
        matched = np.concatenate([e.matched[:, :max_det] for e in entries], axis=1)[:, order]
        ignored = np.concatenate([e.ignored[:, :max_det] for e in entries], axis=1)[:, order]
        tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
        fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
        n_det = tp.shape[1]
        precision[:, :, m] = 0.0
        if n_det == 0:
            recall[:, m] = 0.0
            continue
        rc = tp / n_positive
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.flip(np.maximum.accumulate(np.flip(pr, axis=1), axis=1), axis=1)
        recall[:, m] = rc[:, -1]
        for t in range(n_thr):
            idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
            reached = idx < n_det
            precision[t, reached, m] = pr[t, idx[reached]]
    return precision, recall


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def _stat(precision: np.ndarray, recall: np.ndarray, name: str) -> float:
    is_ap, iou_thr, area_label, max_det = _STAT_SPECS[name]
    a = [label for label, _, _ in AREA_RANGES].index(area_label)
    m = MAX_DETS.index(max_det)
    values = precision[:, :, :, a, m] if is_ap else recall[:, :, a, m]
    if iou_thr is not None:
        values = values[np.where(IOU_THRESHOLDS == iou_thr)[0]]
    return _mean_defined(values)


def evaluate_ytvis(
    gt: dict,
    results: list[dict],
    *,
    gt_source: str = "ground truth",
    results_source: str = "results",
) -> YTVISEvalResult:
    """Score video instance segmentation results against YouTube-VIS ground truth.

    gt: a parsed YouTube-VIS (2019/2021/OVIS) json with ``videos``, ``annotations`` and
        ``categories``; every video and every category of it is evaluated.
    results: ``{video_id, category_id, score, segmentations}`` per predicted track, one compressed
        RLE or null per frame of the video.
    gt_source, results_source: names (usually file paths) used in error messages.
    Raises ValueError, naming the source and the item, on malformed input.
    """
    if not isinstance(gt, dict):
        raise ValueError(f"{gt_source}: expected an object at top level, got {type(gt).__name__}")
    videos = _parse_videos(gt, gt_source)
    categories = _parse_categories(gt, gt_source)
    category_ids = [cid for cid, _ in categories]
    gt_tracks = _parse_ground_truth(gt, gt_source, videos, set(category_ids))
    dt_tracks = _parse_results(results, results_source, videos, set(category_ids), gt_source)

    shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(categories), len(AREA_RANGES))
    precision = -np.ones((*shape, len(MAX_DETS)))
    recall = -np.ones((shape[0], *shape[2:], len(MAX_DETS)))
    video_ids = sorted(videos)
    for k, cat in enumerate(category_ids):
        per_area: list[list[_VideoEval]] = [[] for _ in AREA_RANGES]
        for vid in video_ids:
            gts = gt_tracks.get((vid, cat), [])
            dts = dt_tracks.get((vid, cat), [])
            if not gts and not dts:
                continue
            dts = sorted(dts, key=lambda t: -t.score)[: MAX_DETS[-1]]
            ious = _video_ious(dts, gts)
            for a, (_, lowest, highest) in enumerate(AREA_RANGES):
                per_area[a].append(_evaluate_video(ious, dts, gts, lowest, highest))
        for a, entries in enumerate(per_area):
            precision[:, :, k, a, :], recall[:, k, a, :] = _accumulate(entries)

    stats = {name: _stat(precision, recall, name) for name in STAT_NAMES}
    all_area = [label for label, _, _ in AREA_RANGES].index("all")
    per_category_ap = {
        name: _mean_defined(precision[:, :, k, all_area, MAX_DETS.index(100)])
        for k, (_, name) in enumerate(categories)
    }
    return YTVISEvalResult(stats=stats, per_category_ap=per_category_ap, precision=precision)
