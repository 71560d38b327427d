"""Online association of per-frame detections by instance embeddings, with MaskTrack R-CNN's
comprehensive matching score (Yang et al. 2019, Sec. 3.2, as used at test time by SipMask-VIS)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode
from detectron2.structures import Instances

from ..common import box_iou_with_offset
from .build import TRACKER_REGISTRY, Tracker

__all__ = ["EmbeddingTracker", "comprehensive_scores", "dummy_log_softmax", "greedy_assign"]


def dummy_log_softmax(dots: torch.Tensor) -> torch.Tensor:
    """(N, M) dot products x_i·m_n of detections with the M memory objects → (N, M + 1)
    log-softmax over n of [0, x_i·m_1, ..., x_i·m_M]; column 0 is the dummy "new object"."""
    dummy = dots.new_zeros(dots.shape[0], 1)
    return torch.log_softmax(torch.cat((dummy, dots), dim=1), dim=1)


def comprehensive_scores(
    dots: torch.Tensor,
    scores: torch.Tensor,
    ious: torch.Tensor,
    same_class: torch.Tensor,
    coeffs: Sequence[float] = (1.0, 2.0, 10.0),
) -> torch.Tensor:
    """MaskTrack R-CNN's comprehensive score v (N, M + 1) of N detections against M memory
    objects, column 0 being the dummy (new object):

        v_i(n) = log_softmax_n([0, x_i·m_1, ..., x_i·m_M]) + c0 log s_i
                 + c1 IoU(b_i, b_n) + c2 δ(c_i, c_n),

    with IoU 0 and δ = 1 for the dummy. ``dots`` (N, M) = x_i·m_n, ``scores`` (N,) = s_i,
    ``ious`` (N, M), ``same_class`` (N, M) bool = δ(c_i, c_n), ``coeffs`` = (c0, c1, c2).
    """
    c0, c1, c2 = (float(c) for c in coeffs)
    n = dots.shape[0]
    dots = dots.float()
    ious = torch.cat((ious.new_zeros(n, 1), ious), dim=1).float()
    same = torch.cat((same_class.new_ones(n, 1), same_class), dim=1).float()
    v = dummy_log_softmax(dots) + c1 * ious + c2 * same
    if c0 != 0:  # 0 * log(0) would be nan
        v = v + c0 * torch.log(scores.float())[:, None]
    return v


def greedy_assign(v: torch.Tensor) -> torch.Tensor:
    """One frame's association from its comprehensive scores v (N, M + 1), column 0 = dummy:
    the memory object index (0 ... M - 1) each detection takes, or -1 for a new object.

    The (detection, column) pairs are visited in descending v (ties: lower detection index,
    then lower column, first; nan counts as -inf). A pair whose detection is already decided
    is skipped; a dummy pair makes its detection a new object; an object pair assigns the
    object to the detection unless another detection of the frame took it (then it is
    skipped). Every detection reaches its dummy pair, so every detection is decided, and no
    object is taken twice.
    """
    num_dets, num_cols = v.shape
    result = torch.full((num_dets,), -1, dtype=torch.int64)
    if num_dets == 0 or num_cols == 1:
        return result
    flat = torch.nan_to_num(v.detach().float().cpu(), nan=float("-inf")).flatten()
    order = torch.sort(flat, descending=True, stable=True).indices.tolist()
    decided = [False] * num_dets
    taken = [False] * num_cols
    left = num_dets
    for k in order:
        i, col = divmod(k, num_cols)
        if decided[i] or taken[col]:
            continue
        decided[i] = True
        left -= 1
        if col:
            taken[col] = True
            result[i] = col - 1
        if not left:
            break
    return result


@TRACKER_REGISTRY.register()
class EmbeddingTracker(Tracker):
    """Assigns track ids to the detections of one video by their embeddings (MaskTrack
    R-CNN's tracking branch at test time, as in SipMask-VIS).

    The memory holds, for every object of the video not missed for more than
    ``forget_after`` frames (``MODEL.TRACKER.FORGET_AFTER``; 0: every object seen, as the
    authors' memory), its embedding, its box, its label and its track id (ids 0, 1, 2, ...
    per video, in order of appearance; a forgotten object's id is not given again). A frame's
    detections are scored against the memory with :func:`comprehensive_scores` (``coeffs`` =
    ``MODEL.TRACKER.MATCH_COEFFS``). A matched object's embedding and box are replaced by its
    detection's, its label is kept (as the authors do); new objects are appended with the next
    ids, in detection input order.

    Two defects of the authors' association are fixed:

    (a) There each detection takes its own argmax, so two detections of a frame can get the
        same track id (a later one with a higher v also takes an already assigned object),
        or a detection is dropped with id -1 (a later one with a lower v).
        Here the association is greedy over (detection, object) pairs (:func:`greedy_assign`):
        the pairs, the dummy "new object" included, are visited in descending v (ties: lower
        detection index, then lower object index, the dummy first); a pair is skipped if its
        detection is decided already or its object was taken by another detection of this
        frame, else the detection takes it. So each object is matched at most once per
        frame, and a detection whose best remaining option is the dummy, or whose objects
        were all taken, becomes a new object: no two detections of a frame share an id, and
        none is dropped.
    (b) There the memory is reset on a video's first frame only when that frame has
        detections, so a video that starts with an empty frame matches against the last
        video's objects. Here :meth:`reset` clears everything, and the models call it at
        every video start.

    Frames without detections return no ids; every object in memory counts them as missed.
    """

    def __init__(
        self,
        match_coeffs: Sequence[float] = (1.0, 2.0, 10.0),
        forget_after: int = 30,
        box_iou_offset: float = 0.0,
    ):
        if len(match_coeffs) != 3:
            raise ValueError(
                f"match_coeffs must be 3 weights (log score, IoU, same class), got {match_coeffs}"
            )
        if forget_after < 0:
            raise ValueError(f"forget_after must be >= 0 (0: never), got {forget_after}")
        self.match_coeffs = tuple(float(c) for c in match_coeffs)
        self.forget_after = forget_after
        self.box_iou_offset = float(box_iou_offset)
        self.reset()

    @classmethod
    def from_config(cls, cfg: CfgNode) -> EmbeddingTracker:
        tracker = cfg.MODEL.TRACKER
        return cls(
            match_coeffs=tracker.MATCH_COEFFS,
            forget_after=tracker.FORGET_AFTER,
            box_iou_offset=tracker.BOX_IOU_OFFSET,
        )

    def reset(self) -> None:
        """Start a new video: empty memory, and the next new id is 0."""
        self.embeddings: torch.Tensor | None = None  # (M, D) once an object was seen
        self.boxes = torch.zeros(0, 4)
        self.classes = torch.zeros(0, dtype=torch.int64)
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.missed = torch.zeros(0, dtype=torch.int64)  # frames since each object was matched
        self.next_id = 0

    def __len__(self) -> int:
        """M: the objects in memory."""
        return len(self.ids)

    def update(self, detections: Instances) -> torch.Tensor:
        """One frame: ``pred_boxes`` (N, 4) XYXY px, ``scores`` (N,), ``pred_classes`` (N,)
        and ``embeddings`` (N, D). Returns the track ids (N,) int64 on the detections'
        device."""
        if not detections.has("embeddings"):
            raise ValueError(
                "EmbeddingTracker needs the detections' field `embeddings` (N, D), which is "
                "missing: the model must output `embeddings` to use this tracker"
            )
        for name in ("pred_boxes", "scores", "pred_classes"):
            if not detections.has(name):
                raise ValueError(f"EmbeddingTracker needs the detections' field `{name}`")
        boxes = detections.pred_boxes.tensor
        device = boxes.device
        n = len(boxes)
        embeddings = detections.embeddings
        if embeddings.dim() != 2 or embeddings.shape[0] != n:
            raise ValueError(
                f"`embeddings` must be (N, D) with N = {n} detections, got "
                f"{tuple(embeddings.shape)}"
            )
        if n == 0:
            self._age(torch.zeros(len(self), dtype=torch.bool))
            return torch.zeros(0, dtype=torch.int64, device=device)
        boxes = boxes.detach().float().cpu()
        embeddings = embeddings.detach().float().cpu()
        scores = detections.scores.detach().float().cpu()
        classes = detections.pred_classes.detach().long().cpu()

        m = len(self)
        if m:
            if embeddings.shape[1] != self.embeddings.shape[1]:
                raise ValueError(
                    f"`embeddings` have D = {embeddings.shape[1]}, the tracked objects "
                    f"D = {self.embeddings.shape[1]}"
                )
            dots = embeddings @ self.embeddings.T
            ious = box_iou_with_offset(boxes, self.boxes, self.box_iou_offset)
            ious = torch.nan_to_num(ious, nan=0.0)
            same = classes[:, None] == self.classes[None]
            v = comprehensive_scores(dots, scores, ious, same, self.match_coeffs)
            match = greedy_assign(v)
        else:
            match = torch.full((n,), -1, dtype=torch.int64)

        matched = match >= 0
        ids = torch.empty(n, dtype=torch.int64)
        ids[matched] = self.ids[match[matched]]
        num_new = int((~matched).sum())
        ids[~matched] = torch.arange(self.next_id, self.next_id + num_new)
        self.next_id += num_new
        seen = torch.zeros(m, dtype=torch.bool)
        seen[match[matched]] = True
        if m:
            self.embeddings[match[matched]] = embeddings[matched]
            self.boxes[match[matched]] = boxes[matched]
            self.embeddings = torch.cat((self.embeddings, embeddings[~matched]))
        else:
            self.embeddings = embeddings.clone()
        self.boxes = torch.cat((self.boxes, boxes[~matched]))
        self.classes = torch.cat((self.classes, classes[~matched]))
        self.ids = torch.cat((self.ids, ids[~matched]))
        self.missed = torch.cat((self.missed, torch.zeros(num_new, dtype=torch.int64)))
        self._age(torch.cat((seen, torch.ones(num_new, dtype=torch.bool))))
        return ids.to(device)

    def _age(self, seen: torch.Tensor) -> None:
        """Count a frame: objects not ``seen`` (M,) in it were missed once more; forget those
        missed for more than ``forget_after`` frames."""
        self.missed = torch.where(seen, 0, self.missed + 1)
        if not self.forget_after:
            return
        keep = self.missed <= self.forget_after
        if bool(keep.all()):
            return
        self.ids, self.missed = self.ids[keep], self.missed[keep]
        self.boxes, self.classes = self.boxes[keep], self.classes[keep]
        self.embeddings = self.embeddings[keep]
