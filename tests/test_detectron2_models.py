"""detectron2's own RetinaNet and Mask R-CNN build, train one step and infer on the CPU."""

import pytest
import torch
from detectron2 import model_zoo
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage


def _inputs(height=96, width=128):
    torch.manual_seed(0)
    gt = Instances((height, width))
    gt.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0], [64.0, 20.0, 120.0, 90.0]]))
    gt.gt_classes = torch.tensor([0, 1])
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    masks[0, 12:70, 10:60] = True
    masks[1, 20:90, 64:120] = True
    gt.gt_masks = BitMasks(masks)
    image = torch.randint(0, 255, (3, height, width), dtype=torch.uint8).float()
    return [{"image": image, "instances": gt, "height": height, "width": width}]


@pytest.mark.parametrize(
    "config",
    [
        "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    ],
)
def test_build_train_step_and_infer_on_cpu(config):
    cfg = model_zoo.get_config(config)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    # from random initialisation a frozen-BN backbone diverges; train all stages with GroupNorm
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RETINANET.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs = _inputs()
    with EventStorage(0):
        losses = model(inputs)
    total = sum(losses.values())
    assert torch.isfinite(total)
    expected = {"loss_cls", "loss_box_reg"} if "retinanet" in config else {
        "loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    assert set(losses) == expected
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    after = [p for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))

    model.eval()
    with torch.no_grad():
        out = model([{"image": inputs[0]["image"], "height": 48, "width": 64}])[0]["instances"]
    assert out.image_size == (48, 64)  # rescaled to the requested output size
    assert len(out) > 0 and out.pred_boxes.tensor.shape[1] == 4
    if "mask_rcnn" in config:
        assert out.pred_masks.shape[1:] == (48, 64)
