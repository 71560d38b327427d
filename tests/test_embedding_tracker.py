"""EmbeddingTracker: MaskTrack R-CNN's comprehensive-score association (as in SipMask-VIS),
with unique ids per frame and a reset at every video."""

import math

import pytest
import torch
from detectron2.structures import Boxes, Instances

from vis_d2.config import get_cfg
from vis_d2.modeling.tracking import build_tracker
from vis_d2.modeling.tracking.embedding_tracker import (
    EmbeddingTracker,
    comprehensive_scores,
    dummy_log_softmax,
    greedy_assign,
)


def frame(boxes, scores, classes, embeddings, device="cpu"):
    dets = Instances((480, 640))
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
    dets.pred_boxes = Boxes(boxes.reshape(-1, 4))
    dets.scores = torch.as_tensor(scores, dtype=torch.float32, device=device)
    dets.pred_classes = torch.as_tensor(classes, dtype=torch.int64, device=device)
    dets.embeddings = torch.as_tensor(embeddings, dtype=torch.float32, device=device)
    return dets


def far_box(k):
    """Boxes far_box(0), far_box(1), ... pairwise IoU 0."""
    return [100.0 * k, 0.0, 100.0 * k + 50, 50.0]


# ---------------------------------------------------------------- the score


def test_spec_numbers():
    dots = torch.tensor([[2.0, 0.0]])
    ll = dummy_log_softmax(dots)
    torch.testing.assert_close(ll, torch.tensor([[-2.2395, -0.2395, -2.2395]]), atol=1e-4, rtol=0)
    v = comprehensive_scores(
        dots, torch.tensor([0.8]), torch.tensor([[0.5, 0.1]]), torch.tensor([[True, False]])
    )
    torch.testing.assert_close(v, torch.tensor([[7.5373, 10.5373, -2.2627]]), atol=1e-4, rtol=0)
    assert greedy_assign(v).tolist() == [0]  # object 1 of the memory (id 0)


def test_spec_numbers_through_the_tracker():
    tracker = EmbeddingTracker()
    # object 0: box IoU 0.5 with the detection below, same class; object 1: IoU 0.1, other class
    tracker.update(
        frame([[0, 0, 10, 20], [0, 0, 10, 100]], [0.9, 0.9], [3, 5], [[1.0, 0.0], [0.0, 1.0]])
    )
    dets = frame([[0, 0, 10, 10]], [0.8], [3], [[2.0, 0.0]])
    assert tracker.update(dets).tolist() == [0]
    # the same detection of another class: object 0 loses δ, and the dummy wins
    tracker.reset()
    tracker.update(
        frame([[0, 0, 10, 20], [0, 0, 10, 100]], [0.9, 0.9], [3, 5], [[1.0, 0.0], [0.0, 1.0]])
    )
    dets.pred_classes = torch.tensor([4])
    assert tracker.update(dets).tolist() == [2]


def test_coefficients_weight_the_terms():
    dots = torch.tensor([[1.0, -1.0]])
    scores = torch.tensor([0.5])
    ious = torch.tensor([[0.2, 0.7]])
    same = torch.tensor([[False, True]])
    ll = dummy_log_softmax(dots)
    v = comprehensive_scores(dots, scores, ious, same, (0.5, 3.0, 4.0))
    expected = ll + 0.5 * math.log(0.5) + 3.0 * torch.tensor([[0, 0.2, 0.7]])
    expected += 4.0 * torch.tensor([[1.0, 0.0, 1.0]])
    torch.testing.assert_close(v, expected)
    # c0 = 0 with a zero score: no nan
    v = comprehensive_scores(dots, torch.tensor([0.0]), ious, same, (0.0, 2.0, 10.0))
    assert torch.isfinite(v).all()


# ---------------------------------------------------------------- the assignment


def reference_assign(v):
    """The greedy rule as repeated selection: the highest v over undecided detections and
    columns still free (the dummy always is), ties to the lower detection, then column."""
    n, cols = v.shape
    result, decided, taken = [-1] * n, set(), set()
    while len(decided) < n:
        best = None
        for i in range(n):
            for c in range(cols):
                if i in decided or (c and c in taken):
                    continue
                if best is None or float(v[i, c]) > float(v[best[0], best[1]]):
                    best = (i, c)
        i, c = best
        decided.add(i)
        if c:
            taken.add(c)
            result[i] = c - 1
    return result


@pytest.mark.parametrize("seed", range(20))
def test_greedy_assign_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    n, m = int(torch.randint(1, 7, (1,), generator=generator)), seed % 5
    v = torch.randn(n, m + 1, generator=generator)
    if seed % 3 == 0:  # ties
        v = v.round()
    result = greedy_assign(v)
    assert result.tolist() == reference_assign(v)
    assigned = result[result >= 0].tolist()
    assert len(assigned) == len(set(assigned))


def test_greedy_assign_conflict():
    # both detections prefer object 0; detection 1 has the higher v there and takes it
    v = torch.tensor([[0.0, 5.0, 3.0], [0.0, 6.0, 1.0]])
    assert greedy_assign(v).tolist() == [1, 0]
    v = torch.tensor([[4.0, 5.0, 3.0], [0.0, 6.0, 1.0]])  # next option: the dummy
    assert greedy_assign(v).tolist() == [-1, 0]
    v = torch.tensor([[0.0, 5.0], [0.0, 6.0], [1.0, 7.0]])  # one object, three takers
    assert greedy_assign(v).tolist() == [-1, -1, 0]


# ---------------------------------------------------------------- the tracker


def test_first_frame_all_new_in_input_order():
    tracker = EmbeddingTracker()
    ids = tracker.update(
        frame([far_box(k) for k in range(3)], [0.2, 0.9, 0.5], [0, 1, 0], [[1.0]] * 3)
    )
    assert ids.dtype == torch.int64 and ids.tolist() == [0, 1, 2]


def test_matching_across_frames_by_embedding():
    tracker = EmbeddingTracker()
    protos = 5 * torch.eye(3)
    boxes = [far_box(k) for k in range(3)]
    assert tracker.update(frame(boxes, [0.9] * 3, [0] * 3, protos.tolist())).tolist() == [0, 1, 2]
    # next frame: permuted, noisy embeddings, boxes moved away (IoU 0 with every object)
    generator = torch.Generator().manual_seed(0)
    perm = [2, 0, 1]
    noisy = protos[perm] + 0.3 * torch.randn(3, 3, generator=generator)
    moved = [far_box(k + 10) for k in range(3)]
    assert tracker.update(frame(moved, [0.8] * 3, [0] * 3, noisy.tolist())).tolist() == perm
    # a detection unlike every object becomes new; the others keep their ids
    embeddings = torch.cat((protos[[1]], -protos.sum(0, keepdim=True)))
    ids = tracker.update(frame(moved[:2], [0.9, 0.9], [0, 0], embeddings.tolist()))
    assert ids.tolist() == [1, 3]


def test_box_iou_breaks_an_embedding_tie():
    tracker = EmbeddingTracker()
    tracker.update(frame([far_box(0), far_box(1)], [0.9, 0.9], [0, 0], [[1.0], [1.0]]))
    # equal embeddings: the detection overlapping object 1 takes it
    shifted = [105.0, 0.0, 155.0, 50.0]
    assert tracker.update(frame([shifted], [0.9], [0], [[1.0]])).tolist() == [1]


def test_conflicting_detections():
    memory = frame([far_box(0), far_box(1)], [0.9, 0.9], [0, 0], [[4.0, 0.0], [0.0, 4.0]])
    boxes = [far_box(5), far_box(6)]
    # both prefer object 0 (id 0); the second (higher score) wins it though it comes later,
    # and the first takes its next option, object 1
    tracker = EmbeddingTracker()
    tracker.update(memory)
    ids = tracker.update(frame(boxes, [0.5, 0.9], [0, 0], [[3.0, 1.0], [4.0, 0.0]]))
    assert ids.tolist() == [1, 0]
    # the first's next option is the dummy: it becomes a new object
    tracker = EmbeddingTracker()
    tracker.update(memory)
    ids = tracker.update(frame(boxes, [0.5, 0.9], [0, 0], [[3.0, -3.0], [4.0, 0.0]]))
    assert ids.tolist() == [2, 0]
    # more detections than objects, all preferring object 0
    tracker = EmbeddingTracker()
    tracker.update(memory)
    dets = frame(boxes + [far_box(7)], [0.5, 0.9, 0.7], [0] * 3, [[4.0, 0.5]] * 3)
    ids = tracker.update(dets)
    assert ids.tolist() == [2, 0, 1]  # object 1 goes to the better of the other two


def test_matched_object_is_updated_except_its_label():
    tracker = EmbeddingTracker()
    tracker.update(frame([far_box(0), far_box(1)], [0.9, 0.9], [1, 2], [[4.0, 0.0], [0.0, 4.0]]))
    # object 0 is matched by a detection of class 2: its embedding and box are replaced
    assert tracker.update(frame([far_box(3)], [0.9], [2], [[4.0, 0.5]])).tolist() == [0]
    torch.testing.assert_close(tracker.embeddings[0], torch.tensor([4.0, 0.5]))
    torch.testing.assert_close(tracker.boxes[0], torch.tensor(far_box(3)))
    # its label is still 1: a class-1 detection equally like both objects takes object 0
    # (had the label become 2, the dummy would win and the detection would get id 2)
    assert tracker.update(frame([far_box(9)], [0.9], [1], [[2.0, 2.25]])).tolist() == [0]


def test_reset_even_before_an_empty_first_frame():
    tracker = EmbeddingTracker()
    dets = frame([far_box(k) for k in range(3)], [0.9] * 3, [0] * 3, (5 * torch.eye(3)).tolist())
    assert tracker.update(dets).tolist() == [0, 1, 2]
    assert tracker.update(dets[[2]]).tolist() == [2]  # same video: matched
    tracker.reset()
    empty = tracker.update(dets[[]])
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert tracker.update(dets[[2]]).tolist() == [0]


def test_empty_frame_leaves_memory_unchanged():
    tracker = EmbeddingTracker()
    dets = frame([far_box(0), far_box(1)], [0.9, 0.9], [0, 0], [[4.0, 0.0], [0.0, 4.0]])
    tracker.update(dets)
    assert tracker.update(dets[[]]).tolist() == []
    assert len(tracker) == 2 and tracker.missed.tolist() == [1, 1]
    assert tracker.update(
        frame([far_box(4)] * 2, [0.9] * 2, [0] * 2, [[0, 4.0], [-4.0, -4.0]])
    ).tolist() == [1, 2]


def test_missing_embeddings():
    tracker = EmbeddingTracker()
    dets = frame([far_box(0)], [0.9], [0], [[1.0]])
    dets.remove("embeddings")
    with pytest.raises(ValueError, match="must output `embeddings`"):
        tracker.update(dets)
    dets.embeddings = torch.ones(1)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        tracker.update(dets)


def test_build_from_config():
    cfg = get_cfg()
    cfg.MODEL.TRACKER.NAME = "EmbeddingTracker"
    tracker = build_tracker(cfg)
    assert isinstance(tracker, EmbeddingTracker) and tracker.match_coeffs == (1.0, 2.0, 10.0)
    cfg.MODEL.TRACKER.MATCH_COEFFS = (1.0, 2.0, 20.0)
    custom = build_tracker(cfg)
    assert isinstance(custom, EmbeddingTracker) and custom.match_coeffs == (1.0, 2.0, 20.0)
    # a detection like object 0 but of another class: matched (v 0 > dummy -6) with the
    # default weights, new (dummy 4 > 0) with c2 = 20
    first = frame([far_box(0)], [1.0], [0], [[4.0]])
    second = frame([far_box(1)], [1.0], [1], [[4.0]])
    for t in (tracker, custom):
        t.update(first)
    assert tracker.update(second).tolist() == [0]
    assert custom.update(second).tolist() == [1]


@pytest.mark.parametrize("seed", range(50))
def test_random_sequences_give_unique_ids(seed):
    generator = torch.Generator().manual_seed(seed)

    def randint(low, high):
        return int(torch.randint(low, high, (1,), generator=generator))

    tracker = EmbeddingTracker(match_coeffs=[(1.0, 2.0, 10.0), (0.5, 5.0, 1.0)][seed % 2])
    protos = 3 * torch.randn(4, 6, generator=generator)  # few prototypes: many conflicts
    seen = 0
    for _ in range(randint(1, 10)):
        if randint(0, 6) == 0:
            tracker.reset()
            seen = 0
        n = randint(0, 7)
        embeddings = protos[torch.randint(0, 4, (n,), generator=generator)]
        embeddings = embeddings + torch.randn(n, 6, generator=generator)
        xy = (
            torch.randint(0, 3, (n, 2), generator=generator) * 30.0
            + torch.rand(n, 2, generator=generator) * 10
        )
        boxes = torch.cat((xy, xy + 40), dim=1)
        scores = torch.rand(n, generator=generator) * 0.95 + 0.05
        classes = torch.randint(0, 3, (n,), generator=generator)
        dets = frame(boxes, scores, classes, embeddings)
        ids = tracker.update(dets)
        assert ids.dtype == torch.int64 and ids.shape == (n,)
        assert (ids >= 0).all()
        assert len(set(ids.tolist())) == n
        new = ids[ids >= seen]
        assert new.tolist() == list(range(seen, seen + len(new)))  # next ids, input order
        seen += len(new)
        assert tracker.next_id == seen
