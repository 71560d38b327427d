"""YOLACT's class-wise Fast NMS (vis_d2.layers.fast_nms)."""

import pytest
import torch
from torchvision.ops import batched_nms, box_iou, nms

from vis_d2.layers.fast_nms import fast_nms


def reference_fast_nms(boxes, scores, groups, iou_threshold, top_k=200):
    """Literal O(N^2) Fast NMS: per group, rank by score (ties by index), keep the top_k,
    suppress a box if any higher-ranked box of its group (suppressed or not) overlaps it."""
    n = len(boxes)
    iou = box_iou(boxes, boxes)
    kept = []
    for group in sorted(set(groups.tolist())):
        members = [i for i in range(n) if int(groups[i]) == group]
        members.sort(key=lambda i: (-float(scores[i]), i))
        members = members[:top_k]
        for rank, j in enumerate(members):
            if all(float(iou[i, j]) <= iou_threshold for i in members[:rank]):
                kept.append(j)
    kept.sort(key=lambda i: (-float(scores[i]), i))
    return kept


def random_boxes(generator, n, size=100.0):
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 3 + 1
    return torch.cat((xy, xy + wh), dim=1)


def clustered_boxes(generator, n):
    """Boxes jittered around n // 10 + 1 random ones: many overlaps and chains of them."""
    base = random_boxes(generator, n // 10 + 1)
    cluster = torch.randint(0, len(base), (n,), generator=generator)
    boxes = base[cluster] + torch.randn(n, 4, generator=generator) * 5
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    return boxes


def chain(a_c_disjoint: bool):
    """Boxes A > B > C with B overlapping A and C above the threshold, A and C not."""
    if a_c_disjoint:  # A and C inside B: IoU(A, B) = IoU(B, C) = 0.45, IoU(A, C) = 0
        boxes = torch.tensor([[0.0, 0, 9, 10], [0, 0, 20, 10], [11, 0, 20, 10]])
        expected = [[1.0, 0.45, 0.0], [0.45, 1.0, 0.45], [0.0, 0.45, 1.0]]
        threshold = 0.4
    else:  # IoU(A, B) = IoU(B, C) = 0.6, IoU(A, C) = 1 / 3
        boxes = torch.tensor([[0.0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]])
        expected = [[1.0, 0.6, 1 / 3], [0.6, 1.0, 0.6], [1 / 3, 0.6, 1.0]]
        threshold = 0.5
    torch.testing.assert_close(box_iou(boxes, boxes), torch.tensor(expected))
    return boxes, torch.tensor([0.9, 0.8, 0.7]), threshold


@pytest.mark.parametrize("a_c_disjoint", [False, True])
def test_suppressed_box_still_suppresses(a_c_disjoint):
    # IoU(A, B) = IoU(B, C) = 0.6 with IoU(A, C) = 0 cannot happen (B would need more than
    # its own area inside A and C), so the chain has IoU(A, C) = 1/3, or is rescaled
    boxes, scores, threshold = chain(a_c_disjoint)
    assert sorted(nms(boxes, scores, threshold).tolist()) == [0, 2]
    assert fast_nms(boxes, scores, torch.zeros(3, dtype=torch.int64), threshold).tolist() == [0]


def test_input_order_does_not_matter():
    boxes, scores, threshold = chain(False)
    perm = torch.tensor([2, 0, 1])
    kept = fast_nms(boxes[perm], scores[perm], torch.zeros(3, dtype=torch.int64), threshold)
    assert kept.tolist() == [1]  # A


def test_threshold_is_strict():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20]])  # IoU 0.5 exactly
    scores, groups = torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64)
    assert fast_nms(boxes, scores, groups, 0.5).tolist() == [0, 1]
    assert fast_nms(boxes, scores, groups, 0.49).tolist() == [0]


def test_groups_never_suppress_each_other():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3 + [[0.0, 0, 10, 10.5]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    groups = torch.tensor([0, 1, 2, 0])
    assert fast_nms(boxes, scores, groups, 0.5).tolist() == [0, 1, 2]
    assert fast_nms(boxes, scores, torch.zeros(4, dtype=torch.int64), 0.5).tolist() == [0]


def test_top_k_per_group():
    # disjoint boxes, nothing suppressed: only the top_k of each group are kept
    boxes = torch.tensor([[20.0 * i, 0, 20 * i + 10, 10] for i in range(7)])
    scores = torch.tensor([0.1, 0.9, 0.5, 0.8, 0.3, 0.7, 0.6])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    assert fast_nms(boxes, scores, groups, 0.5, top_k=2).tolist() == [1, 3, 5, 6]
    assert fast_nms(boxes, scores, groups, 0.5, top_k=1).tolist() == [1, 5]
    assert fast_nms(boxes, scores, groups, 0.5).tolist() == [1, 3, 5, 6, 2, 4, 0]


def test_dropped_box_suppresses_nothing():
    # C is beyond top_k, so B (which only C, ranked below it, overlaps) is not suppressed,
    # and C, though overlapping B, is not kept either
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 0, 60, 10], [50, 0, 60, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    groups = torch.zeros(3, dtype=torch.int64)
    assert fast_nms(boxes, scores, groups, 0.5, top_k=2).tolist() == [0, 1]
    # the box ranked above a suppressed one is not suppressed by it
    boxes[1] = boxes[0]
    assert fast_nms(boxes, scores, groups, 0.5, top_k=2).tolist() == [0]


def test_empty_input():
    kept = fast_nms(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5, top_k=3
    )
    assert kept.dtype == torch.int64 and kept.shape == (0,)


def test_bad_inputs():
    with pytest.raises(ValueError, match="top_k"):
        fast_nms(torch.zeros(1, 4), torch.zeros(1), torch.zeros(1, dtype=torch.int64), 0.5, 0)
    with pytest.raises(ValueError, match="scores and groups"):
        fast_nms(torch.zeros(2, 4), torch.zeros(1), torch.zeros(2, dtype=torch.int64), 0.5)


@pytest.mark.parametrize("seed", range(8))
def test_matches_loop_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    n = [1, 2, 30, 150, 300, 120, 500, 250][seed]
    boxes = clustered_boxes(generator, n)
    scores = torch.rand(n, generator=generator)
    if seed % 2:  # tied scores
        scores = (scores * 10).round() / 10
    groups = torch.randint(0, 1 + seed % 3, (n,), generator=generator)
    threshold = [0.5, 0.3, 0.4][seed % 3]
    top_k = [200, 50, 20, 100][seed % 4]
    kept = fast_nms(boxes, scores, groups, threshold, top_k=top_k)
    assert kept.tolist() == reference_fast_nms(boxes, scores, groups, threshold, top_k)
    # a box Fast NMS keeps has no higher-ranked overlapping box, so standard NMS keeps it too
    standard = set(batched_nms(boxes, scores, groups, threshold).tolist())
    assert set(kept.tolist()) <= standard
    if n >= 30:  # and it is not standard NMS: without top_k it keeps fewer here
        assert len(fast_nms(boxes, scores, groups, threshold, top_k=n)) < len(standard)


@pytest.mark.parametrize("seed", range(5))
def test_equals_standard_nms_without_chains(seed):
    # pairs of boxes in separate cells: each box overlaps at most one other, where the
    # suppression of suppressed boxes never matters
    generator = torch.Generator().manual_seed(100 + seed)
    cells = 40
    xy = torch.rand(cells, 2, generator=generator) * 50
    first = torch.cat((xy, xy + 10 + torch.rand(cells, 2, generator=generator) * 20), dim=1)
    second = first + (torch.rand(cells, 4, generator=generator) - 0.5) * 10
    second[:, 2:] = torch.maximum(second[:, 2:], second[:, :2] + 1)
    offset = (torch.arange(cells, dtype=torch.float32) * 100).repeat_interleave(2)
    boxes = torch.stack((first, second), dim=1).reshape(-1, 4)
    boxes[:, 0::2] += offset[:, None]
    scores = torch.rand(2 * cells, generator=generator)
    groups = torch.randint(0, 2, (2 * cells,), generator=generator)
    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    threshold = 0.5
    assert ((iou > threshold).sum(dim=1) <= 1).all()
    assert ((iou > threshold) & (groups[:, None] == groups[None])).sum() >= 4  # suppression
    kept = fast_nms(boxes, scores, groups, threshold, top_k=1000)
    assert kept.tolist() == batched_nms(boxes, scores, groups, threshold).tolist()
