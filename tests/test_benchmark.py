"""tools/benchmark.py end to end at tiny sizes, and the part timer it is built on."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import REPO, run_python
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

from vis_d2.benchmark import (
    BENCHMARK_ADAPTER_REGISTRY,
    BoxSizes,
    PartTimer,
    Probe,
    benchmark_adapter,
    estimate_norm_statistics,
    latency_stats,
)
from vis_d2.benchmark.report import SPEED_GOALS, load_goals
from vis_d2.utils.precision import CPU_BF16_ENV

TOOL = str(REPO / "tools" / "benchmark.py")
TINY_SGNET = [
    "--config-file",
    str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml"),
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.FCOS.NUM_CLS_CONVS",
    "1",
    "MODEL.FCOS.NUM_BOX_CONVS",
    "1",
    "MODEL.SGNET.BASE.CONVS_DIM",
    "16",
    "MODEL.SGNET.SAM.CONVS_DIM",
    "32",
]
SGNET_PARTS = {
    "backbone",
    "fcos/head",
    "fcos/postprocess",
    "mask/bases",
    "mask/sam_tower",
    "mask/sam_coefficients",
    "mask/assemble",
    "movement/tower",
    "movement/readout",
    "tracker",
    "other",
}


def test_sgnet_against_mask_rcnn_end_to_end(tmp_path):
    out = tmp_path / "bench"
    args = ["--device", "cpu", "--threads", "1", "--size", "128x96", "--frames", "2"]
    args += ["--warmup", "1", "--detections", "5", "1", "--output", str(out), "--profile"]
    args += ["--goals"]
    proc = run_python(TOOL, *args, *TINY_SGNET, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr[-3000:]

    results = json.loads((out / "benchmark.json").read_text())
    env = results["environment"]
    assert env["size"] == [128, 96] and env["frames"] == 2 and env["warmup"] == 1
    assert env["device"] == "cpu" and env["threads"] == 1 and env["memory_measure"]
    # what a CPU timing depends on, as torch reports it
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu_bf16_native"] is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert env["cpu"] and env["cpu_class"] in ("AVX2", "AVX-512", "AVX-512-BF16", "AMX", "DEFAULT")
    assert f"CPU: {env['cpu']} ({env['cpu_capability']}, " in proc.stdout
    assert f"timings of class {env['cpu_class']}" in proc.stdout
    for key in ("sgnet", "mask_rcnn"):
        settings = results[key]["settings"]
        assert [s["detections"] for s in settings] == [1, 5]
        for s in settings:
            assert s["counts"] == [s["detections"]] * 2, (key, s["counts"])
            assert s["count_ok"] is True
            lat = s["latency_ms"]
            assert set(lat) == {"median", "p90", "mean", "min", "max"}
            assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["max"]
            assert s["fps"] == pytest.approx(2 / (sum(s["frame_ms"]) / 1e3))
            assert s["memory_mb"]["peak"] > 0
            # the parts split the frame: they add up to its time
            assert sum(s["parts_ms"].values()) == pytest.approx(lat["mean"], rel=0.05)
            assert sum(s["groups_pct"].values()) == pytest.approx(100)
    # one warm-up frame, so the timed frames run the movement head against their predecessor
    for s in results["sgnet"]["settings"]:
        assert set(s["parts_ms"]) == SGNET_PARTS
    rcnn_parts = set(results["mask_rcnn"]["settings"][0]["parts_ms"])
    assert {"backbone", "rpn", "roi_heads/box", "roi_heads/mask", "postprocess"} <= rcnn_parts

    ratios = {r["name"]: r for r in results["ratios"]}
    assert set(ratios) == {
        "sgnet_scaling",
        "mask_rcnn_scaling",
        "sgnet_vs_mask_rcnn",
        "sgnet_vs_mask_rcnn_without_postprocess",
        "sgnet_heads_share",
        "sgnet_assembly_share",
    }
    sg, base = results["sgnet"]["settings"], results["mask_rcnn"]["settings"]
    assert ratios["sgnet_scaling"]["value"] == pytest.approx(
        sg[1]["latency_ms"]["median"] / sg[0]["latency_ms"]["median"]
    )
    assert ratios["sgnet_vs_mask_rcnn"]["value"] == pytest.approx(
        sg[1]["latency_ms"]["median"] / base[1]["latency_ms"]["median"]
    )
    heads = sum(sg[1]["groups_pct"][g] for g in ("mask", "movement", "tracker"))
    assert ratios["sgnet_heads_share"]["value"] == pytest.approx(heads)
    assert ratios["sgnet_heads_share"]["goal"] == 15.0
    assembly = 100 * sg[1]["parts_ms"]["mask/assemble"] / sum(sg[1]["parts_ms"].values())
    assert ratios["sgnet_assembly_share"]["value"] == pytest.approx(assembly)
    assert 0 < assembly < heads and ratios["sgnet_assembly_share"]["goal"] == 3.0
    assert ratios["sgnet_scaling"]["pass"] == (ratios["sgnet_scaling"]["value"] <= 1.05)

    png = (out / "latency_vs_detections.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    profile = (out / "profile.txt").read_text()
    assert "Self CPU" in profile and "mask/assemble" in profile
    assert "SG-Net latency(5) / latency(1)" in proc.stdout
    assert "box post-processing (NMS, top-k)" in proc.stdout


def test_fewer_detections_than_forced_are_reported(tmp_path):
    # 64x64 gives 8x8 + 4x4 + 2x2 locations x 6 classes = 504 candidates in all
    args = ["--device", "cpu", "--threads", "1", "--size", "64x64", "--frames", "1"]
    args += ["--warmup", "0", "--detections", "600", "--skip-baseline", "--output", str(tmp_path)]
    proc = run_python(TOOL, *args, *TINY_SGNET, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "fewer detections than forced: SG-Net at N=600: 504" in proc.stderr
    assert "504 (SHORT)" in proc.stdout
    # without --goals the ratios come without the project's goals and verdicts
    assert "Ratios within this run\n" in proc.stdout
    assert not any(word in proc.stdout for word in ("goal", "PASS", "MISS"))
    (setting,) = json.loads((tmp_path / "benchmark.json").read_text())["sgnet"]["settings"]
    assert setting["counts"] == [504] and setting["count_ok"] is False
    ratios = json.loads((tmp_path / "benchmark.json").read_text())["ratios"]
    assert ratios and all("goal" not in r and "pass" not in r for r in ratios)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)

    def helper(self, x):
        return x * 2

    def forward(self, x):
        return self.helper(self.second(self.first(x)))


def test_part_timer_splits_frames_and_restores_the_model():
    toy = _Toy()
    timer = PartTimer(torch.device("cpu"))
    probes = [Probe(toy.first, "a", "b"), Probe(toy, "c", "d", "helper")]
    with timer.instrument(probes):
        with timer.frame() as parts:
            toy(torch.ones(2, 4))
        assert set(parts) == {"other", "a", "b", "c", "d"}
        assert all(v >= 0 for v in parts.values())
        with pytest.raises(ValueError), timer.frame():
            raise ValueError("a failing frame")
        timer.mark("ignored outside a frame")
    assert not toy.first._forward_hooks and not toy.first._forward_pre_hooks
    assert "helper" not in vars(toy)
    assert latency_stats([3.0, 1.0, 2.0])["median"] == 2.0


def test_norm_statistics_are_estimated_from_the_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), FrozenBatchNorm2d(8), nn.Conv2d(8, 8, 3))
    x = torch.randn(2, 3, 16, 16) * 50 + 7
    assert estimate_norm_statistics(model, lambda: model(x)) == 1
    with torch.no_grad():
        normalised = model[1](model[0](x))
    assert normalised.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (normalised.var(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    assert not model[1]._forward_pre_hooks


def test_backends_side_by_side_with_forced_box_sizes(tmp_path):
    args = ["--device", "cpu", "--threads", "1", "--size", "128x96", "--frames", "2"]
    args += ["--warmup", "1", "--detections", "4", "--skip-baseline", "--output", str(tmp_path)]
    args += ["--backends", "eager", "amp", "torchscript", "onnx", "--box-sides", "16", "48"]
    # a CPU without native bf16, whatever this one is: autocast falls back to fp32 and says so
    env = {**os.environ, CPU_BF16_ENV: "0"}
    proc = run_python(TOOL, *args, *TINY_SGNET, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "benchmark.json").read_text())
    keys = ["sgnet", "sgnet@amp", "sgnet@torchscript", "sgnet@onnx"]
    assert [c["model"] for c in results["configs"]] == keys
    assert [c["backend"] for c in results["configs"]] == ["eager", "amp", "torchscript", "onnx"]
    for key in keys:
        (setting,) = results[key]["settings"]
        assert setting["counts"] == [4, 4], (key, setting["counts"])
        # the frames are the network input: sides of 16-48 px (fewer where clipped)
        assert 12**2 <= setting["box_area_px"]["mean"] <= 48**2, setting["box_area_px"]
        assert "forced boxes of sides 16-48 px" in results[key]["init"]
    assert results["sgnet@torchscript"]["label"] == "SG-Net [TorchScript]"
    assert results["sgnet@amp"]["label"] == "SG-Net [autocast requested, fp32: no native bf16]"
    # once each, though the model is built for every setting
    assert proc.stderr.count("--backends amp is ignored: the CPU") == 1
    assert proc.stderr.count("TEST.AMP.ENABLED is ignored: the CPU") == 1
    assert results["environment"]["cpu_bf16_native"] is False
    assert results["environment"]["cpu_environment"][CPU_BF16_ENV] == "0"
    ratios = {r["name"]: r for r in results["ratios"]}
    for key in keys[1:]:
        expected = (
            results[key]["settings"][0]["latency_ms"]["median"]
            / results["sgnet"]["settings"][0]["latency_ms"]["median"]
        )
        assert ratios[f"{key}_vs_eager_4"]["value"] == pytest.approx(expected)
        # an export's graphs run outside the modules' probes: no share of the frame per part
        exported = key.endswith(("@torchscript", "@onnx"))
        assert (f"{key}_assembly_share" in ratios) != exported
        assert (f"{key}_heads_share" in ratios) != exported
        assert ("the exported graphs' time" in results[key]["init"]) == exported
    assert "SG-Net [ONNX Runtime] / eager latency at 4 detections" in proc.stdout


def test_box_sizes_follow_the_stated_distribution():
    sizes = BoxSizes()
    wh = sizes.sample(30000, key=3)
    assert torch.equal(wh, sizes.sample(30000, key=3))
    assert not torch.equal(wh, sizes.sample(30000, key=4))
    side, aspect = (wh[:, 0] * wh[:, 1]).sqrt(), wh[:, 0] / wh[:, 1]
    assert side.min() >= 32 - 1e-3 and side.max() <= 256 + 1e-3
    assert aspect.min() >= 0.5 - 1e-4 and aspect.max() <= 2 + 1e-4
    # a third in each of YouTube-VIS's size ranges at 640x360 (64 and 128 px sides)
    for low, high in ((32, 64), (64, 128), (128, 257)):
        share = float(((side >= low) & (side < high)).float().mean())
        assert abs(share - 1 / 3) < 0.02, (low, high, share)
    assert abs(float((side**2).mean()) - (256**2 - 32**2) / (2 * np.log(8))) < 300
    with pytest.raises(ValueError, match="min_side <= max_side"):
        BoxSizes(64, 32)


def _tiny_cfg(arch):
    if arch == "SGNet":
        from test_sgnet import tiny_cfg

        return tiny_cfg()
    if arch == "SipMaskVIS":
        from test_sipmask import tiny_cfg

        return tiny_cfg()
    from test_stmask import tiny_cfg

    return tiny_cfg()


@pytest.mark.parametrize("arch", ["SGNet", "SipMaskVIS", "STMask"])
def test_forced_box_sizes_reach_the_detections(arch):
    from detectron2.modeling import build_model

    cfg = _tiny_cfg(arch)  # its config imports the method's package, which registers it
    adapter = benchmark_adapter(arch)
    cfg = adapter.force_detections(cfg, 20)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    sizes = BoxSizes(8, 24, seed=1)
    assert "sides 8-24 px" in adapter.force_box_sizes(model, sizes)
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        out = model.inference_frame({"image": image, "height": 64, "width": 96, "is_first": True})
        again = model.inference_frame({"image": image, "height": 64, "width": 96})
    assert len(out) == 20 and len(again) >= 20  # STMask also shows the objects it carries
    # the model runs its own code on the forced graph outputs: weights and methods unchanged
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert not {"detect", "inference_frame"} & set(vars(model)) and "detect" not in vars(
        getattr(model, "fcos", model)
    )
    boxes = out.pred_boxes.tensor
    inside = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < 96) & (boxes[:, 3] < 64)
    assert inside.sum() >= 5
    w, h = (boxes[:, 2] - boxes[:, 0])[inside], (boxes[:, 3] - boxes[:, 1])[inside]
    side, aspect = (w * h).sqrt(), w / h
    assert side.min() >= 8 - 1e-3 and side.max() <= 24 + 1e-3
    assert aspect.min() >= 0.5 - 1e-3 and aspect.max() <= 2 + 1e-3
    if arch == "STMask":
        return
    # centred on an FCOS location of its level (x = stride * (i + 0.5))
    centres = (boxes[inside, :2] + boxes[inside, 2:]) / 2
    strides = torch.tensor(cfg.MODEL.FCOS.FPN_STRIDES, dtype=torch.float32)
    on_grid = [
        bool(((c / strides[:, None] - 0.5).round() == c / strides[:, None] - 0.5).all(1).any())
        for c in centres
    ]
    assert all(on_grid), centres


def test_every_vis_meta_arch_has_an_adapter_and_unknown_ones_are_named():
    from detectron2.modeling import META_ARCH_REGISTRY

    from vis_d2.config import get_cfg
    from vis_d2.modeling import VISModel

    get_cfg()  # loads every installed method package
    vis = {name for name, cls in META_ARCH_REGISTRY if issubclass(cls, VISModel)}
    assert vis == {"SGNet", "SipMaskVIS", "STMask"}
    assert vis | {"GeneralizedRCNN"} <= {name for name, _ in BENCHMARK_ADAPTER_REGISTRY}
    with pytest.raises(KeyError, match="NoSuchNet has no benchmark adapter .registered: "):
        benchmark_adapter("NoSuchNet")


def test_goal_files_are_checked(tmp_path):
    bad = tmp_path / "goals.yaml"
    bad.write_text("scaling: 1.1\nspeedup: 2\n")
    with pytest.raises(ValueError, match=r"goals.yaml: unknown goals \['speedup'\]"):
        load_goals(bad)
    bad.write_text("scaling: fast\n")
    with pytest.raises(ValueError, match="goal scaling must be a number, got 'fast'"):
        load_goals(bad)
    assert load_goals(SPEED_GOALS)["heads_share"] == 15
