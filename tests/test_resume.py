"""Resuming after a kill: atomic checkpoints, a training stream that restarts where it stopped,
random states in the checkpoint, and a resumed run equal to an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, run_python
from detectron2.utils.env import seed_all_rng
from test_sgnet import TINY
from torch import nn

from vis_d2.config import get_cfg
from vis_d2.data import register_ytvis_instances
from vis_d2.data.build import build_video_train_loader
from vis_d2.data.synthetic import generate
from vis_d2.engine import PeriodicCheckpointer, VISCheckpointer
from vis_d2.utils.file_io import atomic_write

CONFIG = str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A $DETECTRON2_DATASETS root holding a small synthetic_vis set."""
    root = tmp_path_factory.mktemp("datasets")
    generate(
        root / "synthetic_vis", 4, 4, seed=2, num_val_videos=1, width=96, height=64, progress=False
    )
    return root


def _train_args(out, max_iter, *extra):
    return [
        str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *extra, *TINY,
        "SOLVER.MAX_ITER", str(max_iter), "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "SEED", "0",
        "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out),
    ]  # fmt: skip


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_killed_training_resumes_as_if_uninterrupted(datasets, tmp_path):
    # single-threaded runs side by side: the same arithmetic in each, and less wall time
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    full = subprocess.Popen(
        [sys.executable, *_train_args(tmp_path / "full", 4)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, *_train_args(out, 4)], cwd=REPO, env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 240
        while not (out / "last_checkpoint").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    tag = (out / "last_checkpoint").read_text()
    assert tag != "model_final.pth", "the kill came after the end of training"
    resumed_from = _load(out / tag)["iteration"]
    # a record the killed run might have written after its last checkpoint, and one cut short
    with open(out / "metrics.json", "a") as f:
        f.write(json.dumps({"iteration": resumed_from, "mark": "kept"}) + "\n")
        f.write(json.dumps({"iteration": resumed_from + 1, "mark": "dropped"}) + "\n")
        f.write('{"iteration": ')

    resumed = run_python(*_train_args(out, 4, "--resume"), env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Starting training from iteration {resumed_from + 1}" in resumed.stdout
    _, errors = full.communicate(timeout=300)
    assert full.returncode == 0, errors[-3000:]

    a, b = _load(tmp_path / "full" / "model_final.pth"), _load(out / "model_final.pth")
    assert a["iteration"] == b["iteration"] == 3
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=1e-5, msg=k)
    # the LR schedule and the optimizer's statistics (AdamW's moments, SGD's momentum) too
    assert a["trainer"]["hooks"]["LRScheduler"] == b["trainer"]["hooks"]["LRScheduler"]
    states = a["trainer"]["_trainer"]["optimizer"]["state"]
    assert states, "the checkpoint holds no optimizer state"
    for i, state in states.items():
        other = b["trainer"]["_trainer"]["optimizer"]["state"][i]
        assert other.keys() == state.keys()
        for key, value in state.items():
            torch.testing.assert_close(other[key], value, atol=1e-5, rtol=0, msg=key)

    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    iterations = [r["iteration"] for r in records]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 3
    assert [r.get("mark") for r in records if "mark" in r] == ["kept"]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    checkpointer = VISCheckpointer(model, str(tmp_path), save_to_disk=True)
    checkpointer.save("model_0000001", iteration=1)

    def killed_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # stands for the process dying here

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000003", iteration=3)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    resumed = VISCheckpointer(nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)
    assert resumed["iteration"] == 1


def _batches(cfg, count, start_iter=0):
    loader = iter(build_video_train_loader(cfg, start_iter=start_iter))
    batches = [next(loader) for _ in range(count)]
    del loader
    return [
        [(s["video_id"], s["frame_idx"], s["ref_frame_idx"], s["image"], s["ref_image"])
         for s in batch]
        for batch in batches
    ]  # fmt: skip


def _same(a, b):
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b, strict=True):
        for x, y in zip(batch_a, batch_b, strict=True):
            assert x[:3] == y[:3]
            assert torch.equal(x[3], y[3]) and torch.equal(x[4], y[4])


def test_training_stream_restarts_where_it_stopped_with_any_workers(datasets):
    name = "resume_stream_train"
    register_ytvis_instances(
        name,
        {},
        str(datasets / "synthetic_vis" / "train.json"),
        str(datasets / "synthetic_vis" / "train" / "JPEGImages"),
    )
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(TINY)
    cfg.merge_from_list(
        ["DATASETS.TRAIN", f"('{name}',)", "SOLVER.IMS_PER_BATCH", "3", "SEED", "5"]
    )
    cfg.merge_from_list(["INPUT.REF_FRAME_RANGE", "3", "INPUT.MIN_SIZE_TRAIN", "(48, 64)"])
    cfg.DATALOADER.NUM_WORKERS = 0
    reference = _batches(cfg, 4)
    # the sizes, flips and frame choices of a sample do not depend on the worker mapping it
    cfg.DATALOADER.NUM_WORKERS = 2
    _same(_batches(cfg, 4), reference)
    cfg.DATALOADER.NUM_WORKERS = 1
    _same(_batches(cfg, 2, start_iter=2), reference[2:])
    # the stream is not the same for every seed
    cfg.SEED = 6
    cfg.DATALOADER.NUM_WORKERS = 0
    other = _batches(cfg, 4)
    assert [[s[:3] for s in b] for b in other] != [[s[:3] for s in b] for b in reference]


def test_checkpoints_carry_every_random_state(tmp_path):
    hook = PeriodicCheckpointer(VISCheckpointer(nn.Linear(2, 2), str(tmp_path)), 2)
    hook.trainer = SimpleNamespace(iter=1, max_iter=10)
    hook.before_train()
    seed_all_rng(0)
    hook.after_step()  # iteration 1: a checkpoint, and the states with it
    state = hook.state_dict()
    expected = torch.rand(3), np.random.rand(), random.random()

    seed_all_rng(1)
    resumed = PeriodicCheckpointer(VISCheckpointer(nn.Linear(2, 2), str(tmp_path)), 2)
    resumed.trainer = SimpleNamespace(iter=2, max_iter=10)
    resumed.load_state_dict(state)
    resumed.before_train()
    assert torch.equal(torch.rand(3), expected[0])
    assert (np.random.rand(), random.random()) == expected[1:]


def test_atomic_write_follows_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "private", lambda f: f.write(b"x"))
        os.umask(0o002)
        atomic_write(tmp_path / "shared", lambda f: f.write("y"), text=True)
    finally:
        os.umask(old)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "shared").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private", "shared"]  # no temp left
