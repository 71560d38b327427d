"""SipMask for images: the META_ARCH on detectron2's image batch, its parts shared with
SipMask-VIS, SipMask++'s re-scoring, and the paths a user runs (DatasetMapper, train_net,
--eval-only with COCOEvaluator, DefaultPredictor with Visualizer)."""

import copy
import inspect

import numpy as np
import pytest
import sipmask_vis
import torch
from conftest import REPO, datasets_env, run_python
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.utils.visualizer import Visualizer
from sipmask import SipMask, SipMaskParts
from sipmask.losses import mask_iou_loss, mask_iou_targets
from sipmask.mask_rescoring import MaskRescoring
from sipmask_vis import SipMaskVIS

from vis_d2.config import get_cfg
from vis_d2.data.synthetic.coco_json import write_coco_json

PROJECT = REPO / "projects" / "SipMask"
CONFIG = str(PROJECT / "configs" / "synthetic" / "SipMask_R18_synthetic.yaml")
TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "MODEL.SIPMASK.BASIS_DIM", "32",
    "MODEL.SIPMASK.NUM_BASES", "8",
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96",
]  # fmt: skip


def tiny_cfg(*opts: str):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([*TINY, *opts])
    return cfg


@pytest.fixture(scope="module")
def coco_split(synthetic):
    """The tiny synthetic set's frames as COCO sets (written beside its YouTube-VIS jsons),
    the training one registered with detectron2's ``register_coco_instances``."""
    root = synthetic[0]
    for split in ("train", "valid"):
        write_coco_json(root / f"{split}.json", root / f"{split}_coco.json")
    name = "sipmask_image_test_train"
    register_coco_instances(
        name, {}, str(root / "train_coco.json"), str(root / "train" / "JPEGImages")
    )
    yield root, name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def mapped(cfg, name: str, is_train: bool, count: int = 2) -> list[dict]:
    """The first ``count`` images of ``name`` through detectron2's DatasetMapper."""
    mapper = DatasetMapper(cfg, is_train)
    np.random.seed(0)  # the training flip
    return [mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(name)[:count]]


def with_large_boxes(model):
    """``model`` with every location regressing ltrb = 2 strides (boxes of 4 × 4 strides), so
    that an untrained model's positives have masks to learn."""
    with torch.no_grad():
        model.fcos.head.bbox_pred.weight.zero_()
        model.fcos.head.bbox_pred.bias.fill_(2.0)
    return model


# ------------------------------------------------------------------------------- sharing


def test_sipmask_vis_is_sipmask_parts_plus_its_track_branch():
    assert issubclass(SipMask, SipMaskParts) and issubclass(SipMaskVIS, SipMaskParts)
    for name in ("head_outputs", "positive_masks", "positive_boxes", "detection_masks"):
        assert getattr(SipMaskVIS, name) is getattr(SipMask, name) is getattr(SipMaskParts, name)
    vis = SipMaskVIS(tiny_cfg("MODEL.META_ARCHITECTURE", "SipMaskVIS"))
    image = SipMask(tiny_cfg())
    for part in ("feature_align", "coefficients", "basis"):
        assert type(getattr(vis, part)) is type(getattr(image, part))
        assert type(getattr(vis, part)).__module__.startswith("sipmask.")
    # the VIS package holds no module of its own for SipMask's parts
    vis_modules = {p.stem for p in REPO.joinpath("projects/SipMaskVIS/sipmask_vis").glob("*.py")}
    assert not vis_modules & {"feature_align", "spatial_coefficients", "basis"}
    image_keys = {k for k in image.state_dict() if not k.startswith("rescoring")}
    assert image_keys < set(vis.state_dict())  # same names: one converter layout for both
    assert inspect.getmodule(sipmask_vis.SipMaskVIS.from_config).__name__ == "sipmask_vis.sipmask"
    with pytest.raises(ValueError, match="RESCORING is SipMask\\+\\+'s"):
        SipMaskVIS(
            tiny_cfg(
                "MODEL.META_ARCHITECTURE", "SipMaskVIS", "MODEL.SIPMASK.RESCORING.ENABLED", "True"
            )
        )


# ------------------------------------------------------------------------------ training


def test_training_losses_reach_every_part(coco_split):
    _, name = coco_split
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = with_large_boxes(build_model(cfg))
    model.train()
    losses = model(mapped(cfg, name, True))
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"] > 0
    sum(losses.values()).backward()
    for part in ("coefficients", "basis", "feature_align", "backbone", "fcos.head.cls_tower"):
        module = model.get_submodule(part)
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part


# ----------------------------------------------------------------------------- inference


def test_inference_returns_instances_at_the_original_size(coco_split):
    _, name = coco_split
    cfg = tiny_cfg("MODEL.FCOS.INFERENCE_TH_TEST", "0.0")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inputs = mapped(cfg, name, False, 1)
    assert tuple(inputs[0]["image"].shape[-2:]) == (64, 96)
    inputs[0]["height"], inputs[0]["width"] = 48, 120  # shown at another size
    (out,) = model(inputs)
    inst = out["instances"]
    assert inst.image_size == (48, 120) and len(inst) == 100
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape == (100, 48, 120)
    assert set(inst.get_fields()) == {
        "pred_boxes", "scores", "pred_classes", "pred_masks", "class_scores"
    }  # fmt: skip
    raw = model.inference(inputs[0]["image"].float(), (64, 96))  # on the input, masks at it
    assert raw.image_size == (64, 96) and raw.pred_masks.shape[-2:] == (64, 96)
    scale = torch.tensor([120 / 96, 48 / 64] * 2)
    expected = raw.pred_boxes.tensor * scale
    expected[:, 0::2] = expected[:, 0::2].clamp(0, 120)
    expected[:, 1::2] = expected[:, 1::2].clamp(0, 48)
    assert torch.allclose(inst.pred_boxes.tensor, expected)
    assert torch.equal(inst.scores, raw.scores)


def test_default_predictor_and_visualizer_draw_its_output(coco_split):
    root, _ = coco_split
    cfg = tiny_cfg("MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "5")
    cfg.DATASETS.TEST = ("synthetic_coco_val",)
    torch.manual_seed(0)
    predictor = DefaultPredictor(cfg)
    frame = sorted((root / "valid" / "JPEGImages").rglob("*.jpg"))[0]
    import cv2

    image = cv2.imread(str(frame))  # BGR, as DefaultPredictor expects
    inst = predictor(image)["instances"]
    assert inst.image_size == image.shape[:2] and len(inst) == 5
    assert inst.pred_masks.shape[-2:] == image.shape[:2]
    metadata = MetadataCatalog.get("synthetic_coco_val")
    drawn = Visualizer(image[:, :, ::-1], metadata).draw_instance_predictions(inst.to("cpu"))
    pixels = drawn.get_image()
    assert pixels.shape == image.shape
    assert np.abs(pixels.astype(int) - image[:, :, ::-1].astype(int)).sum() > 0


# ------------------------------------------------------------------------------ SipMask++


def test_mask_iou_targets_and_loss_by_hand():
    probs = torch.zeros(2, 20, 20)
    probs[0, :10, :10] = 0.9  # 100 px above 0.4
    probs[1, :10, :10] = 0.3  # nothing above 0.4
    gt = torch.zeros(2, 20, 20)
    gt[0, :10, :20] = 1  # 200 px, 100 of them predicted
    gt[1, :5, :5] = 1  # 25 px: under the 100 px minimum
    ious, weights = mask_iou_targets(probs, gt, 0.4, min_gt_area=100, min_iou=0.1)
    assert ious.tolist() == pytest.approx([100 / 200.1, 0.0])
    assert weights.tolist() == [1.0, 0.0]
    loss = mask_iou_loss(torch.tensor([0.7, 5.0]), ious, weights)
    assert loss.item() == pytest.approx((0.7 - 100 / 200.1) ** 2 / 1.1)


def test_rescoring_trains_and_scores_masks(coco_split):
    _, name = coco_split
    opts = ["MODEL.SIPMASK.RESCORING.ENABLED", "True", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
            "INPUT.MIN_SIZE_TRAIN", "(256,)", "INPUT.MAX_SIZE_TRAIN", "384",
            "INPUT.MIN_SIZE_TEST", "256", "INPUT.MAX_SIZE_TEST", "384",
            "MODEL.SIPMASK.RESCORING.MIN_GT_AREA", "1.0"]  # fmt: skip
    cfg = tiny_cfg(*opts)
    torch.manual_seed(0)
    model = with_large_boxes(build_model(cfg))
    assert isinstance(model.rescoring, MaskRescoring)
    model.train()
    losses = model(mapped(cfg, name, True))
    assert torch.isfinite(losses["loss_mask_iou"]) and losses["loss_mask_iou"] > 0
    losses["loss_mask_iou"].backward()
    assert model.rescoring.score.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.coefficients.parameters())  # masks detached
    model.eval()
    inst = model(mapped(cfg, name, False, 1))[0]["instances"]
    assert len(inst) == 100 and inst.has("box_scores")
    assert not torch.equal(inst.scores, inst.box_scores)
    ratio = inst.scores / inst.box_scores
    assert (ratio >= 0).all()
    small = tiny_cfg("MODEL.SIPMASK.RESCORING.ENABLED", "True")
    with pytest.raises(ValueError, match="at least 127 pixels a side"):
        build_model(small).eval()(mapped(small, name, False, 1))


# ------------------------------------------------------------------------------- the tools


def test_train_net_trains_it_and_eval_only_prints_coco_box_and_mask_tables(coco_split, tmp_path):
    root, _ = coco_split
    env = datasets_env(root, tmp_path)
    out = tmp_path / "out"
    train = [
        str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *TINY,
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    proc = run_python(*train, "SOLVER.MAX_ITER", "2", env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    evaluated = run_python(
        train[0], "--config-file", CONFIG, "--eval-only", *TINY,
        "MODEL.WEIGHTS", str(out / "model_final.pth"), "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
        "OUTPUT_DIR", str(tmp_path / "eval"), env=env, timeout=600,
    )  # fmt: skip
    log = evaluated.stdout + evaluated.stderr
    assert evaluated.returncode == 0, log[-3000:]
    for task in ("bbox", "segm"):
        assert f"Evaluation results for {task}" in log, log[-3000:]
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    results = tmp_path / "eval" / "inference" / "synthetic_coco_val"
    assert (results / "coco_instances_results.json").is_file()


def test_demo_export_and_benchmark_run_an_image_model(coco_split, tmp_path):
    """tools/demo.py on a folder of images of two sizes and on a video (frame by frame),
    tools/export_model.py with its parity check, tools/benchmark.py against Mask R-CNN."""
    import json

    import cv2
    from detectron2.checkpoint import DetectionCheckpointer

    root, _ = coco_split
    env = datasets_env(root, tmp_path)
    torch.manual_seed(0)
    weights = tmp_path / "model.pth"
    DetectionCheckpointer(with_large_boxes(build_model(tiny_cfg())), str(tmp_path)).save("model")
    opts = [*TINY, "MODEL.WEIGHTS", str(weights), "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]
    frames = sorted((root / "valid" / "JPEGImages").rglob("*.jpg"))
    photos = tmp_path / "photos"
    photos.mkdir()
    first = cv2.imread(str(frames[0]))
    cv2.imwrite(str(photos / "a.jpg"), first)
    cv2.imwrite(str(photos / "b.png"), cv2.resize(first, (70, 50)))  # another size
    demo = [str(REPO / "tools" / "demo.py"), "--config-file", CONFIG]
    out = tmp_path / "overlays"
    proc = run_python(*demo, "--input", str(photos), "--output", str(out), "--json",
                      "--confidence-threshold", "0.0", *opts, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cv2.imread(str(out / "a.png")).shape == first.shape
    assert cv2.imread(str(out / "b.png")).shape == (50, 70, 3)
    results = json.loads((out / "photos.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1}
    assert {r["file_name"] for r in results} == {str(photos / "a.jpg"), str(photos / "b.png")}
    assert {r["category_id"] for r in results} <= set(range(1, 7))
    assert all(set(r) >= {"bbox", "score", "segmentation"} for r in results)

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, first.shape[1::-1])
    for frame in frames[:3]:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    proc = run_python(*demo, "--input", str(video), "--output", str(tmp_path / "v"), "--json",
                      *opts, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "v" / "clip.mp4").is_file()
    assert "no tracking" in proc.stdout + proc.stderr
    per_frame = json.loads((tmp_path / "v" / "clip.json").read_text())
    assert {r["image_id"] for r in per_frame} <= {0, 1, 2}

    export = run_python(str(REPO / "tools" / "export_model.py"), "--config-file", CONFIG,
                        "--output", str(tmp_path / "exported"), "--sample-input", str(video),
                        *opts, env=env, timeout=300)  # fmt: skip
    assert export.returncode == 0, export.stderr[-3000:]
    log = export.stdout + export.stderr
    assert "export vs eager on 3 frame(s)" in log and "'same_counts': True" in log, log
    evaluated = run_python(str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG,
                           "--eval-only", "--exported", str(tmp_path / "exported"), *TINY,
                           "OUTPUT_DIR", str(tmp_path / "eval"), env=env, timeout=300)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "Evaluation results for segm" in evaluated.stdout + evaluated.stderr

    bench = run_python(str(REPO / "tools" / "benchmark.py"), "--config-file", CONFIG,
                       "--device", "cpu", "--threads", "1", "--size", "96x64", "--frames", "1",
                       "--warmup", "0", "--detections", "3", "--output", str(tmp_path / "b"),
                       *TINY, env=env, timeout=600)  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-3000:]
    report = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert "sipmask" in json.dumps(report) and "mask_rcnn" in json.dumps(report)


@pytest.mark.parametrize(
    "name, cls_convs, norm, deformable, rescoring",
    [
        ("SipMask_R50_1x.yaml", 3, True, 0, False),
        ("SipMask_R50_544_6x.yaml", 1, False, 0, False),
        ("SipMaskPP_R101_GN_544_10x.yaml", 1, True, 3 + 23 + 4, True),
    ],
)
def test_released_model_configs_build_their_architecture(name, cls_convs, norm, deformable,
                                                          rescoring):  # fmt: skip
    from torch import nn

    from vis_d2.layers import DeformConv

    cfg = get_cfg()
    cfg.merge_from_file(str(PROJECT / "configs" / name))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    tower = model.fcos.head.cls_tower
    assert sum(isinstance(m, nn.Conv2d) for m in tower) == cls_convs
    assert any(isinstance(m, nn.GroupNorm) for m in tower) == norm
    assert isinstance(model.feature_align.norm, nn.GroupNorm) == norm
    blocks = [m for m in model.backbone.bottom_up.modules() if isinstance(m, DeformConv)]
    assert len(blocks) == deformable  # every block of res3-res5 (R-101: 4 + 23 + 3)
    assert (model.rescoring is not None) == rescoring
    out = model([{"image": torch.zeros(3, 256, 256), "height": 300, "width": 310}])
    assert out[0]["instances"].image_size == (300, 310)


def test_the_real_time_recipe_trains_through_the_image_trainers_loader(coco_split):
    """The 544 configs' data path: SSD-style augmentation and the exact-size resize, through
    ImageTrainer's loader (BoxAwareDatasetMapper), into a training step."""
    from vis_d2.engine import ImageTrainer

    _, name = coco_split
    cfg = tiny_cfg(
        "INPUT.SSD_AUGMENTATION.ENABLED", "True", "INPUT.FIXED_SIZE_TRAIN", "(72, 80)",
        "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
    )  # fmt: skip
    cfg.DATASETS.TRAIN = (name,)
    batch = next(iter(ImageTrainer.build_train_loader(cfg)))
    assert len(batch) == 2
    for sample in batch:
        assert tuple(sample["image"].shape[-2:]) == (72, 80)
        assert sample["image"].dtype == torch.float32  # the distortion's float image
        assert sample["instances"].gt_masks.tensor.shape[-2:] == (72, 80)
    torch.manual_seed(0)
    model = with_large_boxes(build_model(cfg)).train()
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
