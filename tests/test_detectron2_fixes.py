"""Each compatibility fix dev/install_detectron2.py applies to detectron2 v0.6, exercised."""

import logging
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "dev"))
import install_detectron2  # noqa: E402


def _register(name, dicts, **metadata):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(**metadata)


def test_every_fix_is_in_the_installed_detectron2(python):
    out = python(str(REPO / "dev" / "install_detectron2.py"), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    states = dict(line.split()[::-1] for line in out.stdout.splitlines())
    assert set(states) == {fix.key for fix in install_detectron2.FIXES}
    assert "needed" not in states.values()


def test_pillow_linear_default_interpolation():
    from detectron2.data.transforms import ExtentTransform

    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = ExtentTransform(src_rect=(0, 0, 8, 8), output_size=(4, 4)).apply_image(image)
    assert out.shape == (4, 4)
    assert ExtentTransform(src_rect=(0, 0, 8, 8), output_size=(4, 4)).interp == Image.BILINEAR


def test_numpy_int_class_histogram(caplog):
    from detectron2.data.build import print_instances_class_histogram

    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 1}, {"category_id": 1}]}]
    logging.getLogger("detectron2").propagate = True
    with caplog.at_level(logging.INFO, logger="detectron2.data.build"):
        print_instances_class_histogram(dicts, ["cat", "dog"])
    text = caplog.text
    assert "cat" in text and "dog" in text and "total" in text
    assert "3" in text.split("total")[-1]


def test_numpy_int_float_sem_seg_evaluator(tmp_path):
    from detectron2.evaluation import SemSegEvaluator

    gt = np.array([[0, 0, 1], [1, 1, 255]], dtype=np.uint8)
    Image.fromarray(gt).save(tmp_path / "gt.png")
    dicts = [{"file_name": "img.jpg", "sem_seg_file_name": str(tmp_path / "gt.png")}]
    _register("vis_d2_test_semseg", dicts, stuff_classes=["a", "b"], ignore_label=255)
    evaluator = SemSegEvaluator("vis_d2_test_semseg", distributed=False)
    evaluator.reset()
    logits = torch.zeros(2, 2, 3)
    logits[1, 1, :] = 1.0  # predicts class 1 on the second row, 0 elsewhere: (0,2) is wrong
    evaluator.process([{"file_name": "img.jpg"}], [{"sem_seg": logits}])
    res = evaluator.evaluate()["sem_seg"]
    # (0,2) is b predicted as a: a has tp 2, fp 1; b has tp 2, fn 1; (1,2) is ignored
    assert res["IoU-a"] == pytest.approx(200 / 3)
    assert res["IoU-b"] == pytest.approx(200 / 3)
    assert res["pACC"] == pytest.approx(100 * 4 / 5)


def test_numpy_str_pascal_voc_loader(tmp_path):
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("000001\n000002\n")
    for i in ("000001", "000002"):
        (tmp_path / "Annotations" / f"{i}.xml").write_text(
            "<annotation><size><width>20</width><height>10</height></size><object><name>dog</name>"
            "<difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>8</xmax>"
            "<ymax>9</ymax></bndbox></object></annotation>"
        )
    dicts = load_voc_instances(str(tmp_path), "val", ["cat", "dog"])
    assert [d["image_id"] for d in dicts] == ["000001", "000002"]
    assert dicts[0]["annotations"][0]["category_id"] == 1
    assert dicts[0]["annotations"][0]["bbox"] == [1.0, 2.0, 8.0, 9.0]  # VOC is 1-based


def test_numpy_bool_masks():
    from detectron2.structures import PolygonMasks
    from detectron2.structures.masks import polygons_to_bitmask

    empty = polygons_to_bitmask([], 4, 5)
    assert empty.dtype == bool and empty.shape == (4, 5) and not empty.any()
    square = polygons_to_bitmask([np.array([1, 1, 4, 1, 4, 3, 1, 3], dtype=float)], 4, 5)
    assert square.dtype == bool and square.sum() == 6  # rows 1-2, columns 1-3
    square_poly = [np.array([0, 0, 2, 0, 2, 2, 0, 2], dtype=float)]
    keep = PolygonMasks([square_poly, []]).nonempty()
    assert keep.dtype == torch.bool and keep.tolist() == [True, False]


def test_numpy_bool_visualizers():
    from detectron2.utils.video_visualizer import VideoVisualizer
    from detectron2.utils.visualizer import Visualizer

    meta = MetadataCatalog.get("vis_d2_test_vis").set(
        thing_classes=["a"], stuff_classes=["bg"], thing_dataset_id_to_contiguous_id={1: 0}
    )
    image = np.zeros((12, 16, 3), dtype=np.uint8)
    seg = torch.zeros(12, 16, dtype=torch.int32)
    seg[2:6, 2:6] = 1
    info = [{"id": 1, "isthing": True, "category_id": 0, "score": 0.9}]
    out = Visualizer(image, meta).draw_panoptic_seg(seg, info).get_image()
    assert out.shape == (12, 16, 3) and out.any()

    inst = Instances((12, 16), pred_boxes=Boxes(torch.tensor([[1.0, 1.0, 8.0, 8.0]])),
                     scores=torch.tensor([0.9]), pred_classes=torch.tensor([0]))
    frame = VideoVisualizer(meta).draw_instance_predictions(image, inst).get_image()
    assert frame.shape == (12, 16, 3) and frame.any()


def test_export_imports_without_caffe2():
    from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances

    assert callable(scripting_with_instances) and callable(dump_torchscript_IR)
    model = torch.nn.Linear(2, 2).eval()
    traced = torch.jit.trace(TracingAdapter(model, torch.ones(1, 2)).eval(), (torch.ones(1, 2),))
    assert torch.allclose(traced(torch.ones(1, 2))[0], model(torch.ones(1, 2)))


def _ddp_worker(out_dir):
    from detectron2.engine.defaults import create_ddp_model
    from detectron2.utils import comm

    from vis_d2.engine import close_process_group

    torch.manual_seed(0)
    model = create_ddp_model(torch.nn.Linear(3, 1, bias=False))
    rank = comm.get_rank()
    x = torch.full((1, 3), float(rank + 1))
    model(x).sum().backward()
    torch.save({"grad": model.module.weight.grad, "world": comm.get_world_size()},
               Path(out_dir) / f"rank{rank}.pt")
    close_process_group()  # as tools/train_net.py's workers end


def test_launch_two_cpu_processes_with_gloo_and_ddp(tmp_path):
    from detectron2.engine import launch

    launch(_ddp_worker, 2, dist_url="auto", args=(str(tmp_path),))
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt") for i in range(2))
    assert r0["world"] == r1["world"] == 2
    # inputs 1 and 2 on the two ranks: DDP averages the gradients to 1.5 everywhere
    assert torch.allclose(r0["grad"], torch.full((1, 3), 1.5))
    assert torch.equal(r0["grad"], r1["grad"])


def test_deform_conv_cpu_forward_backward_groups():
    from detectron2.layers import DeformConv

    torch.manual_seed(0)
    conv = DeformConv(4, 6, 3, padding=1, groups=2, deformable_groups=2).double()
    x = torch.rand(2, 4, 5, 7, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, conv.weight, padding=1, groups=2)
    zero = torch.zeros(2, 2 * 2 * 9, 5, 7, dtype=torch.float64)
    assert torch.allclose(conv(x, zero), ref)
    shift = zero.clone()
    shift[:, 1::2] = 1.0  # every sampling point moves one pixel right
    assert torch.allclose(conv(x, shift)[..., :-1], ref[..., 1:])
    x.requires_grad_()
    offset = (torch.rand_like(zero) - 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, o: conv(a, o), (x, offset))


def test_modulated_deform_conv_cpu_forward_backward():
    from detectron2.layers import ModulatedDeformConv

    torch.manual_seed(0)
    conv = ModulatedDeformConv(3, 2, 3, padding=1, bias=True).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    offset = torch.zeros(1, 18, 4, 5, dtype=torch.float64)
    mask = torch.full((1, 9, 4, 5), 0.5, dtype=torch.float64)
    ref = 0.5 * torch.nn.functional.conv2d(x, conv.weight, padding=1) + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(conv(x, offset, mask), ref)
    args = (x.requires_grad_(), (torch.rand_like(offset) - 0.5).requires_grad_(),
            torch.rand_like(mask).requires_grad_())
    assert torch.autograd.gradcheck(lambda a, o, m: conv(a, o, m), args)


def test_coco_evaluator_falls_back_to_pycocotools(tmp_path):
    from detectron2.evaluation import COCOEvaluator

    anno = {"bbox": [2, 3, 10, 8], "bbox_mode": 1, "category_id": 0, "iscrowd": 0}
    dicts = [{"file_name": "a.jpg", "image_id": 1, "height": 20, "width": 30,
              "annotations": [anno]}]
    _register("vis_d2_test_coco", dicts, thing_classes=["a"])
    evaluator = COCOEvaluator("vis_d2_test_coco", tasks=("bbox",), distributed=False,
                              output_dir=str(tmp_path))
    evaluator.reset()
    inst = Instances((20, 30), pred_boxes=Boxes(torch.tensor([[2.0, 3.0, 12.0, 11.0]])),
                     scores=torch.tensor([0.9]), pred_classes=torch.tensor([0]))
    evaluator.process([{"image_id": 1}], [{"instances": inst}])
    assert evaluator.evaluate()["bbox"]["AP"] == pytest.approx(100.0)


def test_model_zoo_configs_without_pkg_resources():
    from detectron2 import model_zoo

    path = Path(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    assert path.is_file()
    cfg = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "RetinaNet"


def test_checkpoint_with_non_tensor_objects_loads(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    model = torch.nn.Linear(2, 2)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("ckpt", meta=Namespace(note="x"))
    other = torch.nn.Linear(2, 2)
    extra = DetectionCheckpointer(other).load(str(tmp_path / "ckpt.pth"))
    assert extra["meta"].note == "x"
    assert torch.equal(other.weight, model.weight)
