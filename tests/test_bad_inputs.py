"""Malformed annotation files, frames and checkpoints, and non-finite losses: each gives an
error that names the file (or loss) and the problem, in the library and through the tools."""

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, write_video_dataset
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from test_sgnet import TINY
from torch import nn

from vis_d2.config import get_cfg
from vis_d2.data import (
    DatasetFormatError,
    VideoFrames,
    YTVISDatasetMapper,
    load_ytvis_json,
    register_ytvis_instances,
)
from vis_d2.engine import CheckpointError, VISCheckpointer, VISTrainer

CONFIG = str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml")


def _video(frames=3, size=(16, 24)):
    image = np.full((*size, 3), 120, np.uint8)
    mask = np.zeros(size, bool)
    mask[4:10, 5:12] = True
    return {"frames": [image] * frames, "tracks": [{"category_id": 1, "masks": [mask] * frames}]}


@pytest.fixture
def dataset(tmp_path):
    """A valid 2-video YouTube-VIS data set; returns (json path, its content)."""
    path = write_video_dataset(tmp_path, [_video(), _video(2)])
    return path, json.loads(path.read_text())


def _edit(data, change):
    data = json.loads(json.dumps(data))
    change(data)
    return json.dumps(data)


ANNOTATION_CASES = {
    "truncated json": (lambda d: json.dumps(d)[:40], "not valid JSON"),
    "empty file": (lambda d: "", "not valid JSON"),
    "a list at the top": (lambda d: "[1, 2]", "the top level must be an object, not list"),
    "no videos": (lambda d: _edit(d, lambda x: x.pop("videos")), "'videos' must be a list"),
    "video without frames": (
        lambda d: _edit(d, lambda x: x["videos"][0].pop("file_names")),
        "videos[0]: missing key(s) file_names",
    ),
    "empty video": (
        lambda d: _edit(d, lambda x: x["videos"][1].update(file_names=[], length=0)),
        "video 2: 'file_names' must be a non-empty list",
    ),
    "length mismatch": (
        lambda d: _edit(d, lambda x: x["videos"][0].update(length=5)),
        "video 1: length 5 but 3 file_names",
    ),
    "annotation of an unknown video": (
        lambda d: _edit(d, lambda x: x["annotations"][0].update(video_id=9)),
        "annotation 1 (video 9): unknown video id",
    ),
    "unknown category": (
        lambda d: _edit(d, lambda x: x["annotations"][0].update(category_id=7)),
        "unknown category id 7",
    ),
    "too few segmentations": (
        lambda d: _edit(d, lambda x: x["annotations"][0]["segmentations"].pop()),
        "'segmentations' must list 3 frames",
    ),
    "mask of another size": (
        lambda d: _edit(d, lambda x: x["annotations"][0]["segmentations"][0].update(size=[8, 8])),
        "frame 0: mask size [8, 8] differs from the video's [16, 24]",
    ),
    "broken polygon": (
        lambda d: _edit(d, lambda x: x["annotations"][1]["segmentations"].__setitem__(0, [[1]])),
        "frame 0: malformed polygon segmentation",
    ),
    "segmentation of a wrong type": (
        lambda d: _edit(d, lambda x: x["annotations"][1]["segmentations"].__setitem__(1, 3)),
        "segmentation must be an RLE object, a polygon list or null",
    ),
}


@pytest.mark.parametrize("case", ANNOTATION_CASES)
def test_malformed_annotation_files(dataset, tmp_path, case):
    path, data = dataset
    make, message = ANNOTATION_CASES[case]
    bad = tmp_path / "bad.json"
    bad.write_text(make(data))
    with pytest.raises(DatasetFormatError) as e:
        load_ytvis_json(str(bad), str(tmp_path / "JPEGImages"))
    assert str(bad) in str(e.value) and message in str(e.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"annotation file {tmp_path / 'no.json'}"):
        load_ytvis_json(str(tmp_path / "no.json"), str(tmp_path))


def _break_frame(path, how):
    if how == "missing":
        os.remove(path)
    elif how == "not an image":
        path.write_bytes(b"these bytes are no PNG")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:30])
    elif how == "jpeg cut to a third":  # libjpeg alone decodes it half grey with a warning
        noise = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
        data = cv2.imencode(".jpg", noise)[1].tobytes()
        path.write_bytes(data[: len(data) // 3])
    elif how == "other size":
        cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))


FRAME_CASES = {
    "missing": (FileNotFoundError, "does not exist"),
    "not an image": (OSError, "cannot be decoded"),
    "truncated": (OSError, "cannot be decoded"),
    "jpeg cut to a third": (OSError, "cannot be decoded \\(.*[Tt]runcated"),
    "other size": (ValueError, "is 8x8, the json says 24x16"),
}


@pytest.mark.parametrize("how", FRAME_CASES)
def test_malformed_frames(dataset, tmp_path, how):
    path, _ = dataset
    videos = load_ytvis_json(str(path), str(tmp_path / "JPEGImages"))
    video = videos[1]  # 2 frames: both are read for training
    for name in video["file_names"]:
        _break_frame(tmp_path / "JPEGImages" / name, how)
    error, message = FRAME_CASES[how]
    mapper = YTVISDatasetMapper(
        augmentations=[T.NoOpTransform()], image_format="BGR", ref_frame_range=1, seed=0
    )
    with pytest.raises(error, match=message) as e:
        mapper(video)
    assert "video 2: frame" in str(e.value) and str(tmp_path / "JPEGImages" / "v2") in str(e.value)
    frames = VideoFrames(video, T.AugmentationList([]), "BGR")
    with pytest.raises(error, match=message):
        frames[1]


class _Small(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.body = nn.Linear(4, width)
        self.head = nn.Linear(width, 2)


def _write_checkpoint(path, kind):
    if kind == "truncated":
        torch.save({"model": _Small().state_dict()}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("model weights go here\n")
    elif kind == "a list":
        torch.save([1, 2, 3], path)
    elif kind == "no tensors":
        torch.save({"model": {"body.weight": "zeros"}}, path)
    elif kind == "pickle of junk":
        path.write_bytes(b"\x80\x04\x95junk")
    elif kind == "other shapes":
        torch.save({"model": _Small(width=5).state_dict()}, path)
    elif kind == "missing weights":
        torch.save(
            {"model": {"body." + k: v for k, v in nn.Linear(4, 3).state_dict().items()}}, path
        )


CHECKPOINT_CASES = {
    "truncated": "cannot be read as a checkpoint",
    "empty": "cannot be read as a checkpoint",
    "text": "cannot be read as a checkpoint",
    "pickle of junk": "cannot be read as a checkpoint",
    "a list": "is not a model checkpoint: it holds list data where model weights",
    "no tensors": "is not a model checkpoint: its 'model' entry maps 'body.weight'",
    "other shapes": "3 weights have other shapes than the model's: body.weight (5, 4) in the file, "
    "(3, 4) in the model, body.bias (5,) in the file, (3,) in the model, head.weight",
    "missing weights": "2 model weights are missing from it: head.bias, head.weight",
}


@pytest.mark.parametrize("kind", CHECKPOINT_CASES)
def test_malformed_checkpoints(tmp_path, kind):
    path = tmp_path / "model.pth"
    _write_checkpoint(path, kind)
    with pytest.raises(CheckpointError) as e:
        VISCheckpointer(_Small()).load(str(path), strict=True)
    assert str(path) in str(e.value) and CHECKPOINT_CASES[kind] in str(e.value)


def test_partial_weights_still_initialise_a_training(tmp_path, caplog):
    """Loading MODEL.WEIGHTS to start a training keeps detectron2's warnings (e.g. ImageNet
    weights for the backbone only); resuming from the same file is an error."""
    path = tmp_path / "model_0000009.pth"
    _write_checkpoint(path, "missing weights")
    model = _Small()
    VISCheckpointer(model).resume_or_load(str(path), resume=False)
    assert torch.equal(model.body.weight, torch.load(path)["model"]["body.weight"])
    assert "head" in caplog.text  # reported as missing
    (tmp_path / "last_checkpoint").write_text(path.name)
    with pytest.raises(CheckpointError, match="missing from it: head.bias"):
        VISCheckpointer(_Small(), str(tmp_path)).resume_or_load("", resume=True)


def test_missing_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"checkpoint file {tmp_path / 'x.pth'} does not"):
        VISCheckpointer(_Small()).load(str(tmp_path / "x.pth"))
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    with pytest.raises(CheckpointError, match="last_checkpoint names model_0000099.pth, but"):
        VISCheckpointer(_Small(), str(tmp_path)).resume_or_load("", resume=True)


def test_non_finite_loss_stops_training_naming_loss_and_iteration(dataset, tmp_path):
    path, _ = dataset
    register_ytvis_instances("bad_inputs_train", {}, str(path), str(tmp_path / "JPEGImages"))
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(TINY)
    cfg.merge_from_list(["DATASETS.TRAIN", "('bad_inputs_train',)", "DATASETS.TEST", "()"])
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "1", "DATALOADER.NUM_WORKERS", "0"])
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    trainer = VISTrainer(cfg)
    weight = next(trainer.model.parameters())
    seen = []

    def losses(batch):
        seen.append(weight.detach().clone())
        bad = math.nan if len(seen) == 3 else 1.0
        return {"loss_ok": weight.sum() * 0 + 1.0, "loss_mask": weight.sum() * 0 + bad}

    trainer.model.forward = losses
    with pytest.raises(FloatingPointError, match=r"at iteration 2: loss_mask = nan \(all losses"):
        trainer.train()
    assert torch.equal(weight.detach(), seen[-1])  # the step with the NaN loss was not taken


def _cli(out, *args, env):
    return subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *args,
         "OUTPUT_DIR", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_train_net_names_bad_files(tmp_path):
    truncated = tmp_path / "truncated.pth"
    _write_checkpoint(truncated, "truncated")
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(TINY)
    cfg.MODEL.FPN.OUT_CHANNELS = 64  # another model of the same names
    other = tmp_path / "other.pth"
    torch.save({"model": build_model(cfg).state_dict()}, other)
    broken_json = tmp_path / "datasets" / "synthetic_vis" / "train.json"
    (broken_json.parent / "train" / "JPEGImages").mkdir(parents=True)
    broken_json.write_text('{"videos": [{"id": 1, "file_names": ["a.jpg"]')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    datasets_env = {**env, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    runs = {  # side by side
        truncated: _cli(tmp_path / "a", "--eval-only", *TINY, "MODEL.WEIGHTS", str(truncated),
                        env=env),
        other: _cli(tmp_path / "b", "--eval-only", *TINY, "MODEL.WEIGHTS", str(other), env=env),
        broken_json: _cli(tmp_path / "c", *TINY, env=datasets_env),
    }  # fmt: skip
    last_lines = {}
    for path, proc in runs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]  # the message alone: it names the file
        last_lines[path] = stderr.strip().splitlines()[-1]
    assert last_lines[truncated].startswith(f"error: {truncated} cannot be read as a checkpoint")
    assert last_lines[other].startswith(f"error: {other} does not fit the model")
    assert "have other shapes than the model's: backbone.fpn_" in last_lines[other]
    assert last_lines[broken_json].startswith(f"error: {broken_json}: not valid JSON")
