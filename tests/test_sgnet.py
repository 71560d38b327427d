"""The SGNet meta-architecture at tiny sizes: losses, gradients, determinism, inference, CLI."""

import json
import os

import pytest
import torch
from conftest import REPO, datasets_env, run_python, training_batch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from vis_d2.config import get_cfg
from vis_d2.data import YTVISTestMapper, frame_instances
from vis_d2.modeling.common import cap_per_image

TINY = [
    "MODEL.DEVICE",
    "cpu",
    "MODEL.WEIGHTS",
    "",
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
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "96",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "96",
]


def tiny_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml"))
    cfg.merge_from_list(TINY)
    return cfg


def _losses(model, batch, iteration=0):
    with EventStorage(iteration):
        return model(batch)


def test_losses_are_finite_and_gradients_reach_every_head(synthetic):
    _, train, _ = synthetic
    cfg = tiny_cfg()
    # at initialisation the predicted boxes are empty, so the default (predicted) mask box would
    # train no mask yet
    cfg.MODEL.SGNET.MASK_BOX = "gt"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    losses = _losses(model, training_batch(cfg, train))
    assert set(losses) == {
        "loss_fcos_cls",
        "loss_fcos_loc",
        "loss_fcos_ctr",
        "loss_mask",
        "loss_track",
    }
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    for name in (
        "backbone",
        "fcos.head.cls_logits",
        "fcos.head.bbox_pred",
        "fcos.head.ctrness",
        "base_mask",
        "sam",
        "movement_head",
    ):
        module = model.get_submodule(name)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"


def test_cap_per_image_keeps_at_most_cap_of_each_image_and_zero_keeps_all():
    im_inds = torch.tensor([0, 0, 0, 1, 2, 2])
    torch.manual_seed(0)
    kept = cap_per_image(im_inds, 2)
    assert kept.tolist() == sorted(kept.tolist())
    assert torch.bincount(im_inds[kept], minlength=3).tolist() == [2, 1, 2]
    assert cap_per_image(im_inds, 0).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="0: no cap"):
        cap_per_image(im_inds, -1)


def test_mask_positive_cap_zero_learns_the_masks_of_every_positive(synthetic):
    _, train, _ = synthetic
    mask_loss = {}
    for cap in ("0", "1000000"):
        cfg = tiny_cfg()
        cfg.merge_from_list(["MODEL.SGNET.MAX_MASK_POS_PER_IMAGE", cap])
        cfg.MODEL.SGNET.MASK_BOX = "gt"  # the predicted boxes are empty at initialisation
        seed_all_rng(0)
        model = build_model(cfg).train()
        mask_loss[cap] = _losses(model, training_batch(cfg, train))["loss_mask"]
    assert mask_loss["0"] > 0
    assert mask_loss["0"] == mask_loss["1000000"]


def test_two_iterations_are_deterministic(synthetic):
    _, train, _ = synthetic
    cfg = tiny_cfg()
    cfg.MODEL.SGNET.MASK_BOX = "gt"

    def run():
        seed_all_rng(0)  # torch (weights, mask-positive subsets), numpy (augmentation), random
        model = build_model(cfg).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        history = []
        for it in range(2):
            losses = _losses(model, training_batch(cfg, train, seed=it), it)
            history.append({k: v.item() for k, v in losses.items()})
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        return history

    first, second = run(), run()
    assert first == second
    assert all(v > 0 and v == v for step in first for v in step.values())


def test_zero_instance_frames_and_degenerate_boxes_train(synthetic):
    _, train, _ = synthetic
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = training_batch(cfg, train)
    size = tuple(batch[0]["image"].shape[-2:])
    batch[0]["instances"] = frame_instances([], size)
    batch[0]["ref_instances"] = frame_instances([], size)
    tiny = Instances(size)
    tiny.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 11.0, 11.0]]))  # a 1-pixel object
    tiny.gt_classes = torch.tensor([1])
    mask = torch.zeros(1, *size, dtype=torch.bool)
    mask[0, 10, 10] = True
    tiny.gt_masks = BitMasks(mask)
    tiny.gt_ids = torch.tensor([5])
    batch[1]["instances"] = tiny
    batch[1]["ref_instances"] = frame_instances([], size)
    losses = _losses(model, batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_video_inference_tracks_and_original_resolution(synthetic):
    _, _, val = synthetic
    cfg = tiny_cfg()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # an untrained model: keep detections anyway
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = YTVISTestMapper(cfg)(val[0])
    with torch.no_grad():
        (out,) = model([video])
    frames = out["frames"]
    assert len(frames) == video["length"]
    first = frames[0]
    assert 0 < len(first) <= cfg.MODEL.FCOS.POST_NMS_TOPK_TEST
    assert first.image_size == (video["height"], video["width"])
    assert first.pred_masks.shape[1:] == (video["height"], video["width"])
    assert first.pred_masks.dtype == torch.bool
    assert sorted(first.track_ids.tolist()) == list(range(len(first)))
    for frame in frames[1:]:
        assert len(set(frame.track_ids.tolist())) == len(frame)  # ids unique within a frame
    # a new video restarts the ids
    with torch.no_grad():
        (again,) = model([video])
    assert again["frames"][0].track_ids.tolist() == first.track_ids.tolist()


def test_train_net_trains_and_evaluates(synthetic, tmp_path):
    env = datasets_env(synthetic[0], tmp_path)
    out = tmp_path / "out"
    args = [
        str(REPO / "tools" / "train_net.py"),
        "--config-file",
        str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml"),
        *TINY,
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.WARMUP_ITERS",
        "1",
        "DATALOADER.NUM_WORKERS",
        "0",
        "TEST.EVAL_PERIOD",
        "0",
        "OUTPUT_DIR",
        str(out),
    ]
    # outputs get the mode the umask gives (0666 & ~0o027), also those written atomically
    proc = run_python(*args, env=env, timeout=600, umask=0o027)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    inference = "inference/synthetic_vis_val"
    written = ["model_final.pth", "last_checkpoint", "metrics.json",
               f"{inference}/results.json", f"{inference}/results.zip"]
    assert {name: oct(os.stat(out / name).st_mode & 0o777) for name in written} == {
        name: oct(0o640) for name in written
    }
    log = proc.stdout + proc.stderr
    assert "Warning" not in log, proc.stderr[-3000:]
    assert "training starts from random initialisation" in log
    assert "ms/frame" in log and "FPS" in log
    assert (out / "model_final.pth").is_file()
    results = json.loads((out / "inference" / "synthetic_vis_val" / "results.json").read_text())
    assert isinstance(results, list)
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("loss_mask" in m and "loss_track" in m for m in metrics)

    evaluated = run_python(
        *args[:3],
        "--eval-only",
        *TINY,
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
        env=env,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "inference" / "synthetic_vis_val" / "results.zip").is_file()
    assert "synthetic_vis_val" in evaluated.stdout + evaluated.stderr


def test_train_net_explains_unreachable_weights_and_missing_files(synthetic, tmp_path):
    env = datasets_env(synthetic[0], tmp_path)
    args = [str(REPO / "tools" / "train_net.py"), "--config-file",
            str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml"), *TINY,
            "OUTPUT_DIR", str(tmp_path / "out")]
    url = run_python(*args, "MODEL.WEIGHTS", "https://unreachable.invalid/R-50.pkl", env=env,
                     timeout=300)
    assert url.returncode != 0
    assert "could not fetch MODEL.WEIGHTS https://unreachable.invalid/R-50.pkl" in url.stderr
    missing = run_python(*args[:3], "--eval-only", *args[3:], "MODEL.WEIGHTS",
                         str(tmp_path / "nope.pth"), env=env, timeout=300)
    assert missing.returncode != 0
    assert f"MODEL.WEIGHTS file {tmp_path / 'nope.pth'} does not exist" in missing.stderr
