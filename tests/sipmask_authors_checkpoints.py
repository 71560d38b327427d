"""Fake releases of the authors' SipMask image models (JialeCao001/SipMask): the names and shapes
their code gives its ``state_dict()``, seeded random values, saved as their trainers save them.

Derived from their code, independently of this project's model:

* SipMask-mmdetection (``mmdet/models/backbones/resnet.py``, ``necks/fpn.py``,
  ``anchor_heads/sipmask_head.py`` ``_init_layers``, ``ops/dcn/deform_conv.py``
  ``DeformConvPack``, ``ops/conv_module.py``/``ops/norm.py`` for the ``ConvModule`` names,
  ``configs/sipmask/*.py`` for the settings): caffe ResNet ``conv1``/``bn1``/``layer{1-4}``
  with BatchNorm step counters, a ``DeformConvPack`` ``conv2`` (weight, ``conv_offset`` of
  2·9 channels with bias) in every block of ``stage_with_dcn``; FPN ``lateral_convs``/
  ``fpn_convs`` (``ConvModule`` with bias, 3 + 5); head ``cls_convs`` (stacked_convs − 1),
  ``reg_convs`` (stacked_convs), ``.conv`` with ``.gn`` and no bias, or with a bias when
  ``norm_cfg=None``; ``fcos_cls`` (num_classes − 1 = 80), ``fcos_reg``,
  ``fcos_centerness``, ``scales.{l}.scale`` (0-d), ``feat_align`` (``conv_offset`` 72×4×1×1,
  ``conv_adaption`` without bias, ``norm`` always built), ``sip_cof`` (128), ``sip_mask_lat``
  (512 → 32, 3×3), ``sip_mask_lat0`` (768 → 512, 1×1); with ``rescoring_flag``
  ``convs_scoring.{0-5}.conv`` (1 → 16 → 16 → 16 → 32 → 64 → 128, 3×3, bias) and
  ``mask_scoring`` (128 → 80, 1×1). Saved as mmcv does: ``{"meta", "state_dict",
  "optimizer"}``.
* SipMask-benchmark (``fcos_core/modeling/backbone/resnet.py``, ``backbone/backbone.py``
  ``R-50-FPN-RETINANET``, ``backbone/fpn.py``, ``layers/batch_norm.py`` ``FrozenBatchNorm2d``,
  ``layers/scale.py``, ``rpn/sipmask/sipmask.py``, ``detector/generalized_rcnn.py``,
  ``config/defaults.py``): ``backbone.body.stem.conv1``/``stem.bn1``, ``layer{1-4}`` with
  frozen BN (weight, bias, running mean and variance, no step counter);
  ``backbone.fpn.fpn_inner{2-4}``/``fpn_layer{2-4}`` (C3-C5), ``top_blocks.p6/p7``;
  ``rpn.head.cls_tower`` (NUM_CONVS − 1 = 3) and ``bbox_tower`` (4) as Sequentials of conv
  with bias (index 3i), GroupNorm (3i + 1), ReLU; ``cls_logits``, ``bbox_pred``,
  ``centerness``, ``scales.{l}.scale`` of shape (1,), ``feat_align`` with the bias of
  ``conv_adaption``, ``sip_cof``, ``sip_mask_lat``, ``sip_mask_lat0``. Saved as its
  ``Checkpointer`` does from DistributedDataParallel: ``{"model": {"module." + name},
  "optimizer", "scheduler", "iteration"}``.
"""

from __future__ import annotations

import torch

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
NUM_CLASSES = 80
FPN = 256
RESCORING_CHANNELS = (1, 16, 16, 16, 32, 64, 128)


class _Weights:
    """An ordered state dict filled with seeded normal values."""

    def __init__(self, seed: int):
        self.sd: dict[str, torch.Tensor] = {}
        self.g = torch.Generator().manual_seed(seed)

    def tensor(self, name: str, *shape: int) -> None:
        self.sd[name] = torch.randn(*shape, generator=self.g)

    def conv(self, name: str, cout: int, cin: int, k: int, bias: bool) -> None:
        self.tensor(f"{name}.weight", cout, cin, k, k)
        if bias:
            self.tensor(f"{name}.bias", cout)

    def norm(self, name: str, c: int, stats: bool = False, counter: bool = False) -> None:
        self.tensor(f"{name}.weight", c)
        self.tensor(f"{name}.bias", c)
        if stats:
            self.tensor(f"{name}.running_mean", c)
            self.sd[f"{name}.running_var"] = torch.rand(c, generator=self.g) + 0.5
        if counter:
            self.sd[f"{name}.num_batches_tracked"] = torch.tensor(90000, dtype=torch.int64)


def _resnet(w: _Weights, prefix: str, depth: int, stem: str, counter: bool, dcn=()) -> None:
    """Their ResNet's weights under ``prefix`` (stem ``{stem}conv1``/``{stem}bn1``), deformable
    3×3 convs in the stages (1-4) of ``dcn``."""
    w.conv(f"{prefix}{stem}conv1", 64, 3, 7, False)
    w.norm(f"{prefix}{stem}bn1", 64, True, counter)
    cin = 64
    for stage, blocks in enumerate(BLOCKS[depth], start=1):
        planes = 64 * 2 ** (stage - 1)
        for b in range(blocks):
            p = f"{prefix}layer{stage}.{b}"
            c_in = cin if b == 0 else 4 * planes
            w.conv(f"{p}.conv1", planes, c_in, 1, False)
            w.norm(f"{p}.bn1", planes, True, counter)
            w.conv(f"{p}.conv2", planes, planes, 3, False)
            if stage in dcn:
                w.conv(f"{p}.conv2.conv_offset", 18, planes, 3, True)
            w.norm(f"{p}.bn2", planes, True, counter)
            w.conv(f"{p}.conv3", 4 * planes, planes, 1, False)
            w.norm(f"{p}.bn3", 4 * planes, True, counter)
            if b == 0:
                w.conv(f"{p}.downsample.0", 4 * planes, c_in, 1, False)
                w.norm(f"{p}.downsample.1", 4 * planes, True, counter)
        cin = 4 * planes


def _masks(w: _Weights, h: str) -> None:
    w.conv(f"{h}sip_cof", 128, FPN, 3, True)
    w.conv(f"{h}sip_mask_lat", 32, 512, 3, True)
    w.conv(f"{h}sip_mask_lat0", 512, 768, 1, True)


def mmdet_state_dict(
    depth: int = 50,
    stacked_convs: int = 4,
    norm: bool = True,
    rescoring: bool = False,
    dcn: tuple[int, ...] = (),
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A SipMask-mmdetection model's weights: ``sipmask_r50_caffe_fpn_gn_1x`` by default;
    ``stacked_convs=2, norm=False`` the real-time ``ssd`` models; ``rescoring=True,
    dcn=(2, 3, 4)`` SipMask++."""
    w = _Weights(seed)
    _resnet(w, "backbone.", depth, "", True, dcn)
    for i, c in enumerate((512, 1024, 2048)):
        w.conv(f"neck.lateral_convs.{i}.conv", FPN, c, 1, True)
    for i in range(5):
        w.conv(f"neck.fpn_convs.{i}.conv", FPN, FPN, 3, True)
    h = "bbox_head."
    for tower, n in (("cls_convs", stacked_convs - 1), ("reg_convs", stacked_convs)):
        for i in range(n):
            w.conv(f"{h}{tower}.{i}.conv", FPN, FPN, 3, not norm)
            if norm:
                w.norm(f"{h}{tower}.{i}.gn", FPN)
    w.conv(f"{h}fcos_cls", NUM_CLASSES, FPN, 3, True)
    w.conv(f"{h}fcos_reg", 4, FPN, 3, True)
    w.conv(f"{h}fcos_centerness", 1, FPN, 3, True)
    for level in range(5):
        w.sd[f"{h}scales.{level}.scale"] = torch.tensor(1.0 + 0.1 * level)
    w.conv(f"{h}feat_align.conv_offset", 72, 4, 1, False)
    w.conv(f"{h}feat_align.conv_adaption", FPN, FPN, 3, False)
    w.norm(f"{h}feat_align.norm", FPN)
    _masks(w, h)
    if rescoring:
        pairs = zip(RESCORING_CHANNELS[:-1], RESCORING_CHANNELS[1:], strict=True)
        for i, (cin, cout) in enumerate(pairs):
            w.conv(f"{h}convs_scoring.{i}.conv", cout, cin, 3, True)
        w.conv(f"{h}mask_scoring", NUM_CLASSES, 128, 1, True)
    return w.sd


def benchmark_state_dict(depth: int = 50, seed: int = 0) -> dict[str, torch.Tensor]:
    """A SipMask-benchmark model's weights (``sipmask_R_50_FPN_1x``), without ``module.``."""
    w = _Weights(seed)
    _resnet(w, "backbone.body.", depth, "stem.", False)
    for i, c in zip((2, 3, 4), (512, 1024, 2048), strict=True):
        w.conv(f"backbone.fpn.fpn_inner{i}", FPN, c, 1, True)
        w.conv(f"backbone.fpn.fpn_layer{i}", FPN, FPN, 3, True)
    for level in ("p6", "p7"):
        w.conv(f"backbone.fpn.top_blocks.{level}", FPN, FPN, 3, True)
    h = "rpn.head."
    for tower, n in (("cls_tower", 3), ("bbox_tower", 4)):
        for i in range(n):
            w.conv(f"{h}{tower}.{3 * i}", FPN, FPN, 3, True)
            w.norm(f"{h}{tower}.{3 * i + 1}", FPN)
    w.conv(f"{h}cls_logits", NUM_CLASSES, FPN, 3, True)
    w.conv(f"{h}bbox_pred", 4, FPN, 3, True)
    w.conv(f"{h}centerness", 1, FPN, 3, True)
    w.conv(f"{h}feat_align.conv_offset", 72, 4, 1, False)
    w.conv(f"{h}feat_align.conv_adaption", FPN, FPN, 3, True)
    w.norm(f"{h}feat_align.norm", FPN)
    _masks(w, h)
    for level in range(5):
        w.sd[f"{h}scales.{level}.scale"] = torch.tensor([1.0 + 0.1 * level])
    return w.sd


def mmdet_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """As mmcv 0.2 saves it."""
    meta = {"mmdet_version": "1.0rc0+bc63fa9", "config": "model = dict(type='SipMask')"}
    return {"meta": meta, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def benchmark_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """As maskrcnn-benchmark's ``Checkpointer`` saves a DistributedDataParallel model."""
    return {
        "model": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"last_epoch": 90000},
        "iteration": 90000,
    }
