"""Exported SG-Net (dense graphs + Python post-processing and tracker) against the eager model,
tools/export_model.py, and tools/demo.py --exported."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, datasets_env, run_python
from test_demo import CONFIG, TINY, load_tool, read_video, save_random_weights

from vis_d2.data.synthetic import generate
from vis_d2.engine.predictor import FramePreprocessor, load_model, setup_cfg
from vis_d2.export import ExportedModel, compare_frames, export_model
from vis_d2.utils.precision import CPU_BF16_ENV
from vis_d2.utils.video_io import open_frames

# a higher threshold than the demo tests: some frames have no detection at all
PARITY = ["MODEL.FCOS.INFERENCE_TH_TEST", "0.35"]
TOLERANCES = {
    # boxes in px at the original resolution, scores absolute
    "torchscript": {"box": 1e-4, "score": 1e-4, "mask_iou": 0.99},
    # onnxruntime's kernels differ from torch's in the last bits
    "onnx": {"box": 1e-3, "score": 1e-4, "mask_iou": 0.99},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Weights, two synthetic videos (train, valid) and the eager model at the parity
    threshold."""
    root = tmp_path_factory.mktemp("export_assets")
    generate(root / "data", 1, 3, seed=0, num_val_videos=1, width=96, height=64, progress=False)
    videos = [
        next((root / "data" / split / "JPEGImages").iterdir()) for split in ("train", "valid")
    ]
    weights = root / "weights.pth"
    save_random_weights(weights)
    opts = TINY + ["MODEL.WEIGHTS", str(weights)] + PARITY
    cfg = setup_cfg(CONFIG, opts)
    return {"root": root, "videos": videos, "opts": opts, "cfg": cfg, "model": load_model(cfg)}


def video_inputs(setup) -> list[list[dict]]:
    """Per video, the model inputs of its frames: the two synthetic videos, then the first one
    turned to portrait (a different input size than the tracing sample)."""
    preprocess = FramePreprocessor(setup["cfg"])
    frames = [[f for _, f in open_frames(str(v))] for v in setup["videos"]]
    portrait = [np.ascontiguousarray(f.transpose(1, 0, 2)) for f in frames[0]]
    return [[preprocess(f) for f in video] for video in [*frames, portrait]]


def run_videos(model, videos: list[list[dict]]) -> list:
    """All frames' instances, each video from a reset model."""
    return [inst for video in videos for inst in model.inference_video({"frames": video})["frames"]]


@pytest.fixture(scope="module")
def exported(setup, tmp_path_factory):
    """``exported(fmt)``: the folder of the model's export, traced on a random frame unlike
    any test frame (made once per format)."""
    folders = {}

    def get(fmt: str):
        if fmt not in folders:
            rng = torch.Generator().manual_seed(0)
            sample = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=rng)
            folders[fmt] = tmp_path_factory.mktemp(f"export_{fmt}")
            export_model(setup["model"], setup["cfg"], [sample], folders[fmt], fmt)
        return folders[fmt]

    return get


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_reproduces_the_eager_model_on_other_frames(setup, exported, fmt):
    videos = video_inputs(setup)
    eager = run_videos(setup["model"], videos)
    other = run_videos(ExportedModel(exported(fmt)), videos)
    metrics = compare_frames(eager, other)

    counts = metrics["detections"]
    assert 0 in counts and len(set(counts)) >= 3, counts  # the test exercises varying counts
    start, spans = 0, False
    for video in videos:
        ids = torch.cat([inst.track_ids for inst in eager[start : start + len(video)]])
        spans |= len(ids.unique()) < len(ids)
        start += len(video)
    assert spans, "no track spans two frames"
    assert any(inst.pred_masks.any() for inst in eager)
    assert eager[-1].image_size == (96, 64)

    tol = TOLERANCES[fmt]
    assert metrics["same_counts"] and metrics["same_classes"] and metrics["same_track_ids"]
    assert metrics["max_box_diff"] <= tol["box"], metrics
    assert metrics["max_score_diff"] <= tol["score"], metrics
    assert metrics["min_mask_iou"] >= tol["mask_iou"], metrics


def test_demo_runs_an_export_like_the_eager_model(setup, exported, tmp_path):
    demo = load_tool("demo")
    video = setup["videos"][1]
    common = ["--input", str(video), "--json", "--confidence-threshold", "0"]
    eager_out, exported_out = tmp_path / "eager.mp4", tmp_path / "exported.mp4"
    assert demo.main(["--config-file", CONFIG, "--output", str(eager_out), *common,
                      *setup["opts"]]) == 0  # fmt: skip
    assert demo.main(["--exported", str(exported("torchscript")), "--output",
                      str(exported_out), *common]) == 0  # fmt: skip
    eager = json.loads(eager_out.with_suffix(".json").read_text())
    exported = json.loads(exported_out.with_suffix(".json").read_text())
    assert len(eager) == len(exported) > 0
    for a, b in zip(eager, exported, strict=True):
        assert a["segmentations"] == b["segmentations"]
        assert a["category_id"] == b["category_id"]
        assert abs(a["score"] - b["score"]) <= 1e-4
    assert len(read_video(exported_out)[0]) == 3


@pytest.mark.parametrize(("fmt", "suffix"), [("torchscript", "ts"), ("onnx", "onnx")])
def test_export_tool_writes_a_checked_export(setup, tmp_path, fmt, suffix):
    out = tmp_path / "exported"
    proc = run_python(
        str(REPO / "tools" / "export_model.py"), "--config-file", CONFIG, "--output", str(out),
        "--sample-input", str(setup["videos"][0]), "--check-frames", "1", "--format", fmt,
        *setup["opts"], timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Warning" not in log, log[-3000:]  # tracing notices of ours, or unfiltered ones
    assert "export vs eager on 1 frame(s)" in log
    assert f"wrote the {fmt} export to {out}" in log
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "config.yaml", "export.json", f"frame.{suffix}", f"mask.{suffix}", f"movement.{suffix}",
        "weights.pth",
    ]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]


def test_export_tool_errors(setup, tmp_path, capsys, monkeypatch):
    tool = load_tool("export_model")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("")
    args = ["--config-file", CONFIG, *setup["opts"]]
    assert tool.main(["--output", str(foreign), *args]) == 1
    assert f"output {foreign} exists and is not an export folder" in capsys.readouterr().err

    missing = tmp_path / "missing.pth"
    out = tmp_path / "out"
    assert tool.main(["--output", str(out), *args, "MODEL.WEIGHTS", str(missing)]) == 1
    assert f"MODEL.WEIGHTS file {missing} does not exist" in capsys.readouterr().err
    assert not out.exists()

    monkeypatch.setitem(sys.modules, "onnx", None)  # an installation without onnx
    assert tool.main(["--output", str(out), "--format", "onnx", *args]) == 1
    assert "pip install onnx" in capsys.readouterr().err
    assert not out.exists()


def test_train_net_evaluates_an_export_like_the_weights(setup, exported, tmp_path):
    env = datasets_env(setup["root"] / "data", tmp_path)
    common = [str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, "--eval-only"]
    results = {}
    for name, extra in [
        ("weights", []),
        ("torchscript", ["--exported", str(exported("torchscript"))]),
        ("onnx", ["--exported", str(exported("onnx"))]),
    ]:
        out = tmp_path / name
        proc = run_python(*common, *extra, *setup["opts"], "OUTPUT_DIR", str(out), env=env,
                          timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        if extra:
            assert f"evaluating the {name} export in" in proc.stdout + proc.stderr
        path = out / "inference" / "synthetic_vis_val" / "results.json"
        results[name] = json.loads(path.read_text())
    assert len(results["weights"]) > 0
    for name in ("torchscript", "onnx"):
        assert len(results[name]) == len(results["weights"])
        for a, b in zip(results["weights"], results[name], strict=True):
            assert a["segmentations"] == b["segmentations"] and a["category_id"] == b["category_id"]
            assert abs(a["score"] - b["score"]) <= 1e-4


def test_train_net_refuses_an_export_without_eval_only_or_of_another_method(setup, exported,
                                                                            tmp_path):
    env = datasets_env(setup["root"] / "data", tmp_path)
    tool = str(REPO / "tools" / "train_net.py")
    folder = str(exported("torchscript"))
    proc = run_python(tool, "--config-file", CONFIG, "--exported", folder, *setup["opts"],
                      "OUTPUT_DIR", str(tmp_path / "a"), env=env, timeout=300)  # fmt: skip
    assert proc.returncode != 0 and "it needs --eval-only" in proc.stderr
    sipmask = str(REPO / "projects" / "SipMaskVIS" / "configs" / "synthetic"
                  / "SipMaskVIS_R18_synthetic.yaml")  # fmt: skip
    proc = run_python(tool, "--config-file", sipmask, "--eval-only", "--exported", folder,
                      "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path / "b"), env=env,
                      timeout=300)  # fmt: skip
    assert proc.returncode != 0
    assert "holds a SGNet model, --config-file a SipMaskVIS one" in proc.stderr


def test_train_net_evaluates_under_amp(setup, tmp_path):
    env = datasets_env(setup["root"] / "data", tmp_path)
    common = [str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, "--eval-only"]
    results = {}
    for amp in ("False", "True"):
        out = tmp_path / amp
        # VIS_D2_CPU_BF16=1: bf16 as on a CPU that runs it natively, whatever this CPU is
        proc = run_python(*common, *setup["opts"], "TEST.AMP.ENABLED", amp, "OUTPUT_DIR",
                          str(out), env={**env, CPU_BF16_ENV: "1"}, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        logged = "TEST.AMP.ENABLED: the dense graphs run under autocast (bf16 on the CPU)"
        assert (logged in proc.stdout + proc.stderr) == (amp == "True")
        path = out / "inference" / "synthetic_vis_val" / "results.json"
        results[amp] = json.loads(path.read_text())
    assert len(results["False"]) > 0
    # bf16 moves scores by about 1%: the same tracks with nearly the same scores (the classes
    # of these random weights are near ties, which bf16 may reorder)
    assert len(results["True"]) == len(results["False"])
    for a, b in zip(results["False"], results["True"], strict=True):
        assert a["video_id"] == b["video_id"]
        assert abs(a["score"] - b["score"]) <= 0.05
