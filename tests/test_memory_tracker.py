"""The memory tracker (STMask's association and propagation bookkeeping)."""

import pytest
import torch
from detectron2.structures import Boxes, Instances

from vis_d2.config import get_cfg
from vis_d2.modeling.tracking import MemoryTracker, build_tracker
from vis_d2.modeling.tracking.memory_tracker import assign_by_score, mask_iou, matching_scores

H = W = 8


def _masks(*rects):
    out = torch.zeros(len(rects), H, W)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        out[i, y0:y1, x0:x1] = 0.9
    return out


def _detections(boxes, scores, embeddings, rects, classes=None, coefficients=None):
    n = len(boxes)
    return Instances(
        (64, 64),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        scores=torch.tensor(scores, dtype=torch.float32),
        pred_classes=torch.tensor(classes or [0] * n),
        embeddings=torch.nn.functional.normalize(
            torch.tensor(embeddings, dtype=torch.float32).reshape(n, 2), dim=1
        ),
        coefficients=torch.zeros(n, 3) if coefficients is None else coefficients,
        mask_probs=_masks(*rects) if n else torch.zeros(0, H, W),
    )


def test_matching_score_spec_values():
    v = matching_scores(
        torch.tensor([[0.9, -0.2]]),
        torch.tensor([[0.6, 0.0]]),
        torch.tensor([[0.7, 0.1]]),
        torch.tensor([0.8]),
        torch.tensor([[True, False]]),
    )
    assert torch.allclose(v, torch.tensor([[1.4, 2.95, 0.6]]))
    assert assign_by_score(v, torch.tensor([0.8])).tolist() == [0]  # entry 1 (column 1)
    low = matching_scores(torch.tensor([[0.5, 0.4]]), torch.zeros(1, 2), torch.zeros(1, 2),
                          torch.tensor([0.8]), torch.zeros(1, 2, dtype=torch.bool))  # fmt: skip
    assert (low[0, 1:] <= 1.4).all() and assign_by_score(low, torch.tensor([0.8])).tolist() == [-1]


def test_a_conflict_goes_to_the_higher_detection_score_and_the_other_is_not_lost():
    v = torch.tensor([[1.4, 3.0, 2.0], [1.4, 2.5, 1.0]])
    # detection 1 has the higher score: it takes entry 0 although detection 0 matches it better
    assert assign_by_score(v, torch.tensor([0.5, 0.9])).tolist() == [1, 0]
    assert assign_by_score(v, torch.tensor([0.9, 0.5])).tolist() == [0, -1]  # 1.0 < 1.4: new


def test_mask_iou_of_binarised_masks():
    a = _masks((0, 2, 0, 2), (0, 0, 0, 0))
    b = _masks((0, 2, 1, 3))
    assert torch.allclose(mask_iou(a, b), torch.tensor([[2 / 6], [0.0]]))


def test_tracks_missed_entries_decay_and_disappear():
    tracker = MemoryTracker(max_missed=10, score_decay=0.95, min_score=0.05)
    first = _detections([[0, 0, 16, 16], [40, 40, 60, 60]], [0.9, 0.06], [[1, 0], [0, 1]],
                        [(0, 2, 0, 2), (5, 8, 5, 8)])  # fmt: skip
    assert tracker.update(first).tolist() == [0, 1]
    carried, ids = tracker.carried()
    assert len(carried) == 0
    # the next frames show only object 0; object 1 is propagated unchanged and decays
    for k in range(1, 13):
        tracker.propagate(tracker.memory.pred_boxes.tensor, tracker.memory.coefficients,
                          tracker.memory.mask_probs)  # fmt: skip
        seen = _detections([[0, 0, 16, 16]], [0.9], [[1, 0]], [(0, 2, 0, 2)])
        assert tracker.update(seen).tolist() == [0]
        carried, ids = tracker.carried()
        score = 0.06 * 0.95**k  # above 0.05 until k = 4
        if score > 0.05:
            assert ids.tolist() == [1] and carried.scores.item() == pytest.approx(score)
        else:
            assert ids.tolist() == []
    assert tracker.missed.tolist() == [0, 12]
    tracker.reset()
    assert len(tracker) == 0 and tracker.update(seen).tolist() == [0]


def test_carried_until_max_missed():
    tracker = MemoryTracker(max_missed=2, score_decay=1.0)
    tracker.update(_detections([[0, 0, 16, 16]], [0.9], [[1, 0]], [(0, 2, 0, 2)]))
    shown = []
    for _ in range(4):
        tracker.propagate(tracker.memory.pred_boxes.tensor, tracker.memory.coefficients,
                          tracker.memory.mask_probs)  # fmt: skip
        tracker.update(_detections([], [], [], []))
        shown.append(tracker.carried()[1].tolist())
    assert shown == [[0], [0], [], []]


def test_matched_entries_take_the_detection_and_every_other_detection_starts_a_track():
    tracker = MemoryTracker()
    tracker.update(_detections([[0, 0, 16, 16]], [0.9], [[1, 0]], [(0, 2, 0, 2)]))
    moved = _detections([[2, 0, 18, 16], [40, 40, 50, 50]], [0.8, 0.0], [[1, 0.1], [0, 1]],
                        [(0, 2, 0, 3), (6, 8, 6, 8)], coefficients=torch.ones(2, 3))  # fmt: skip
    assert tracker.update(moved).tolist() == [0, 1]  # a zero score too: no -1 leaks out
    assert tracker.memory.pred_boxes.tensor.tolist() == [[2.0, 0.0, 18.0, 16.0], [40, 40, 50, 50]]
    assert tracker.memory.scores.tolist() == [pytest.approx(0.8), 0.0] and len(tracker) == 2
    assert (tracker.memory.coefficients == 1).all()


def test_registry_config_and_bad_inputs():
    cfg = get_cfg()
    cfg.MODEL.TRACKER.NAME = "MemoryTracker"
    cfg.MODEL.TRACKER.MEMORY.MAX_MISSED = 3
    tracker = build_tracker(cfg)
    assert isinstance(tracker, MemoryTracker) and tracker.max_missed == 3
    with pytest.raises(ValueError, match="4 weights"):
        MemoryTracker(match_coeffs=(1.0, 2.0))
    bare = Instances((8, 8), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0))
    with pytest.raises(ValueError, match="embeddings"):
        tracker.update(bare)
    tracker.update(_detections([[0, 0, 16, 16]], [0.9], [[1, 0]], [(0, 2, 0, 2)]))
    with pytest.raises(ValueError, match="2 propagated entries for a memory of 1"):
        tracker.propagate(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, H, W))


def test_the_memory_is_bounded_by_forget_after():
    def frame(t):
        # a new object every frame: its box and mask overlap no earlier one
        box = [[10.0 * t, 0, 10.0 * t + 5, 5]]
        return _detections(box, [0.9], [[1, 0]], [(t // 8, t // 8 + 1, t % 8, t % 8 + 1)])

    sizes = {}
    for forget_after in (0, 10):
        tracker = MemoryTracker(max_missed=10, forget_after=forget_after)
        sizes[forget_after] = []
        for t in range(50):
            if len(tracker):
                tracker.propagate(tracker.memory.pred_boxes.tensor, tracker.memory.coefficients,
                                  tracker.memory.mask_probs)  # fmt: skip
            assert tracker.update(frame(t)).tolist() == [t]  # ids are never given again
            assert len(tracker.memory) == len(tracker.ids) == len(tracker.missed)
            sizes[forget_after].append(len(tracker))
    # the authors' memory keeps every object of the video; the bounded one the last 11 frames'
    assert sizes[0] == list(range(1, 51))
    assert sizes[10] == list(range(1, 12)) + [11] * 39
    assert tracker.ids.tolist() == list(range(39, 50))
    assert tracker.missed.tolist() == list(range(10, -1, -1))
    # an entry still shown (missed <= max_missed) is never forgotten
    with pytest.raises(ValueError, match="forget_after must be 0 .never. or at least max_missed"):
        MemoryTracker(max_missed=10, forget_after=5)
    cfg = get_cfg()
    cfg.MODEL.TRACKER.NAME = "MemoryTracker"
    assert build_tracker(cfg).forget_after == 30
    cfg.MODEL.TRACKER.FORGET_AFTER = 0
    assert build_tracker(cfg).forget_after == 0


def test_the_new_object_column_can_take_the_same_class_term():
    """MODEL.TRACKER.MEMORY.DUMMY_SAME_CLASS (the authors' code: label 1 in the dummy column):
    with coefficients (0, 1, 2, 1) the dummy is 0.5 + 0.3 + 2·0.3 + 1 = 2.4, not 1.4."""
    args = (torch.tensor([[0.2]]), torch.tensor([[0.5]]), torch.tensor([[0.5]]),
            torch.tensor([0.8]), torch.tensor([[True]]), (0.0, 1.0, 2.0, 1.0))  # fmt: skip
    plain, same = matching_scores(*args), matching_scores(*args, dummy_same_class=True)
    assert torch.allclose(plain, torch.tensor([[1.4, 3.1]]))
    assert torch.allclose(same, torch.tensor([[2.4, 3.1]]))


def test_a_detection_that_loses_its_entry_can_be_dropped():
    """MODEL.TRACKER.MEMORY.CONFLICT drop (the authors' code): the lower-scoring detection
    whose best entry was taken gets no id and no entry."""
    v = torch.tensor([[1.4, 3.0, 2.0], [1.4, 2.5, 1.0], [1.4, 1.0, 1.0]])
    scores = torch.tensor([0.5, 0.9, 0.3])
    assert assign_by_score(v, scores).tolist() == [1, 0, -1]
    assert assign_by_score(v, scores, "drop").tolist() == [-2, 0, -1]
    tracker = MemoryTracker(conflict="drop", output="memory")
    first = _detections([[0, 0, 8, 8], [30, 30, 40, 40]], [0.9, 0.8], [[1, 0], [0, 1]],
                        [(0, 2, 0, 2), (4, 6, 4, 6)])  # fmt: skip
    assert tracker.update(first).tolist() == [0, 1]
    # both detections match entry 0 best: the higher score keeps it, the other is dropped
    second = _detections([[0, 0, 8, 8], [0, 0, 8, 8]], [0.7, 0.6], [[1, 0], [1, 0]],
                         [(0, 2, 0, 2), (0, 2, 0, 2)])  # fmt: skip
    assert tracker.update(second).tolist() == [0, -1]
    assert len(tracker) == 2
    # the "memory" output shows the matched entry (missed 0) and the missed one
    shown, ids = tracker.carried()
    assert ids.tolist() == [0, 1] and torch.allclose(shown.scores, torch.tensor([0.7, 0.8]))
    with pytest.raises(ValueError, match="MODEL.TRACKER.MEMORY.CONFLICT"):
        MemoryTracker(conflict="first")
    with pytest.raises(ValueError, match="MODEL.TRACKER.MEMORY.OUTPUT"):
        MemoryTracker(output="all")
