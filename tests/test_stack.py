"""The installed stack: torch/torchvision ops, detectron2 importable on its own, the _C stand-in."""

import importlib.metadata
import os

import pytest
import torch
from detectron2 import _C
from torchvision.ops import deform_conv2d, nms, roi_align

STAND_IN = getattr(_C, "IS_STAND_IN", False)


def test_detectron2_imports_alone_in_fresh_interpreter(python):
    code = (
        "import sys\n"
        "import detectron2.modeling, detectron2.data, detectron2.engine, detectron2.evaluation\n"
        "import detectron2.export, detectron2.checkpoint, detectron2.utils.visualizer\n"
        "assert not any(m.startswith('vis_d2') for m in sys.modules), 'vis_d2 was imported'\n"
        "print('ok')\n"
    )
    out = python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_pip_check_is_clean(python):
    out = python("-m", "pip", "check")
    assert out.returncode == 0, out.stdout + out.stderr


def test_detectron2_is_a_real_distribution():
    dist = importlib.metadata.distribution("detectron2")
    files = {str(f) for f in dist.files}
    assert "detectron2/__init__.py" in files
    assert "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml" in files
    if STAND_IN:
        assert dist.version == "0.6"
        assert "detectron2/_C.py" in files  # pip uninstall removes the stand-in too


@pytest.mark.skipif(not STAND_IN, reason="detectron2 was built with its compiled extension")
def test_stand_in_names_the_missing_rotated_op():
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    boxes = RotatedBoxes(torch.tensor([[10.0, 10.0, 4.0, 4.0, 30.0]]))
    with pytest.raises(AttributeError, match=r"box_iou_rotated is a compiled detectron2 op") as e:
        pairwise_iou_rotated(boxes, boxes)
    assert "D2_SOURCE=git" in str(e.value)
    assert not hasattr(_C, "roi_align_rotated_forward")


def test_detectron2_environment_report_runs():
    from detectron2.utils.collect_env import collect_env_info

    info = collect_env_info()
    assert "PyTorch" in info and "detectron2" in info


def test_vis_d2_collect_env_reports_stack(python):
    out = python("-m", "vis_d2.collect_env")
    assert out.returncode == 0, out.stderr
    for key in ("torch", "torchvision", "detectron2 source", "compiled ops", "opencv",
                "pycocotools", "CUDA available"):
        assert key in out.stdout
    assert torch.__version__ in out.stdout
    capability = [line for line in out.stdout.splitlines() if line.startswith("CPU capability")]
    assert capability[0].split()[-1] == torch.backends.cpu.get_cpu_capability()
    out = python("-m", "vis_d2.collect_env", env={**os.environ, "VIS_D2_CPU_BF16": "0"})
    assert "no (autocast runs in fp32)" in out.stdout and "VIS_D2_CPU_BF16" in out.stdout


def test_torchvision_nms_keeps_the_expected_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0,3) = 90/100 and IoU(0,1) = 81/119 both exceed 0.5: box 3 suppresses 0 and 1
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]


def test_torchvision_roi_align_forward_and_backward():
    feat = torch.arange(16.0).reshape(1, 1, 4, 4).requires_grad_()
    # a 2x2 box, aligned: the bin centres fall on pixel centres, so the values are exact
    box = torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]])
    out = roi_align(feat, box, output_size=2, spatial_scale=1.0, sampling_ratio=1, aligned=True)
    assert torch.allclose(out[0, 0], torch.tensor([[5.0, 6.0], [9.0, 10.0]]))
    out.sum().backward()
    assert feat.grad.sum().item() == pytest.approx(4.0)
    assert torch.autograd.gradcheck(
        lambda f: roi_align(f, box.double(), 2, 1.0, 2, True),
        (torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True),),
    )


def test_torchvision_deform_conv2d_forward_and_backward():
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    offset = torch.zeros(1, 18, 5, 5, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, w, padding=1)
    assert torch.allclose(deform_conv2d(x, offset, w, padding=1), ref)
    offset = (torch.rand(1, 18, 5, 5, dtype=torch.float64) - 0.5).requires_grad_()
    def fn(a, o, b):
        return deform_conv2d(a, o, b, padding=1)

    assert torch.autograd.gradcheck(fn, (x, offset, w))
