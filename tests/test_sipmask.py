"""SipMask-VIS (projects/SipMaskVIS): the numerical checks of its parts, the model at tiny sizes
through the real mapper, and every tool on it."""

import json
import math
import os

import pytest
import torch
from conftest import REPO, datasets_env, run_python, training_batch
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage
from sipmask.feature_align import FeatureAlign
from sipmask.losses import alignment_weights
from sipmask_vis import SipMaskVIS, add_sipmask_vis_config
from sipmask_vis.losses import jitter_boxes, track_loss
from torch.nn import functional as F

from vis_d2.config import get_cfg
from vis_d2.data import YTVISTestMapper, frame_instances
from vis_d2.export import ExportedModel, compare_frames, export_model
from vis_d2.layers import DeformConv
from vis_d2.modeling.common import read_at_centres
from vis_d2.modeling.mask_windows import MaskWindows, mask_loss

PROJECT = REPO / "projects" / "SipMaskVIS"
CONFIG = str(PROJECT / "configs" / "synthetic" / "SipMaskVIS_R18_synthetic.yaml")
TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "MODEL.SIPMASK.BASIS_DIM", "32",
    "MODEL.SIPMASK.EMBED_DIM", "16",
    "MODEL.SIPMASK.TRACK_CONVS", "1",
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


# ------------------------------------------------------------------- the parts' numbers


def test_config_keys_come_from_the_installed_package():
    cfg = get_cfg()  # vis_d2's entry point finds the method package's keys
    assert cfg.MODEL.SIPMASK.SUB_REGIONS == 2 and cfg.MODEL.SIPMASK.NUM_BASES == 32
    assert cfg.MODEL.SIPMASK.EMBED_DIM == 512 and cfg.MODEL.TRACKER.MATCH_COEFFS == (1.0, 2.0, 10.0)
    assert cfg.MODEL.FCOS.NMS_TYPE == "standard"  # the method's choices are in its Base config
    base = get_cfg()
    base.merge_from_file(str(PROJECT / "configs" / "SipMaskVIS_R50.yaml"))
    assert (base.MODEL.FCOS.NMS_TYPE, base.MODEL.FCOS.LOC_LOSS_TYPE) == ("fast", "iou")
    assert base.MODEL.TRACKER.NAME == "EmbeddingTracker"
    with pytest.raises(AssertionError, match="Non-existent key: MODEL.SIPMASK.NO_SUCH_KEY"):
        get_cfg().merge_from_list(["MODEL.SIPMASK.NO_SUCH_KEY", "1"])
    from detectron2.config import get_cfg as detectron2_cfg

    own = add_sipmask_vis_config(detectron2_cfg())  # what the entry point adds, and only that
    assert set(own.MODEL.SIPMASK) == set(cfg.MODEL.SIPMASK)


def test_alignment_weights_spec_values():
    w = alignment_weights(torch.tensor([0.9, 0.5]), torch.tensor([0.8, 0.4]), torch.tensor([0, 0]))
    assert torch.allclose(w, torch.tensor([1.56505, 0.43474]), atol=1e-5)
    # normalised per image: a second image's weights do not change the first's
    both = alignment_weights(
        torch.tensor([0.9, 0.5, 0.1]), torch.tensor([0.8, 0.4, 0.3]), torch.tensor([0, 0, 1])
    )
    assert torch.allclose(both[:2], w) and both[2].item() == pytest.approx(1 / (1 + 1e-4 / 0.03))


def test_mask_loss_normalisation():
    def windows(logits):
        return MaskWindows(logits, torch.ones_like(logits, dtype=torch.bool), torch.zeros(1, 2))

    target = (torch.rand(1, 6, 9) > 0.5).float()
    perfect = mask_loss(windows(torch.where(target > 0, 30.0, -30.0)), target)
    assert perfect.item() < 1e-10
    for h, w in ((4, 4), (10, 25)):  # p = 0.5 everywhere: ln 2 per instance, any box size
        half = windows(torch.zeros(1, h, w))
        assert mask_loss(half, torch.ones(1, h, w)).item() == pytest.approx(math.log(2))
        weighted = mask_loss(half, torch.ones(1, h, w), torch.tensor([0.5]))
        assert weighted.item() == pytest.approx(0.5 * math.log(2))


def test_feature_align_zero_offsets_is_the_plain_conv_forward_and_backward():
    align = FeatureAlign(32, deform_groups=4)
    assert align.conv.offset_channels == 72 and (align.conv_offset.weight == 0).all()
    x = torch.randn(2, 32, 7, 9, requires_grad=True)
    ltrb = torch.rand(2, 4, 7, 9) * 3
    out = align(x, ltrb)
    expected = torch.relu(align.norm(F.conv2d(x, align.conv.weight, padding=1)))
    assert torch.allclose(out, expected, atol=1e-5)
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0 and align.conv.weight.grad.abs().sum() > 0
    assert align.conv_offset.weight.grad.abs().sum() > 0  # the offsets learn from there


def test_deform_conv_offsets_are_dy_then_dx():
    conv = DeformConv(1, 1, 1, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(20.0).view(1, 1, 4, 5)
    down = torch.zeros(1, 2, 4, 5)
    down[:, 0] = 1.0  # dy = 1: every output reads the pixel below
    assert torch.equal(conv(x, down)[0, 0, :3], x[0, 0, 1:])
    right = torch.zeros(1, 2, 4, 5)
    right[:, 1] = 1.0
    assert torch.equal(conv(x, right)[0, 0, :, :4], x[0, 0, :, 1:])


def test_embedding_lookup_cell():
    maps = torch.arange(3 * 4.0).view(1, 1, 3, 4)
    box = torch.tensor([[15.9, 6.1, 19.9, 10.1]])  # centre (17.9, 8.1) px
    assert read_at_centres(maps, torch.tensor([0]), box, 8).item() == maps[0, 0, 1, 2]


def test_reference_box_jitter_bounds():
    torch.manual_seed(0)
    boxes = torch.tensor([[10.0, 20.0, 110.0, 70.0]]).repeat(2000, 1)
    jittered = jitter_boxes(boxes, 0.05)
    w, h = 100.0, 50.0
    shift = (jittered[:, :2] + jittered[:, 2:]) / 2 - torch.tensor([60.0, 45.0])
    assert (shift[:, 0].abs() <= 0.05 * w + 1e-4).all() and (
        shift[:, 1].abs() <= 0.05 * h + 1e-4
    ).all()
    scale = (jittered[:, 2:] - jittered[:, :2]) / torch.tensor([w, h])
    assert (scale >= 0.95 - 1e-6).all() and (scale <= 1.05 + 1e-6).all()
    assert shift[:, 0].abs().max() > 0.04 * w and scale.min() < 0.96  # it does jitter


def test_track_loss_targets_and_accuracy():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embeddings = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    loss, accuracy = track_loss(embeddings, ref, torch.tensor([1, 2, 0]))
    assert accuracy.item() == 1.0 and loss.item() < 0.02
    _, wrong = track_loss(embeddings, ref, torch.tensor([2, 1, 1]))
    assert wrong.item() == 0.0


# --------------------------------------------------------------------- the model


# the training keys of SipMaskVIS_R50_authors.yaml
AUTHORS_TRAINING = (
    "MODEL.SIPMASK.ALIGN_IOU_OFFSET", "2.0",
    "MODEL.SIPMASK.TRACK_MIN_BOX_AREA", "True",
    "MODEL.SIPMASK.TRACK_LOSS_AVERAGE", "per_image",
    "MODEL.SIPMASK.CELL_RULE", "index",
    "INPUT.RESIZE_BACKEND", "opencv",
)  # fmt: skip


@pytest.mark.parametrize(
    "ref_frame_losses, authors", [(False, False), (True, False), (False, True)]
)
def test_losses_and_gradients_reach_every_part(synthetic, ref_frame_losses, authors):
    _, train, _ = synthetic
    cfg = tiny_cfg(
        "MODEL.SIPMASK.REF_FRAME_LOSSES", str(ref_frame_losses), *(AUTHORS_TRAINING * authors)
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, SipMaskVIS)
    # boxes of 4 strides: the masks of freshly initialised (empty) boxes are not learned
    torch.nn.init.constant_(model.fcos.head.bbox_pred.bias, 2.0)
    with EventStorage(0) as storage:
        losses = model(training_batch(cfg, train))
        assert 0 <= storage.latest()["sipmask/match_acc"][0] <= 1
    assert set(losses) == {
        "loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_track"
    }  # fmt: skip
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for part in ("feature_align", "coefficients", "basis", "track_head", "fcos.head.cls_tower"):
        grads = [p.grad for p in model.get_submodule(part).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, part


@pytest.mark.parametrize(
    "key", ["TRACK_LOSS_AVERAGE", "CELL_RULE", "MASK_RESIZE"]
)
def test_unknown_choices_name_their_key(key):
    with pytest.raises(ValueError, match=f"MODEL.SIPMASK.{key} 'nope'"):
        build_model(tiny_cfg(f"MODEL.SIPMASK.{key}", "nope"))


def test_frames_without_instances_train(synthetic):
    _, train, _ = synthetic
    cfg = tiny_cfg()
    model = build_model(cfg)
    batch = training_batch(cfg, train)
    for sample in batch:  # no instance in either frame of any pair
        for key, image in (("instances", "image"), ("ref_instances", "ref_image")):
            sample[key] = frame_instances([], tuple(sample[image].shape[-2:]))
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0 and losses["loss_track"].item() == 0
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.track_head.parameters())  # DDP needs them


def test_video_inference_tracks_and_export_parity(synthetic, tmp_path):
    _, _, val = synthetic
    cfg = tiny_cfg("MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "8")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = YTVISTestMapper(cfg)(val[0])
    with torch.no_grad():
        (out,) = model([video])
    frames = out["frames"]
    assert [len(f) for f in frames] == [8] * video["length"]
    first = frames[0]
    assert first.pred_masks.shape[1:] == (video["height"], video["width"])
    assert first.embeddings.shape == (8, 16) and first.track_ids.tolist() == list(range(8))
    for frame in frames[1:]:
        assert len(set(frame.track_ids.tolist())) == len(frame)
    # the memory is emptied at every video (reset does not depend on what the frame holds)
    assert len(model.tracker) >= 8
    model.reset()
    assert len(model.tracker) == 0 and model.tracker.next_id == 0
    with torch.no_grad():
        (again,) = model([video])
    assert [f.track_ids.tolist() for f in again["frames"]] == [f.track_ids.tolist() for f in frames]
    images = [video["frames"][i]["image"] for i in range(2)]
    folder = export_model(model, cfg, images, tmp_path / "e")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.yaml", "export.json", "frame.ts", "weights.pth"
    ]  # fmt: skip
    agreement = compare_frames(frames, ExportedModel(folder).inference_video(video)["frames"])
    assert agreement["same_counts"] and agreement["same_track_ids"], agreement
    assert agreement["max_box_diff"] < 1e-3 and agreement["min_mask_iou"] > 0.99, agreement
    onnx = export_model(model, cfg, images, tmp_path / "onnx", fmt="onnx")
    agreement = compare_frames(frames, ExportedModel(onnx).inference_video(video)["frames"])
    assert agreement["same_counts"] and agreement["same_track_ids"], agreement
    assert agreement["max_box_diff"] < 1e-3 and agreement["min_mask_iou"] > 0.99, agreement


def test_detection_coefficients_are_the_maps_at_the_detection_cells():
    cfg = tiny_cfg("MODEL.FCOS.INFERENCE_TH_TEST", "0.0")
    model = build_model(cfg).eval()
    strides = model.fcos.strides
    maps = [torch.randn(1, 4 * 32, 96 // s, 128 // s) for s in strides]
    levels = torch.tensor([0, 2, 1, 0])
    cells = torch.tensor([[3, 5], [1, 2], [0, 7], [11, 15]])  # (y, x) on each level's map
    widths = torch.tensor([m.shape[-1] for m in maps])[levels]
    det = Instances((96, 128), fpn_levels=levels, loc_inds=cells[:, 0] * widths + cells[:, 1])
    coef = model.detection_coefficients(maps, det)
    assert coef.shape == (4, 4, 32)
    for i, (level, (y, x)) in enumerate(zip(levels.tolist(), cells.tolist(), strict=True)):
        expected = maps[level][0, :, y, x].view(4, 32)  # sub-region q: channels 32q ... 32q + 31
        assert torch.equal(coef[i], expected)


# ---------------------------------------------------------------------- the tools


def test_every_tool_runs_it_unchanged(synthetic, tmp_path):
    """train_net (training, --resume, --eval-only), demo, export_model and benchmark, with the
    method's config and nothing else."""
    env = datasets_env(synthetic[0], tmp_path)
    out = tmp_path / "out"
    train = [
        str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *TINY,
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    proc = run_python(*train, "SOLVER.MAX_ITER", "1", env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    resumed = run_python(*train[:1], "--resume", *train[1:], "SOLVER.MAX_ITER", "2", env=env,
                         timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in metrics if "loss_track" in m] == [0, 1]
    assert any("sipmask/match_acc" in m for m in metrics)
    weights = str(out / "model_final.pth")
    evaluated = run_python(train[0], "--config-file", CONFIG, "--eval-only", *TINY,
                           "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "eval"),
                           env=env, timeout=600)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "inference" / "synthetic_vis_val" / "results.json").is_file()

    video = (
        synthetic[0]
        / "valid"
        / "JPEGImages"
        / sorted(os.listdir(synthetic[0] / "valid" / "JPEGImages"))[0]
    )
    demo = run_python(str(REPO / "tools" / "demo.py"), "--config-file", CONFIG, "--input",
                      str(video), "--output", str(tmp_path / "demo.mp4"), "--json", *TINY,
                      "MODEL.WEIGHTS", weights, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
                      env=env, timeout=300)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (tmp_path / "demo.mp4").stat().st_size > 0

    exported = run_python(str(REPO / "tools" / "export_model.py"), "--config-file", CONFIG,
                          "--output", str(tmp_path / "exported"), "--sample-input", str(video),
                          "--check-frames", "2", *TINY, "MODEL.WEIGHTS", weights,
                          "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "export vs eager on 2 frame(s)" in exported.stdout + exported.stderr

    bench = run_python(str(REPO / "tools" / "benchmark.py"), "--device", "cpu", "--threads",
                       "1", "--size", "96x64", "--frames", "1", "--warmup", "1",
                       "--detections", "3", "--skip-baseline", "--output", str(tmp_path / "b"),
                       "--config-file", CONFIG, "--config-file",
                       str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml"),
                       "MODEL.FPN.OUT_CHANNELS", "32", timeout=300)  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    results = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert results["sipmaskvis"]["label"] == "SipMask-VIS" and results["sgnet"]["label"] == "SG-Net"
    (setting,) = results["sipmaskvis"]["settings"]
    assert setting["counts"] == [3] and {"mask/bases", "track/embeddings", "tracker"} <= set(
        setting["parts_ms"]
    )
