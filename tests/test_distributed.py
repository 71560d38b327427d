"""Multi-process training and evaluation on CPU (gloo): sharded sampling, synchronised
gradients, and evaluation gathered from all processes."""

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
from conftest import REPO, run_python
from detectron2.utils import comm
from test_sgnet import TINY

from vis_d2.data.build import ResumableTrainingSampler
from vis_d2.data.synthetic import generate

CONFIG = str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml")

TRAIN_AND_SAVE_PARAMETERS = """
import sys

sys.path.insert(0, {tools!r})

import torch
import train_net
from detectron2.engine import launch
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from vis_d2.engine import VISTrainer


class Trainer(VISTrainer):
    def train(self):
        results = super().train()
        model = self.model
        if isinstance(model, DistributedDataParallel):
            model = model.module
        path = f"{{self.cfg.OUTPUT_DIR}}/parameters_rank{{comm.get_rank()}}.pth"
        torch.save(model.state_dict(), path)
        return results


train_net.trainer_class = lambda cfg: Trainer  # module level: the spawned processes run it too

if __name__ == "__main__":
    args = train_net.argument_parser().parse_args()
    launch(train_net.main, args.num_gpus, dist_url=args.dist_url, args=(args,))
"""


def _batches(rank, world, batch_size, count, **kwargs):
    with (
        mock.patch.object(comm, "get_rank", return_value=rank),
        mock.patch.object(comm, "get_world_size", return_value=world),
    ):
        sampler = ResumableTrainingSampler(7, batch_size, **{"seed": 3, **kwargs})
    return list(itertools.islice(sampler, count))


def test_sampler_shards_one_stream_whatever_the_number_of_processes():
    single = _batches(0, 1, 4, 12)
    shards = [_batches(r, 2, 2, 12) for r in range(2)]
    for i, batch in enumerate(single):
        assert sorted(batch) == sorted(shards[0][i] + shards[1][i])
        assert not set(shards[0][i]) & set(shards[1][i])
    stream = [sample for batch in single for sample in batch]
    for epoch in range(len(stream) // 7):  # every epoch visits every video once
        assert sorted(index for index, _ in stream[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert len({seed for _, seed in stream}) == len(stream)  # a seed per sample
    assert _batches(1, 2, 2, 5, start_iter=7) == shards[1][7:]
    assert _batches(0, 1, 4, 12) == single
    with mock.patch.object(comm, "shared_random_seed", return_value=4):
        assert _batches(0, 1, 4, 12, seed=None) != single


def test_sampler_groups_by_orientation_and_resumes():
    groups = [0, 1, 1, 0, 1, 0, 0]
    batches = _batches(0, 1, 3, 10, group_ids=groups)
    assert all(len({groups[i] for i, _ in batch}) == 1 and len(batch) == 3 for batch in batches)
    assert _batches(0, 1, 3, 6, group_ids=groups, start_iter=4) == batches[4:]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A $DETECTRON2_DATASETS root with a synthetic_vis set of 3 validation videos."""
    root = tmp_path_factory.mktemp("datasets")
    generate(
        root / "synthetic_vis", 2, 4, seed=4, num_val_videos=3, width=96, height=64, progress=False
    )
    return root


def _copypaste(log: str) -> list[str]:
    return [line.split("copypaste: ")[1] for line in log.splitlines() if "copypaste: " in line]


def _results(out):
    path = out / "inference" / "synthetic_vis_val" / "results.json"
    results = json.loads(path.read_text())
    return sorted(results, key=lambda r: (r["video_id"], r["category_id"], -r["score"]))


def test_two_processes_train_in_sync_and_evaluate_as_one(datasets, tmp_path):
    # one thread per process, as in the single-process evaluation compared with
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "train_and_save_parameters.py"
    script.write_text(TRAIN_AND_SAVE_PARAMETERS.format(tools=str(REPO / "tools")))
    out = tmp_path / "two"
    common = ["--config-file", CONFIG, *TINY, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]
    trained = run_python(
        str(script), "--num-gpus", "2", "--dist-url", "auto", *common,
        "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
        "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(out),
        env=env, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "World size: 2" in trained.stdout

    ranks = [torch.load(out / f"parameters_rank{r}.pth") for r in range(2)]
    final = torch.load(out / "model_final.pth", weights_only=False)["model"]
    assert ranks[0].keys() == ranks[1].keys() == final.keys()
    for k in final:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} differs between the processes"
        assert torch.equal(ranks[0][k], final[k])

    one = tmp_path / "one"
    evaluated = run_python(
        str(REPO / "tools" / "train_net.py"), "--eval-only", "--num-gpus", "1", *common,
        "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(one),
        env=env, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    two_metrics, one_metrics = _copypaste(trained.stdout), _copypaste(evaluated.stdout)
    assert two_metrics and two_metrics == one_metrics
    two_results, one_results = _results(out), _results(one)
    assert two_results, "no detections to compare"
    assert len(two_results) == len(one_results)
    for a, b in zip(two_results, one_results, strict=True):
        assert (a["video_id"], a["category_id"]) == (b["video_id"], b["category_id"])
        assert a["segmentations"] == b["segmentations"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = (Path("/proc") / entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running, not ended (a zombie that nobody reaped counts as ended)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_killed_launcher_leaves_no_worker_and_a_held_output_dir_is_refused(datasets, tmp_path):
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *TINY,
            "SOLVER.MAX_ITER", "100000", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS",
            "0", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(out)]
    launcher = subprocess.Popen([*args[:2], "--num-gpus", "2", *args[2:]], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while "Starting training" not in _read(out / "log.txt"):
            assert launcher.poll() is None and time.monotonic() < deadline, _read(out / "log.txt")
            time.sleep(0.5)
        workers = _children(launcher.pid)
        assert len(workers) >= 2  # the two trainers (and multiprocessing's resource tracker)

        second = run_python(*args[1:], env=env, timeout=120)
        assert second.returncode != 0
        assert f"OUTPUT_DIR {out} is in use by a training that is still running" in second.stderr

        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived their launcher"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""
