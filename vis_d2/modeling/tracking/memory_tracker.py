"""Online association with a memory of every object seen in the video, which the model
propagates to each new frame (STMask, Sec. 3.4: temporal fusion carries missed objects on).

Each frame the model first moves every memory entry to the new frame (:meth:`propagate`: new
boxes, mask coefficients and masks, e.g. by temporal fusion; the score decays), then
:meth:`update` matches the frame's detections against the propagated entries, and
:meth:`carried` lists the entries that were missed but are still shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode
from detectron2.structures import Boxes, Instances
from torchvision.ops import box_iou

from .build import TRACKER_REGISTRY, Tracker

__all__ = ["MemoryTracker", "assign_by_score", "mask_iou", "matching_scores"]

# the fields of a detection and of a memory entry; an optional one is kept when given
FIELDS = ("pred_boxes", "scores", "pred_classes", "embeddings", "coefficients", "mask_probs")
OPTIONAL_FIELDS = ("class_scores",)
# what the model shows each frame (see MemoryTracker)
OUTPUTS = ("detections", "memory")
# what a detection does whose best entry a higher-scoring one took (see assign_by_score)
CONFLICTS = ("next_option", "drop")
DROPPED = -2


def mask_iou(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, M) IoU of (N, H, W) and (M, H, W) mask probabilities binarised at ``threshold``
    (0 where both are empty)."""
    a = (a > threshold).flatten(1).float()
    b = (b > threshold).flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), 0.0)


def matching_scores(
    cosine: torch.Tensor,
    mask_ious: torch.Tensor,
    box_ious: torch.Tensor,
    scores: torch.Tensor,
    same_class: torch.Tensor,
    coeffs: Sequence[float] = (0.0, 1.0, 2.0, 0.0),
    dummy_iou: float = 0.3,
    dummy_same_class: bool = False,
) -> torch.Tensor:
    """STMask's matching score (N, M + 1) of N detections against M memory entries, column 0
    a dummy "new object": s = (cos + 1) / 2 + c1·mask IoU + c2·box IoU + c0·score + c3·same
    class, with ``coeffs`` = (c0, c1, c2, c3); the dummy has cos 0 and both IoUs
    ``dummy_iou`` (1.4 with the defaults), so a detection takes an entry only above it; with
    ``dummy_same_class`` the dummy also counts as of the same class (+ c3)."""
    c_score, c_mask, c_box, c_label = (float(c) for c in coeffs)
    n = len(cosine)
    s = (cosine + 1) / 2 + c_mask * mask_ious + c_box * box_ious + c_label * same_class.float()
    dummy_value = 0.5 + (c_mask + c_box) * dummy_iou + (c_label if dummy_same_class else 0.0)
    dummy = torch.full((n, 1), dummy_value, dtype=s.dtype)
    return torch.cat((dummy, s), dim=1) + c_score * scores[:, None].to(s.dtype)


def assign_by_score(
    v: torch.Tensor, scores: torch.Tensor, conflict: str = "next_option"
) -> torch.Tensor:
    """One frame's association from matching scores v (N, M + 1), column 0 the dummy: the
    detections in descending detection score (ties: input order) each take the best entry
    not taken yet whose score exceeds the dummy's, else a new id (−1). So a conflict goes to
    the higher-scoring detection, as in STMask; with ``conflict`` "next_option" the other
    takes its next option, with "drop" it is dropped (−2: no id, no entry) when its best
    option was taken."""
    if conflict not in CONFLICTS:
        raise ValueError(f"MODEL.TRACKER.MEMORY.CONFLICT {conflict!r} is not one of {CONFLICTS}")
    result = torch.full((len(v),), -1, dtype=torch.int64)
    if v.shape[1] == 1:
        return result
    free = torch.ones(v.shape[1] - 1, dtype=torch.bool)
    for i in torch.sort(scores.cpu(), descending=True, stable=True).indices.tolist():
        if conflict == "drop":
            best = int(v[i, 1:].argmax())
            if v[i, 1 + best] > v[i, 0]:
                result[i] = best if free[best] else DROPPED
                free[best] = False
            continue
        options = torch.where(free, v[i, 1:], float("-inf"))
        best = int(options.argmax())
        if options[best] > v[i, 0]:
            result[i] = best
            free[best] = False
    return result


@TRACKER_REGISTRY.register()
class MemoryTracker(Tracker):
    """A memory of every object seen in the video: its box, mask coefficients, mask, score,
    class, embedding and the frames it has been missed. Ids 0, 1, 2, ... per video.

    :meth:`update` reads the detections' ``pred_boxes`` (px of the network input), ``scores``,
    ``pred_classes``, ``embeddings`` (N, D) L2-normalised, ``coefficients`` (N, K) and
    ``mask_probs`` (N, H, W) (at one resolution for the whole video), and ``class_scores``
    (N, C) when given (kept with the entry and decayed with its score), and matches them to the
    propagated entries by :func:`matching_scores` and :func:`assign_by_score`: an entry is
    matched at most once a frame, the higher detection score wins a conflict and the other
    detection takes its next option or a new id (``conflict`` "next_option": no detection is
    lost and no two share an id), or is dropped ("drop", as the authors' code). A matched
    entry takes the detection's fields and its missed count is reset; every other detection
    not dropped becomes a new entry.

    :meth:`carried` returns the entries missed in this frame that are still shown: missed at
    most ``max_missed`` frames, score (decayed by ``score_decay`` per propagation) above
    ``min_score`` and a mask of more than one pixel. ``output`` says what the model shows:
    "detections", the frame's detections and :meth:`carried`; "memory", :meth:`carried` alone,
    which then holds every entry still shown, matched and new ones included (missed 0).
    ``dummy_same_class``: see :func:`matching_scores`; ``conflict``: see
    :func:`assign_by_score` (a dropped detection gets the id −1 and no entry).

    An entry missed for more than ``forget_after`` frames (``MODEL.TRACKER.FORGET_AFTER``)
    leaves the memory (its id is not given again), which bounds the memory by the objects of
    the last ``forget_after`` frames; 0 keeps every object seen in the video, as the authors'
    code does.
    """

    def __init__(
        self,
        match_coeffs: Sequence[float] = (0.0, 1.0, 2.0, 0.0),
        dummy_iou: float = 0.3,
        max_missed: int = 10,
        score_decay: float = 0.95,
        min_score: float = 0.05,
        forget_after: int = 30,
        output: str = "detections",
        dummy_same_class: bool = False,
        conflict: str = "next_option",
    ):
        if conflict not in CONFLICTS:
            raise ValueError(
                f"MODEL.TRACKER.MEMORY.CONFLICT {conflict!r} is not one of {CONFLICTS}"
            )
        if output not in OUTPUTS:
            raise ValueError(f"MODEL.TRACKER.MEMORY.OUTPUT {output!r} is not one of {OUTPUTS}")
        if forget_after < 0 or 0 < forget_after < max_missed:
            raise ValueError(
                f"forget_after must be 0 (never) or at least max_missed ({max_missed}), so that "
                f"no entry is forgotten while it is still shown; got {forget_after}"
            )
        if len(match_coeffs) != 4:
            raise ValueError(
                "match_coeffs must be 4 weights (score, mask IoU, box IoU, same class), got "
                f"{match_coeffs}"
            )
        self.match_coeffs = tuple(float(c) for c in match_coeffs)
        self.dummy_iou = dummy_iou
        self.max_missed = max_missed
        self.score_decay = score_decay
        self.min_score = min_score
        self.forget_after = forget_after
        self.output = output
        self.dummy_same_class = dummy_same_class
        self.conflict = conflict
        self.reset()

    @classmethod
    def from_config(cls, cfg: CfgNode) -> MemoryTracker:
        memory = cfg.MODEL.TRACKER.MEMORY
        return cls(
            match_coeffs=memory.MATCH_COEFFS,
            dummy_iou=memory.DUMMY_IOU,
            max_missed=memory.MAX_MISSED,
            score_decay=memory.SCORE_DECAY,
            min_score=memory.MIN_SCORE,
            forget_after=cfg.MODEL.TRACKER.FORGET_AFTER,
            output=memory.OUTPUT,
            dummy_same_class=memory.DUMMY_SAME_CLASS,
            conflict=memory.CONFLICT,
        )

    def reset(self) -> None:
        """Start a new video: an empty memory, and the next new id is 0."""
        self.memory: Instances | None = None
        self.missed = torch.zeros(0, dtype=torch.int64)
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.next_id = 0

    def __len__(self) -> int:
        return len(self.ids)

    def propagate(
        self, boxes: torch.Tensor, coefficients: torch.Tensor, mask_probs: torch.Tensor
    ) -> None:
        """Move every entry to the new frame: its ``boxes`` (M, 4), ``coefficients`` (M, K)
        and ``mask_probs`` (M, H, W) there; its score decays."""
        if self.memory is None:
            return
        if len(boxes) != len(self):
            raise ValueError(f"{len(boxes)} propagated entries for a memory of {len(self)}")
        self.memory.pred_boxes = Boxes(boxes.detach())
        self.memory.coefficients = coefficients.detach()
        self.memory.mask_probs = mask_probs.detach()
        self.memory.scores = self.memory.scores * self.score_decay
        if self.memory.has("class_scores"):
            self.memory.class_scores = self.memory.class_scores * self.score_decay

    def update(self, detections: Instances) -> torch.Tensor:
        missing = [f for f in FIELDS if not detections.has(f)]
        if missing:
            raise ValueError(f"MemoryTracker needs the detections' fields {missing}")
        n = len(detections)
        device = detections.scores.device
        fields = FIELDS + tuple(f for f in OPTIONAL_FIELDS if detections.has(f))
        if self.memory is None or len(self) == 0:
            match = torch.full((n,), -1, dtype=torch.int64)
        else:
            mem = self.memory
            v = matching_scores(
                (detections.embeddings @ mem.embeddings.T).cpu(),
                mask_iou(detections.mask_probs, mem.mask_probs).cpu(),
                box_iou(detections.pred_boxes.tensor, mem.pred_boxes.tensor).nan_to_num(0).cpu(),
                detections.scores.cpu(),
                (detections.pred_classes[:, None] == mem.pred_classes[None]).cpu(),
                self.match_coeffs,
                self.dummy_iou,
                self.dummy_same_class,
            )
            match = assign_by_score(v, detections.scores, self.conflict)
        self.missed = self.missed + 1
        matched = match >= 0
        ids = torch.empty(n, dtype=torch.int64)
        ids[matched] = self.ids[match[matched]]
        if bool(matched.any()):
            rows = match[matched].to(device)
            for name in fields:
                value = detections.get(name)[matched.to(device)]
                if name == "pred_boxes":
                    self.memory.pred_boxes.tensor[rows] = value.tensor
                else:
                    self.memory.get(name)[rows] = value
            self.missed[match[matched]] = 0
        new = match == -1
        ids[match == DROPPED] = -1
        num_new = int(new.sum())
        ids[new] = torch.arange(self.next_id, self.next_id + num_new)
        self.next_id += num_new
        if num_new:
            added = detections[new.to(device)]
            added = Instances(added.image_size, **{f: added.get(f) for f in fields})
            self.memory = added if self.memory is None else Instances.cat([self.memory, added])
            self.ids = torch.cat((self.ids, ids[new]))
            self.missed = torch.cat((self.missed, torch.zeros(num_new, dtype=torch.int64)))
        if self.forget_after:
            self._forget(self.missed <= self.forget_after)
        return ids.to(device)

    def _forget(self, keep: torch.Tensor) -> None:
        if bool(keep.all()):
            return
        self.memory = self.memory[keep.to(self.memory.scores.device)]
        self.ids, self.missed = self.ids[keep], self.missed[keep]

    def carried(self) -> tuple[Instances | None, torch.Tensor]:
        """The entries missed in this frame and still shown (with ``output`` "memory": every
        entry still shown), and their ids (None and no id before the first object)."""
        if self.memory is None:
            return None, torch.zeros(0, dtype=torch.int64)
        area = (self.memory.mask_probs > 0.5).flatten(1).sum(1).cpu()
        shown = (
            (self.missed >= (0 if self.output == "memory" else 1))
            & (self.missed <= self.max_missed)
            & (self.memory.scores.cpu() > self.min_score)
            & (area > 1)
        )
        return self.memory[shown.to(self.memory.scores.device)], self.ids[shown]
