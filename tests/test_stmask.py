"""STMask (projects/STMask) at tiny sizes through the real mapper, and every tool on it."""

import json

import pytest
import torch
from conftest import REPO, datasets_env, run_python, training_batch
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from stmask import STMask

from vis_d2.config import get_cfg
from vis_d2.data import YTVISTestMapper, frame_instances
from vis_d2.export import ExportedModel, compare_frames, export_model

CONFIG = str(REPO / "projects" / "STMask" / "configs" / "synthetic" / "STMask_R18_synthetic.yaml")
TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.STMASK.PROTO_DIM", "16",
    "MODEL.STMASK.EXTRA_CONVS", "1",
    "MODEL.STMASK.EMBED_DIM", "8",
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96",
]  # fmt: skip


def tiny_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(TINY + list(opts))
    return cfg


@pytest.mark.parametrize("fcb", ["ada", "ali", "none"])
def test_losses_and_gradients_reach_every_part(synthetic, fcb):
    _, train, _ = synthetic
    cfg = tiny_cfg("MODEL.STMASK.FCB", fcb, "MODEL.STMASK.FCB_BRANCHES", "['cls', 'mask']")
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, STMask) and model.num_classes == 6
    with EventStorage(0):
        losses = model(training_batch(cfg, train))
    assert set(losses) == {
        "loss_cls", "loss_box", "loss_ctr", "loss_mask", "loss_track", "loss_box_shift",
        "loss_mask_shift",
    }  # fmt: skip
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    parts = ("protonet", "head.towers.track", "head.last.cls", "head.last.mask")
    for part in (*parts, "temporal_net.box_shift", "temporal_net.coeff_shift"):
        grads = [p.grad.abs().sum() for p in model.get_submodule(part).parameters()]
        assert sum(grads) > 0, part


def test_class_aware_matching_trains_through_the_mapper(synthetic):
    _, train, _ = synthetic
    losses = {}
    for aware in (False, True):
        cfg = tiny_cfg("MODEL.STMASK.CLASS_AWARE_MATCHING", str(aware))
        torch.manual_seed(0)
        model = build_model(cfg)
        with EventStorage(0):
            losses[aware] = model(training_batch(cfg, train))
        assert all(torch.isfinite(v) for v in losses[aware].values()), losses[aware]
        sum(losses[aware].values()).backward()
    # the same weights and batch, other positives: the classification loss differs
    assert losses[True]["loss_cls"] != losses[False]["loss_cls"]


def test_temporal_fusion_off_and_its_shift_targets(synthetic):
    _, train, _ = synthetic
    cfg = tiny_cfg("MODEL.STMASK.TF.ON", "False")
    model = build_model(cfg)
    assert model.temporal_net is None
    with EventStorage(0):
        assert "loss_box_shift" not in model(training_batch(cfg, train))
    # at initialisation TF shifts nothing (zero FCs): box shift = the GT pair's own shift
    cfg = tiny_cfg()
    model = build_model(cfg)
    features = model.backbone(torch.randn(2, 3, 64, 96))
    _, t2s, _ = model.dense_outputs(features)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [30.0, 10.0, 60.0, 50.0]])
    level = model.corr_level
    delta_box, delta_coef = model.temporal_shift(
        (features["p4"][:1], t2s[level][:1]),
        (features["p4"][1:], t2s[level][1:]),
        boxes,
        torch.zeros(2, dtype=torch.int64),
    )
    assert delta_box.shape == (2, 4) and delta_coef.shape == (2, cfg.MODEL.STMASK.NUM_PROTOS)
    assert (delta_box == 0).all() and (delta_coef == 0).all()


def test_two_iterations_are_deterministic(synthetic):
    _, train, _ = synthetic

    def run():
        seed_all_rng(0)  # the weights, and detectron2's augmentations (global numpy RNG)
        cfg = tiny_cfg()
        model = build_model(cfg)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        out = []
        for seed in (0, 1):
            with EventStorage(seed):
                losses = model(training_batch(cfg, train, seed))
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            out.append({k: v.item() for k, v in losses.items()})
        return out

    assert run() == run()


def test_frames_without_instances_train(synthetic):
    _, train, _ = synthetic
    cfg = tiny_cfg()
    model = build_model(cfg)
    batch = training_batch(cfg, train)
    for sample in batch:
        for key, image in (("instances", "image"), ("ref_instances", "ref_image")):
            sample[key] = frame_instances([], tuple(sample[image].shape[-2:]))
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_cls"] > 0 and losses["loss_mask"] == 0 and losses["loss_track"] == 0
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())  # DDP needs every one


def test_video_inference_and_export_parity(synthetic, tmp_path):
    _, _, val = synthetic
    cfg = tiny_cfg("MODEL.STMASK.TEST.SCORE_THRESH", "0.0",
                   "MODEL.STMASK.TEST.DETECTIONS_PER_FRAME", "7")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = YTVISTestMapper(cfg)(val[0])
    with torch.no_grad():
        (out,) = model([video])
    frames = out["frames"]
    assert [len(f) for f in frames] == [7] * video["length"]
    first = frames[0]
    assert first.pred_masks.shape[1:] == (video["height"], video["width"])
    assert first.pred_masks.any() and first.track_ids.tolist() == list(range(7))
    assert (first.scores >= 0).all()  # the tanh centerness is clamped at 0
    for frame in frames[1:]:
        assert len(set(frame.track_ids.tolist())) == len(frame)
    images = [video["frames"][i]["image"] for i in range(2)]
    for fmt in ("torchscript", "onnx"):
        folder = export_model(model, cfg, images, tmp_path / fmt, fmt=fmt)
        exported = ExportedModel(folder).inference_video(video)["frames"]
        agreement = compare_frames(frames, exported)
        assert agreement["same_counts"] and agreement["same_track_ids"], (fmt, agreement)
        assert agreement["max_box_diff"] < 1e-3, (fmt, agreement)
        assert agreement["min_mask_iou"] > 0.99, (fmt, agreement)


def test_train_net_eval_demo_export_and_benchmark(synthetic, tmp_path):
    env = datasets_env(synthetic[0], tmp_path)
    out = tmp_path / "out"
    train = [
        str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *TINY,
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_PERIOD", "0", "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    proc = run_python(*train, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("loss_track" in m and "loss_mask" in m for m in metrics)
    assert (out / "inference" / "synthetic_vis_val" / "results.json").is_file()
    weights = str(out / "model_final.pth")
    frames = synthetic[0] / "valid" / "JPEGImages"
    video = next(frames.iterdir())
    demo = run_python(str(REPO / "tools" / "demo.py"), "--config-file", CONFIG, "--input",
                      str(video), "--output", str(tmp_path / "demo.mp4"), *TINY,
                      "MODEL.WEIGHTS", weights, env=env, timeout=300)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    exported = run_python(str(REPO / "tools" / "export_model.py"), "--config-file", CONFIG,
                          "--output", str(tmp_path / "exported"), "--sample-input", str(video),
                          "--check-frames", "2", *TINY, "MODEL.WEIGHTS", weights,
                          "MODEL.STMASK.TEST.SCORE_THRESH", "0.0", timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    bench = run_python(str(REPO / "tools" / "benchmark.py"), "--device", "cpu", "--threads",
                       "1", "--size", "96x64", "--frames", "1", "--warmup", "1",
                       "--detections", "4", "--skip-baseline", "--output", str(tmp_path / "b"),
                       "--config-file", CONFIG, "MODEL.FPN.OUT_CHANNELS", "32",
                       timeout=300)  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    (setting,) = json.loads((tmp_path / "b" / "benchmark.json").read_text())["stmask"]["settings"]
    assert setting["counts"] == [4] and {"backbone", "head", "mask"} <= set(setting["parts_ms"])


def test_missed_objects_are_carried_by_temporal_fusion(synthetic):
    _, _, val = synthetic
    cfg = tiny_cfg("MODEL.STMASK.TEST.SCORE_THRESH", "0.0",
                   "MODEL.STMASK.TEST.DETECTIONS_PER_FRAME", "5",
                   "MODEL.TRACKER.MEMORY.MIN_SCORE", "0.01")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # positive prototypes and coefficients: masks that fill the boxes (an empty mask is not shown)
    torch.nn.init.constant_(model.protonet.output.bias, 1.0)
    for last in model.head.last["mask"]:
        torch.nn.init.constant_(last.conv.bias, 1.0)
    frames = YTVISTestMapper(cfg)(val[0])["frames"]
    first = model.inference_frame(frames[0])
    assert first.track_ids.tolist() == list(range(5))
    model.detector.score_thresh = 2.0  # no detection in the next frames: only the memory is shown
    shown = first.scores * 0.95 > 0.01  # still above MIN_SCORE after one decay
    assert 0 < int(shown.sum())
    second = model.inference_frame(frames[1])
    assert sorted(second.track_ids.tolist()) == sorted(first.track_ids[shown].tolist())
    order = torch.argsort(second.track_ids)
    # temporal fusion starts as the identity: the same boxes, the scores decayed once
    assert torch.allclose(
        second.pred_boxes.tensor[order], first.pred_boxes.tensor[shown], atol=1e-4
    )
    assert torch.allclose(second.scores[order], first.scores[shown] * 0.95)
    assert second.pred_masks.shape == first.pred_masks[shown].shape
    model.reset()
    assert len(model.tracker) == 0 and model._previous is None


def test_without_temporal_fusion_missed_objects_are_not_shown(synthetic):
    _, _, val = synthetic
    cfg = tiny_cfg("MODEL.STMASK.TF.ON", "False", "MODEL.STMASK.TEST.SCORE_THRESH", "0.0",
                   "MODEL.TRACKER.MEMORY.MIN_SCORE", "0.0")  # fmt: skip
    model = build_model(cfg).eval()
    frames = YTVISTestMapper(cfg)(val[0])["frames"]
    assert len(model.inference_frame(frames[0])) > 0
    model.detector.score_thresh = 2.0
    assert len(model.inference_frame(frames[1])) == 0 and len(model.tracker) > 0


DCN_CONFIG = CONFIG.replace("STMask_R18_synthetic", "STMask_R50_DCN_synthetic")


def test_dcn_backbone_trains_evaluates_and_exports(synthetic, tmp_path):
    env = datasets_env(synthetic[0], tmp_path)
    out = tmp_path / "out"
    train = [
        str(REPO / "tools" / "train_net.py"), "--config-file", DCN_CONFIG, *TINY,
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_PERIOD", "0", "SOLVER.MAX_ITER", "2", "SOLVER.BASE_LR", "0.05",
        "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    proc = run_python(*train, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "inference" / "synthetic_vis_val" / "results.json").is_file()
    state = torch.load(out / "model_final.pth", weights_only=False)["model"]
    offsets = [k for k in state if k.endswith("conv2_offset.weight")]
    # blocks 0 and 3 of res3 and res4 and block 0 of res5; their zero-initialised offsets learnt
    assert sorted(k.split(".bottom_up.")[1] for k in offsets) == [
        "res3.0.conv2_offset.weight", "res3.3.conv2_offset.weight", "res4.0.conv2_offset.weight",
        "res4.3.conv2_offset.weight", "res5.0.conv2_offset.weight",
    ]  # fmt: skip
    assert all(state[k].abs().sum() > 0 for k in offsets)

    cfg = get_cfg()
    cfg.merge_from_file(DCN_CONFIG)
    cfg.merge_from_list(TINY + ["MODEL.STMASK.TEST.SCORE_THRESH", "0.0"])
    model = build_model(cfg).eval()
    model.load_state_dict(state)
    video = YTVISTestMapper(cfg)(synthetic[2][0])
    with torch.no_grad():
        frames = model.inference_video(video)["frames"]
    images = [video["frames"][i]["image"] for i in range(2)]
    folder = export_model(model, cfg, images, tmp_path / "e")
    agreement = compare_frames(frames, ExportedModel(folder).inference_video(video)["frames"])
    assert agreement["same_counts"] and agreement["same_track_ids"], agreement
    assert agreement["max_box_diff"] < 1e-3 and agreement["min_mask_iou"] > 0.99, agreement


@pytest.mark.parametrize(
    "key, value",
    [
        ("MODEL.STMASK.CENTERNESS_ORDER", "location"),
        ("MODEL.STMASK.FORCED_MATCHES", "first"),
        ("MODEL.STMASK.MASK_CROP.RULE", "corner"),
        ("MODEL.STMASK.TEST.CLIP_BOXES", "none"),
        ("MODEL.TRACKER.MEMORY.OUTPUT", "all"),
        ("MODEL.TRACKER.MEMORY.CONFLICT", "keep"),
    ],
)
def test_a_bad_rule_names_its_key(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_model(tiny_cfg(key, value))
