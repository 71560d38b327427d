"""YouTube-VIS scoring (ytvis_eval) and its CLI, on tiny hand-made videos.

Expected values are derived in the comments. Reminders used throughout: with one ground truth
matched by the first-ranked detection, precision is 1/(1+eps) at every recall threshold, so AP = 1;
AP averages over the 10 IoU thresholds 0.50, 0.55, ..., 0.95, so a detection matched at n of them
gives AP = AR = n/10.
"""

import copy
import json
import math
import runpy
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
from conftest import REPO, run_python

from vis_d2.evaluation import STAT_NAMES, YTVISEvalResult, evaluate_ytvis
from vis_d2.evaluation.ytvis_eval import IOU_THRESHOLDS, _frame_intersections, _rle_lengths

CLI = REPO / "tools" / "evaluate_ytvis.py"


def box(h, w, y0, y1, x0, x1):
    """(h, w) bool mask, True on rows y0..y1-1 and columns x0..x1-1."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask):
    out = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    out["counts"] = out["counts"].decode("ascii")
    return out


def video(vid, h=10, w=10, length=1):
    return {"id": vid, "height": h, "width": w, "length": length,
            "file_names": [f"v{vid}/{t}.jpg" for t in range(length)]}


def gt_ann(ann_id, vid, cat, masks, iscrowd=0, areas=None):
    """Ground-truth track from per-frame masks (None = absent); areas default to pixel counts."""
    segs = [rle(m) if m is not None else None for m in masks]
    if areas is None:
        areas = [float(m.sum()) if m is not None else None for m in masks]
    return {"id": ann_id, "video_id": vid, "category_id": cat, "iscrowd": iscrowd,
            "segmentations": segs, "areas": areas, "bboxes": [None] * len(masks)}


def det(vid, cat, score, masks):
    return {"video_id": vid, "category_id": cat, "score": score,
            "segmentations": [rle(m) if m is not None else None for m in masks]}


def dataset(videos, anns, cats=((1, "a"),)):
    return {"videos": videos, "annotations": anns,
            "categories": [{"id": c, "name": n} for c, n in cats]}


A = box(10, 10, 0, 5, 0, 5)  # 25 px, top left
FAR = box(10, 10, 8, 10, 8, 10)  # 4 px, bottom right, disjoint from A


def test_video_iou_is_the_ratio_of_summed_intersections_to_summed_unions():
    # Frame 0: GT = detection = the whole 10x10 frame (I = U = 100).
    # Frame 1: GT 2x2 top left, detection 2x2 bottom right (I = 0, U = 8).
    # Ratio of sums: 100 / 108 = 0.926 -> matched at 0.50 ... 0.90 (9 thresholds), not at 0.95.
    # (The mean of per-frame IoUs, 0.5, would match at 0.50 only and give AP = 0.1.)
    full = box(10, 10, 0, 10, 0, 10)
    gt = dataset([video(1, length=2)], [gt_ann(1, 1, 1, [full, box(10, 10, 0, 2, 0, 2)])])
    res = evaluate_ytvis(gt, [det(1, 1, 0.9, [full, FAR])])
    assert res.stats["AP"] == pytest.approx(0.9)
    assert res.stats["AR100"] == pytest.approx(0.9)
    assert res.stats["AP50"] == pytest.approx(1.0)
    assert res.stats["AP75"] == pytest.approx(1.0)
    assert np.allclose(res.precision[8, :, 0, 0, 2], 1.0)  # IoU threshold 0.90
    assert np.all(res.precision[9, :, 0, 0, 2] == 0.0)  # IoU threshold 0.95


def test_frames_with_a_mask_on_one_side_only_add_to_the_union():
    # 4 frames: f0 both (30 px each, I = 30), f1 GT only (12 px), f2 detection only (6 px),
    # f3 neither. IoU = 30 / (30 + 12 + 6) = 0.625 -> thresholds 0.50, 0.55, 0.60 -> AP = 0.3.
    # (Dropping the GT-only frame gives 30/36 -> 0.7, the detection-only frame 30/42 -> 0.5.)
    m30, m12, m6 = box(10, 10, 0, 5, 0, 6), box(10, 10, 6, 9, 0, 4), box(10, 10, 6, 8, 6, 9)
    gt = dataset([video(1, length=4)], [gt_ann(1, 1, 1, [m30, m12, None, None])])
    res = evaluate_ytvis(gt, [det(1, 1, 0.9, [m30, None, m6, None])])
    assert res.stats["AP"] == pytest.approx(0.3)
    assert res.stats["AR1"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    "areas, expected",
    [
        # mean of the non-null, non-zero json areas: (16000 + 16768) / 2 = 128**2 -> small and
        # medium (inclusive bounds), not large
        ([None, 0, 16000.0, 16768.0], {"APs": 1.0, "APm": 1.0, "APl": -1.0}),
        ([65536.0, None, 65536.0, 0], {"APs": -1.0, "APm": 1.0, "APl": 1.0}),  # 256**2
        ([16383.0, 16383.0, 16383.0, 16383.0], {"APs": 1.0, "APm": -1.0, "APl": -1.0}),
    ],
)
def test_area_ranges_use_the_json_areas_with_inclusive_bounds(areas, expected):
    # The masks are 25 px: the ground-truth area comes from "areas", not from the masks. The
    # matched detection is a true positive wherever the GT is in range; where the GT is out of
    # range it is ignored, so that range has no positives and its AP is -1.
    gt = dataset([video(1, length=4)], [gt_ann(1, 1, 1, [A] * 4, areas=areas)])
    res = evaluate_ytvis(gt, [det(1, 1, 0.9, [A] * 4)])
    for name, value in expected.items():
        assert res.stats[name] == pytest.approx(value), name
    assert res.stats["AP"] == pytest.approx(1.0)


def test_crowd_ground_truth_absorbs_several_detections():
    # GT: A (25 px) and a crowd region C (right 4 columns, 40 px). Ranking: two detections equal
    # to C (0.9, 0.8), then one equal to A (0.7). Both C detections match the crowd GT and are
    # ignored, so the ranking is just one TP: AP = AR = 1. Were the crowd able to take only one,
    # the second would be an FP ranked before the TP: AP = 0.5.
    crowd = box(10, 10, 0, 10, 6, 10)
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A]), gt_ann(2, 1, 1, [crowd], iscrowd=1)])
    dets = [det(1, 1, 0.9, [crowd]), det(1, 1, 0.8, [crowd]), det(1, 1, 0.7, [A])]
    res = evaluate_ytvis(gt, dets)
    assert res.stats["AP"] == pytest.approx(1.0)
    assert res.stats["AR100"] == pytest.approx(1.0)


def test_crowd_iou_is_the_plain_video_iou():
    # A detection covering the top half of the crowd region C: IoU = 20 / 40 = 0.5 (COCO's crowd
    # IoU, intersection / detection area, would be 1). It is ignored at threshold 0.50 only and
    # an FP ranked before A's TP elsewhere: AP = (1 + 9 * 0.5) / 10 = 0.55.
    crowd = box(10, 10, 0, 10, 6, 10)
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A]), gt_ann(2, 1, 1, [crowd], iscrowd=1)])
    dets = [det(1, 1, 0.9, [box(10, 10, 0, 5, 6, 10)]), det(1, 1, 0.8, [A])]
    assert evaluate_ytvis(gt, dets).stats["AP"] == pytest.approx(0.55)


@pytest.mark.parametrize("fp_first, expected_ap", [(True, 0.5), (False, 1.0)])
def test_score_ties_keep_the_input_order(fp_first, expected_ap):
    # Equal scores: FP then TP gives precision 1/2 at recall 1 (AP 0.5); TP then FP gives AP 1.
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A])])
    tp, fp = det(1, 1, 0.5, [A]), det(1, 1, 0.5, [FAR])
    res = evaluate_ytvis(gt, [fp, tp] if fp_first else [tp, fp])
    assert res.stats["AP"] == pytest.approx(expected_ap)


def test_score_ties_across_videos_follow_video_id_order():
    # Video 2 (listed first) holds the GT and its TP, video 1 an FP of the same score, given
    # after the TP. Videos are concatenated in id order before the stable sort, so the FP ranks
    # first: AP = 0.5.
    gt = dataset([video(2), video(1)], [gt_ann(1, 2, 1, [A])])
    res = evaluate_ytvis(gt, [det(2, 1, 0.5, [A]), det(1, 1, 0.5, [FAR])])
    assert res.stats["AP"] == pytest.approx(0.5)


@pytest.mark.parametrize("empty", [[None], [np.zeros((10, 10), dtype=bool)]])
def test_all_null_or_empty_detection(empty):
    # GT area from the json: 20000 (medium). The empty detection (area 0, IoU 0, score 0.9) is an
    # FP before the TP: AP = 0.5. In the medium range it is unmatched and outside the range, so
    # it is ignored: APm = 1. No small or large GT: APs = APl = -1.
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A], areas=[20000.0])])
    res = evaluate_ytvis(gt, [det(1, 1, 0.9, empty), det(1, 1, 0.8, [A])])
    assert res.stats["AP"] == pytest.approx(0.5)
    assert res.stats["APm"] == pytest.approx(1.0)
    assert res.stats["APs"] == res.stats["APl"] == -1.0
    assert res.stats["AR100"] == pytest.approx(1.0)


def test_ground_truth_with_every_frame_null_is_still_a_positive():
    # Two GTs, one with no mask at all (area 0, so "all" and "small"); one perfect detection.
    # Recall 1/2: precision 1 at the 51 recall thresholds 0.00 ... 0.50, 0 above: AP = 51/101.
    gt = dataset([video(1, length=2)],
                 [gt_ann(1, 1, 1, [A, A]), gt_ann(2, 1, 1, [None, None], areas=[None, None])])
    res = evaluate_ytvis(gt, [det(1, 1, 0.9, [A, A])])
    assert res.stats["AP"] == pytest.approx(51 / 101)
    assert res.stats["AR100"] == pytest.approx(0.5)


def test_categories_without_positive_ground_truth_are_left_out_of_the_mean():
    # a: one GT, found. b: no GT, one detection (dropped). c: only a crowd GT (no positive).
    cats = ((1, "a"), (2, "b"), (3, "c"))
    crowd = box(10, 10, 0, 10, 6, 10)
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A]), gt_ann(2, 1, 3, [crowd], iscrowd=1)], cats)
    dets = [det(1, 1, 0.5, [A]), det(1, 2, 0.99, [FAR]), det(1, 3, 0.98, [FAR])]
    res = evaluate_ytvis(gt, dets)
    assert res.stats["AP"] == pytest.approx(1.0)
    assert res.per_category_ap["a"] == pytest.approx(1.0)
    assert res.per_category_ap["b"] == res.per_category_ap["c"] == -1.0
    assert res.precision.shape == (10, 101, 3, 4, 3)


@pytest.mark.parametrize(
    "tp_rank, expected",
    [
        (0, {"AR1": 1.0, "AR10": 1.0, "AR100": 1.0, "AP": 1.0}),
        # 5 FPs first: precision at recall 1 is 1/6
        (5, {"AR1": 0.0, "AR10": 1.0, "AR100": 1.0, "AP": 1 / 6}),
        # the TP is the 101st detection of its video: outside every maxDets
        (100, {"AR1": 0.0, "AR10": 0.0, "AR100": 0.0, "AP": 0.0}),
    ],
)
def test_only_the_top_detections_per_video_count(tp_rank, expected):
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A])])
    dets = [det(1, 1, 1.0 - i / 1000, [A if i == tp_rank else FAR]) for i in range(120)]
    res = evaluate_ytvis(gt, dets[::-1])  # the input order does not matter, the scores do
    for name, value in expected.items():
        assert res.stats[name] == pytest.approx(value), name


def test_perfect_results_score_one_everywhere():
    # Video 1 (20x20): a 100 px and a 64 px instance (small). Video 2 (270x270): a 260x260
    # instance (67600 px, large) and a 150x150 one (22500 px, medium). One GT per (video,
    # category), so even AR1 is 1.
    v1a, v1b = box(20, 20, 0, 10, 0, 10), box(20, 20, 12, 20, 12, 20)
    v2a, v2b = box(270, 270, 0, 260, 0, 260), box(270, 270, 100, 250, 100, 250)
    anns = [gt_ann(1, 1, 1, [v1a, v1a]), gt_ann(2, 1, 2, [None, v1b]),
            gt_ann(3, 2, 1, [v2a]), gt_ann(4, 2, 2, [v2b])]
    gt = dataset([video(1, 20, 20, 2), video(2, 270, 270, 1)], anns, ((1, "a"), (2, "b")))
    dets = [det(1, 1, 0.3, [v1a, v1a]), det(1, 2, 0.9, [None, v1b]),
            det(2, 1, 0.6, [v2a]), det(2, 2, 0.4, [v2b])]
    res = evaluate_ytvis(gt, dets)
    assert set(res.stats) == set(STAT_NAMES)
    for name in STAT_NAMES:
        assert res.stats[name] == pytest.approx(1.0), name
    assert res.per_category_ap == pytest.approx({"a": 1.0, "b": 1.0})


def test_polygon_and_uncompressed_rle_ground_truth():
    # Frame 0: a polygon; frame 1: uncompressed RLE of rows 2-3, columns 1-3 (column-major runs:
    # 12 off, 2 on, 8 off, 2 on, 8 off, 2 on, 66 off; 100 px in all).
    poly = [[1.0, 1.0, 6.0, 1.0, 6.0, 6.0, 1.0, 6.0]]
    ann = gt_ann(1, 1, 1, [A, A], areas=[25.0, 6.0])
    ann["segmentations"] = [poly, {"size": [10, 10], "counts": [12, 2, 8, 2, 8, 2, 66]}]
    gt = dataset([video(1, length=2)], [ann])
    poly_mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, 10, 10))) > 0
    frame1 = box(10, 10, 2, 4, 1, 4)
    assert evaluate_ytvis(gt, [det(1, 1, 0.9, [poly_mask, frame1])]).stats["AP"] == pytest.approx(1)
    # without frame 0 the IoU is 6 / (6 + polygon area) < 0.5: the polygon frame is a mask
    assert evaluate_ytvis(gt, [det(1, 1, 0.9, [None, frame1])]).stats["AP"] == 0.0


def test_a_match_to_ground_truth_id_0_counts_as_unmatched():
    # ytvoseval records a match by the GT id, 0 meaning none: a TP on a GT with id 0 is an FP.
    gt = dataset([video(1)], [gt_ann(0, 1, 1, [A])])
    assert evaluate_ytvis(gt, [det(1, 1, 0.9, [A])]).stats["AP"] == 0.0


def test_no_results_score_zero():
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A])])
    res = evaluate_ytvis(gt, [])
    assert res.stats["AP"] == 0.0 and res.stats["AR100"] == 0.0
    assert res.stats["APm"] == -1.0


def test_intersections_are_exact_pixel_counts():
    rng = np.random.default_rng(0)
    masks = [rng.random((480, 640)) < p for p in (0.001, 0.3, 0.7, 0.999)]
    masks += [box(480, 640, 0, 480, 0, 640), np.zeros((480, 640), dtype=bool)]
    rles = [rle(m) for m in masks]
    areas = np.array([m.sum() for m in masks], dtype=np.int64)
    expected = np.array([[np.logical_and(a, b).sum() for b in masks] for a in masks])
    np.testing.assert_array_equal(_frame_intersections(rles, rles, areas, areas), expected)


def test_summary_layout():
    gt = dataset([video(1)], [gt_ann(1, 1, 1, [A])])
    res = evaluate_ytvis(gt, [det(1, 1, 0.9, [A])])
    assert isinstance(res, YTVISEvalResult)
    lines = res.summary().splitlines()
    assert len(lines) == 12
    assert lines[0] == (
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"
    )
    assert lines[1].startswith(" Average Precision  (AP) @[ IoU=0.50      | area=   all |")
    assert lines[6] == (
        " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.000"
    )
    assert lines[11].endswith("| area= large | maxDets=100 ] = -1.000")
    assert list(IOU_THRESHOLDS[[0, 5]]) == [0.5, 0.75]


def _valid():
    return dataset([video(1, length=2)], [gt_ann(1, 1, 1, [A, A])]), [det(1, 1, 0.9, [A, A])]


def _set(path, value):
    """Mutation: set gt/results item at ``path`` (a tuple of keys) to ``value``."""
    def apply(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def _delete(path):
    def apply(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return apply


BIG = rle(box(12, 10, 0, 5, 0, 5))
SMALL = rle(box(5, 5, 0, 2, 0, 2))


@pytest.mark.parametrize(
    "which, mutate, pattern",
    [
        ("gt", _delete(("videos",)), r"gt\.json: top level: missing key 'videos'"),
        ("gt", _set(("annotations",), {}), r"gt\.json: top level: 'annotations' must be a list"),
        ("gt", _delete(("annotations", 0, "segmentations")),
         r"gt\.json: annotations\[0\] \(id 1\): missing key 'segmentations'"),
        ("gt", _set(("annotations", 0, "video_id"), 5), r"annotations\[0\].*video_id 5"),
        ("gt", _set(("annotations", 0, "segmentations", 1), BIG),
         r"gt\.json: annotations\[0\] \(id 1\), frame 1: mask size \[12, 10\]"),
        ("gt", _set(("videos", 0, "height"), "10"), r"videos\[0\] \(id 1\): 'height'"),
        ("gt", _set(("annotations", 0, "areas", 0), "big"), r"annotations\[0\].*frame 0: area"),
        ("res", _delete((0, "segmentations")), r"res\.json: result 0 \(video_id 1\): missing"),
        ("res", _set((0, "video_id"), 7), r"res\.json: result 0 \(video_id 7\).*not a video of gt"),
        ("res", _set((0, "category_id"), 9), r"res\.json: result 0.*category_id 9"),
        ("res", _set((0, "segmentations"), [None]), r"result 0.*has 1 frames, the video has 2"),
        ("res", _set((0, "segmentations", 0), BIG), r"result 0 .*frame 0: mask size \[12, 10\]"),
        ("res", _set((0, "segmentations", 1), [[0, 0, 4, 0, 4, 4]]), r"frame 1: expected a comp"),
        # counts of a 5x5 mask (a 12x10 one) under a size of 10x10: pycocotools would score it
        ("res", _set((0, "segmentations", 0), {"size": [10, 10], "counts": SMALL["counts"]}),
         r"result 0 .*frame 0: RLE with counts for 25 pixels, but its size \[10, 10\] has 100"),
        ("res", _set((0, "segmentations", 1), {"size": [10, 10], "counts": BIG["counts"]}),
         r"frame 1: RLE with counts for 120 pixels"),
        ("res", _set((0, "segmentations", 0), {"size": [10, 10], "counts": "0~"}),
         r"frame 0: RLE with malformed counts"),
        ("gt", _set(("annotations", 0, "segmentations", 0), {"size": [10, 10], "counts": [5, 5]}),
         r"gt\.json: annotations\[0\] \(id 1\), frame 0: RLE with counts for 10 pixels"),
        ("res", _set((0, "score"), math.nan), r"res\.json: result 0.*'score' must be a finite"),
        ("res", _set((0, "score"), math.inf), r"result 0.*'score'"),
        ("res", _set((0, "score"), None), r"result 0.*'score'"),
    ],
)
def test_bad_input_is_reported_with_source_and_item(which, mutate, pattern):
    gt, results = _valid()
    mutate(gt if which == "gt" else results)
    with pytest.raises(ValueError, match=pattern):
        evaluate_ytvis(gt, results, gt_source="gt.json", results_source="res.json")


def test_bad_top_level_types():
    gt, results = _valid()
    with pytest.raises(ValueError, match=r"gt\.json: expected an object"):
        evaluate_ytvis([gt], results, gt_source="gt.json")
    with pytest.raises(ValueError, match=r"res\.json: expected a list of results"):
        evaluate_ytvis(gt, {"results": results}, results_source="res.json")


def test_inputs_are_not_modified():
    gt, results = _valid()
    before = copy.deepcopy((gt, results))
    evaluate_ytvis(gt, results)
    assert (gt, results) == before


def _frames_case(tmp_path):
    """Files of the one-side-frames case (AP 0.3 = AP at .50:.95, small, AR at every maxDets)."""
    m30, m12, m6 = box(10, 10, 0, 5, 0, 6), box(10, 10, 6, 9, 0, 4), box(10, 10, 6, 8, 6, 9)
    gt = dataset([video(1, length=4)], [gt_ann(1, 1, 1, [m30, m12, None, None])], ((1, "cat"),))
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps([det(1, 1, 0.9, [m30, None, m6, None])]))
    return gt_path, res_path


def test_cli_end_to_end(tmp_path):
    gt_path, res_path = _frames_case(tmp_path)
    out = tmp_path / "out" / "stats.json"
    out.parent.mkdir()
    proc = run_python(str(CLI), str(gt_path), str(res_path), "--json-out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.300" in (
        proc.stdout)
    assert "cat        30.00" in proc.stdout
    stats = json.loads(out.read_text())
    assert list(stats) == list(STAT_NAMES)
    # matched at 3 of 10 thresholds; AP50 = 1, AP75 = 0; no medium or large GT
    expected = {"AP": 0.3, "AP50": 1.0, "AP75": 0.0, "APs": 0.3, "APm": -1.0, "APl": -1.0,
                "AR1": 0.3, "AR10": 0.3, "AR100": 0.3, "ARs": 0.3, "ARm": -1.0, "ARl": -1.0}
    assert stats == pytest.approx(expected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["stats.json"]


def test_cli_malformed_json_exits_1(tmp_path):
    gt_path, res_path = _frames_case(tmp_path)
    res_path.write_text("[{\"video_id\": 1,")
    proc = run_python(str(CLI), str(gt_path), str(res_path), timeout=120)
    assert proc.returncode == 1
    assert f"{res_path}: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_errors_in_process(tmp_path, capsys):
    main = runpy.run_path(str(CLI))["main"]
    gt_path, res_path = _frames_case(tmp_path)
    assert main([str(tmp_path / "missing.json"), str(res_path)]) == 1
    assert "missing.json: cannot be read" in capsys.readouterr().err
    res_path.write_text(json.dumps([det(3, 1, 0.9, [None] * 4)]))
    assert main([str(gt_path), str(res_path)]) == 1
    assert f"{res_path}: result 0 (video_id 3)" in capsys.readouterr().err


def test_rle_lengths_equal_the_mask_size_for_pycocotools_encodings():
    rng = np.random.default_rng(0)
    strings, sizes = [], []
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        kind = rng.integers(3)
        if kind == 0:
            mask = rng.random((h, w)) < 0.5
        else:  # one box, or an empty mask
            mask = box(h, w, int(rng.integers(h)), h, int(rng.integers(w)), w) > (kind == 1)
        strings.append(mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"])
        sizes.append(h * w)
    assert _rle_lengths(strings).tolist() == sizes


def test_cli_reads_the_codalab_zip_and_names_swapped_arguments(tmp_path, capsys):
    main = runpy.run_path(str(CLI))["main"]
    gt_path, res_path = _frames_case(tmp_path)
    archive = tmp_path / "results.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("results.json", res_path.read_text())
    assert main([str(gt_path), str(archive)]) == 0
    assert "IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.300" in capsys.readouterr().out
    assert main([str(res_path), str(gt_path)]) == 1
    assert "the arguments look swapped" in capsys.readouterr().err


def test_a_track_present_in_hundreds_of_frames_is_scored():
    # pycocotools' area() cannot take 256 masks or more under NumPy 2: the scorer splits them
    length = 300
    masks = [A if t % 3 else FAR for t in range(length)]
    gt = dataset([video(1, length=length)], [gt_ann(1, 1, 1, masks)])
    half = [A if t < 150 else None for t in range(length)]
    result = evaluate_ytvis(gt, [det(1, 1, 0.9, masks), det(1, 1, 0.5, half)])
    assert result.stats["AP"] == pytest.approx(1.0)
    # the second detection's IoU: its 150 frames of A against 300 GT frames
    inter = sum(int((A & m).sum()) for m in masks[:150])
    union = sum(int(m.sum()) for m in masks[150:]) + sum(int((A | m).sum()) for m in masks[:150])
    assert 0 < inter / union < 0.5
