"""YTVISEvaluator: per-frame tracks → results.json/zip → official-protocol AP."""

import json
import weakref
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import write_video_dataset
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Instances

from vis_d2.data import load_ytvis_json, register_ytvis_instances
from vis_d2.engine import inference_on_videos
from vis_d2.evaluation import TrackResults, YTVISEvaluator

H, W = 20, 24


def frames_to_tracks(frames, video_id, contiguous_to_dataset_id, classes_per_track=1):
    """One video's per-frame instances through TrackResults → its results.json entries."""
    tracks = TrackResults(video_id, contiguous_to_dataset_id, classes_per_track)
    for inst in frames:
        tracks.add(inst)
    return tracks.results()


def _mask(x0, y0, x1, y1):
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _frame(masks, scores, labels, track_ids):
    inst = Instances((H, W))
    inst.pred_masks = torch.stack(masks) if masks else torch.zeros(0, H, W, dtype=torch.bool)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(labels, dtype=torch.int64)
    inst.track_ids = torch.tensor(track_ids, dtype=torch.int64)
    return inst


def test_frames_to_tracks_mean_score_majority_label_and_gaps():
    a, b = _mask(0, 0, 5, 5), _mask(10, 10, 20, 15)
    frames = [
        _frame([a, b], [0.9, 0.5], [2, 2], [1, 2]),
        _frame([a, b], [0.7, 0.5], [2, 5], [1, 2]),
        _frame([b], [0.2], [5], [2]),
    ]
    # contiguous c -> dataset id c + 1
    tracks = frames_to_tracks(frames, video_id=4, contiguous_to_dataset_id={2: 3, 5: 6})
    one, two = sorted(tracks, key=lambda t: t["score"], reverse=True)
    assert one["video_id"] == 4
    assert one["score"] == pytest.approx(0.8) and one["category_id"] == 3
    assert one["segmentations"][2] is None
    assert mask_util.decode(one["segmentations"][0]).astype(bool).tolist() == a.tolist()
    # labels 2, 5, 5 -> 5; scores 0.5, 0.5, 0.2 -> 0.4
    assert two["score"] == pytest.approx(0.4) and two["category_id"] == 6
    assert all(s is not None for s in two["segmentations"])
    tie = frames_to_tracks(frames[:2], 4, {2: 3, 5: 6})
    assert sorted(t["category_id"] for t in tie) == [3, 3]  # labels 2, 5: the first seen wins
    json.dumps(tracks)  # json-ready


def test_frames_to_tracks_thresholds_soft_masks_and_rejects_duplicates():
    soft = torch.zeros(1, H, W)
    soft[0, 2:4, 2:6] = 0.6
    soft[0, 5, 5] = 0.4
    inst = _frame([], [], [], [])
    inst = Instances(
        (H, W),
        pred_masks=soft,
        scores=torch.tensor([0.5]),
        pred_classes=torch.tensor([0]),
        track_ids=torch.tensor([1]),
    )
    (track,) = frames_to_tracks([inst], 1, {0: 1})
    assert mask_util.area(track["segmentations"][0]) == 8
    dup = _frame([_mask(0, 0, 2, 2)] * 2, [0.5, 0.5], [0, 0], [3, 3])
    with pytest.raises(ValueError, match="video 1: track 3 appears twice in frame 0"):
        frames_to_tracks([dup], 1, {0: 1})


def test_frames_to_tracks_k_best_classes_per_track():
    a, b = _mask(0, 0, 5, 5), _mask(10, 10, 20, 15)
    frames = [
        _frame([a, b], [0.8, 0.6], [0, 2], [7, 8]),
        _frame([a], [0.6], [1], [7]),
    ]
    frames[0].class_scores = torch.tensor([[0.8, 0.5, 0.1], [0.0, 0.3, 0.6]])
    frames[1].class_scores = torch.tensor([[0.2, 0.6, 0.0]])
    ids = {0: 10, 1: 11, 2: 12}
    entries = frames_to_tracks(frames, 3, ids, classes_per_track=2)
    # track 7: mean class scores (0.5, 0.55, 0.05) -> classes 1, 0; track 8: (0, 0.3, 0.6) -> 2, 1
    got = [(e["category_id"], round(e["score"], 6)) for e in entries]
    assert got == [(11, 0.55), (10, 0.5), (12, 0.6), (11, 0.3)]
    assert entries[0]["segmentations"] == entries[1]["segmentations"]
    assert entries[0]["segmentations"][1] is not None and entries[2]["segmentations"][1] is None
    # one class per track is the majority vote, class scores or not
    assert [e["category_id"] for e in frames_to_tracks(frames, 3, ids)] == [10, 12]
    frames[1].remove("class_scores")
    with pytest.raises(ValueError, match="video 3: 2 classes per track need .*class_scores"):
        frames_to_tracks(frames, 3, ids, classes_per_track=2)
    with pytest.raises(ValueError, match="classes_per_track must be >= 1"):
        frames_to_tracks(frames, 3, ids, classes_per_track=0)


def _register(tmp_path, name, with_annotations=True):
    frames = [np.full((H, W, 3), 40 * t, dtype=np.uint8) for t in range(3)]
    m1 = [_mask(1, 1, 8, 9).numpy(), _mask(2, 1, 9, 9).numpy(), None]
    m2 = [None, _mask(12, 5, 22, 18).numpy(), _mask(13, 5, 23, 18).numpy()]
    videos = [
        {
            "frames": frames,
            "tracks": [{"category_id": 1, "masks": m1}, {"category_id": 2, "masks": m2}],
        },
        {"frames": frames[:2], "tracks": [{"category_id": 2, "masks": m1[:2]}]},
    ]
    path = write_video_dataset(tmp_path, videos, with_annotations=with_annotations)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_ytvis_instances(name, {}, str(path), str(tmp_path / "JPEGImages"))
    load_ytvis_json(str(path), str(tmp_path / "JPEGImages"), name)  # sets the category maps
    return path


def _ground_truth_outputs(videos):
    """Per-video outputs that reproduce the ground truth exactly (score 1)."""
    outputs = []
    for video in videos:
        frames = []
        for objs in video["annotations"]:
            masks = [
                torch.from_numpy(mask_util.decode(o["segmentation"]).astype(bool)) for o in objs
            ]
            frames.append(
                _frame(
                    masks,
                    [1.0] * len(objs),
                    [o["category_id"] for o in objs],
                    [o["id"] for o in objs],
                )
            )
        outputs.append({"frames": frames})
    return outputs


def test_evaluator_scores_ground_truth_as_perfect_and_writes_submission(tmp_path):
    name = "vis_d2_test_eval"
    _register(tmp_path, name)
    videos = DatasetCatalog.get(name)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    for video, output in zip(videos, _ground_truth_outputs(videos), strict=True):
        evaluator.process([video], [output])
    segm = evaluator.evaluate()["segm"]
    assert segm["AP"] == pytest.approx(100.0) and segm["AP50"] == pytest.approx(100.0)
    assert segm["AR1"] == pytest.approx(100.0)
    assert segm["AP-a"] == pytest.approx(100.0) and segm["AP-b"] == pytest.approx(100.0)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results) == 3 and {r["video_id"] for r in results} == {1, 2}
    assert {r["category_id"] for r in results} == {1, 2}  # dataset ids
    with zipfile.ZipFile(tmp_path / "out" / "results.zip") as z:
        assert z.namelist() == ["results.json"]
        assert json.loads(z.read("results.json")) == results


def test_evaluator_penalises_a_wrong_track(tmp_path):
    name = "vis_d2_test_eval_wrong"
    _register(tmp_path, name)
    videos = DatasetCatalog.get(name)
    outputs = _ground_truth_outputs(videos)
    # video 2's only instance (class b) is predicted as class a: b loses its only GT there
    for frame in outputs[1]["frames"]:
        frame.pred_classes = torch.zeros_like(frame.pred_classes)
    evaluator = YTVISEvaluator(name, distributed=False)
    evaluator.reset()
    evaluator.process(videos, outputs)
    segm = evaluator.evaluate()["segm"]
    # class a: its single GT found, plus one false positive ranked after it -> AP 1
    # class b: 2 GT, one found with score 1 -> recall 0.5, precision 1 up to it -> AP ~ 0.505
    assert segm["AP-a"] == pytest.approx(100.0)
    assert segm["AP-b"] == pytest.approx(100 * 51 / 101, abs=1e-6)
    assert segm["AP"] == pytest.approx((100 + 100 * 51 / 101) / 2, abs=1e-6)


def test_evaluator_without_ground_truth_only_writes(tmp_path):
    name = "vis_d2_test_eval_nogt"
    _register(tmp_path, name, with_annotations=False)
    videos = DatasetCatalog.get(name)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"), distributed=False)
    evaluator.reset()
    empty = [{"frames": [_frame([], [], [], []) for _ in range(v["length"])]} for v in videos]
    evaluator.process(videos, empty)
    assert evaluator.evaluate() == {}
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == []
    with pytest.raises(ValueError, match="video 1: 2 predicted frames for a video of 3"):
        evaluator.process(videos[:1], [{"frames": empty[0]["frames"][:2]}])


def test_synthetic_val_ground_truth_scores_ap_1(tmp_path):
    from vis_d2.data.synthetic import generate
    from vis_d2.evaluation import evaluate_ytvis

    paths = generate(tmp_path, 2, 5, seed=3, num_val_videos=3, width=96, height=64, progress=False)
    gt = json.loads(paths["valid"].read_text())
    assert gt["annotations"]
    results = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentations": a["segmentations"]} for a in gt["annotations"]]
    stats = evaluate_ytvis(gt, results).stats
    assert stats["AP"] == 1.0 and stats["AP50"] == 1.0 and stats["AR100"] == 1.0

    # the same through the loader and the detectron2 evaluator
    name = "vis_d2_test_synthetic_val"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_ytvis_instances(name, {}, str(paths["valid"]), str(tmp_path / "valid" / "JPEGImages"))
    videos = DatasetCatalog.get(name)
    evaluator = YTVISEvaluator(name, distributed=False)
    evaluator.reset()
    evaluator.process(videos, _ground_truth_outputs(videos))
    assert evaluator.evaluate()["segm"]["AP"] == pytest.approx(100.0)


class _ReplayModel(torch.nn.Module):
    """Replays given per-video frame outputs through the online interface, and records
    whether the masks it returned for earlier frames are still alive in memory."""

    def __init__(self, outputs):
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(1))
        self.videos = [list(o["frames"]) for o in outputs]
        self.alive_earlier: list[int] = []
        self._returned: list = []

    @property
    def device(self):
        return self._anchor.device

    def reset(self):
        self._frames = iter(self.videos.pop(0))

    def inference_frame(self, frame):
        self.alive_earlier.append(sum(ref() is not None for ref in self._returned))
        inst = next(self._frames)
        # the caller's copy: the replayed list keeps its own
        out = Instances(inst.image_size, **{k: v.clone() for k, v in inst.get_fields().items()})
        self._returned.append(weakref.ref(out.pred_masks))
        return out


class _FramesEvaluator(DatasetEvaluator):
    """An evaluator without a stream: it must get every frame's instances."""

    def reset(self):
        self.frames = []

    def process(self, inputs, outputs):
        self.frames += [len(o["frames"]) for o in outputs]

    def evaluate(self):
        return {"frames": {"per_video": self.frames}}


def test_inference_streams_frames_into_the_evaluator(tmp_path):
    name = "vis_d2_test_eval_stream"
    _register(tmp_path, name)
    videos = DatasetCatalog.get(name)
    expected = YTVISEvaluator(name, distributed=False)
    expected.reset()
    for video, output in zip(videos, _ground_truth_outputs(videos), strict=True):
        expected.process([video], [output])
    loader = [[{**v, "frames": [{"image": None}] * v["length"]}] for v in videos]

    model = _ReplayModel(_ground_truth_outputs(videos))
    streamed = YTVISEvaluator(name, distributed=False)
    segm = inference_on_videos(model, loader, streamed)["segm"]
    assert segm["AP"] == pytest.approx(100.0)
    assert streamed._results == expected._results
    # no mask returned by the model outlives its frame: only RLE is kept
    assert model.alive_earlier == [0] * sum(v["length"] for v in videos)

    # an evaluator without video_results gets the frames, beside a streamed one
    model = _ReplayModel(_ground_truth_outputs(videos))
    frames = _FramesEvaluator()
    streamed = YTVISEvaluator(name, distributed=False)
    results = inference_on_videos(model, loader, [streamed, frames])
    assert results["frames"]["per_video"] == [3, 2]
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert max(model.alive_earlier) > 0  # that evaluator's frames are kept until the video ends


def test_trim_heap_returns_free_pages_on_glibc():
    import platform

    from vis_d2.utils.memory import trim_heap

    # malloc_trim exists exactly where the C library is glibc; elsewhere nothing is done
    assert trim_heap() is (platform.libc_ver()[0] == "glibc")
