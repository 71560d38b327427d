"""Converting the authors' released SipMask-VIS checkpoint (mmdetection v1) to SipMaskVIS:
vis_d2.engine.weight_conversion, sipmask_vis.convert and tools/convert_weights.py.

The fake checkpoint has the key names and shapes of the released R-50 model as the authors'
code defines them (JialeCao001/SipMask, SipMask-VIS/: mmdet/models/backbones/resnet.py,
mmdet/models/necks/fpn.py, mmdet/models/anchor_heads/sipmask_head.py _init_layers and
configs/sipmask/sipmask_r50_caffe_fpn_gn_1x.py), built here independently of our model, with
random values chosen so that the converted model detects objects."""

import math

import pytest
import torch
from conftest import REPO, frame_outputs, run_python
from mask_reference import subregion_index
from sipmask.spatial_coefficients import SpatialCoefficients

from vis_d2.engine.predictor import load_model, setup_cfg
from vis_d2.engine.weight_conversion import (
    WEIGHT_CONVERTER_REGISTRY,
    ConversionError,
    convert_checkpoint,
    load_checkpoint_weights,
)
from vis_d2.layers import DeformConv

CONFIG = str(REPO / "projects" / "SipMaskVIS" / "configs" / "SipMaskVIS_R50.yaml")
TOOL = "tools/convert_weights.py"
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]
NUM_SOURCE_KEYS = 378  # 318 backbone (53 BN with num_batches_tracked), 16 neck, 44 head
NUM_BN = 53
TOWER_BIASES = [
    "fcos.head.cls_tower.0.bias",
    "fcos.head.cls_tower.3.bias",
    "fcos.head.bbox_tower.0.bias",
    "fcos.head.bbox_tower.3.bias",
    "fcos.head.bbox_tower.6.bias",
    "track_head.tower.0.bias",
    "track_head.tower.3.bias",
]


def authors_r50_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The released SipMask-VIS R-50 weights' names and shapes, random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def randn(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    def uniform(*shape, lo=0.5, hi=1.5):
        return torch.rand(*shape, generator=g) * (hi - lo) + lo

    def conv(name, cout, cin, k, bias=False, std=None, bias_value=None):
        sd[f"{name}.weight"] = randn(cout, cin, k, k, std=std or math.sqrt(2 / (cin * k * k)))
        if bias:
            sd[f"{name}.bias"] = (
                randn(cout, std=0.1)
                if bias_value is None
                else (torch.full((cout,), float(bias_value)))
            )

    def bn(name, c):
        sd[f"{name}.weight"] = uniform(c)
        sd[f"{name}.bias"] = randn(c, std=0.1)
        sd[f"{name}.running_mean"] = randn(c, std=0.1)
        sd[f"{name}.running_var"] = uniform(c)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(90000, dtype=torch.int64)

    def gn(name, c):
        sd[f"{name}.weight"] = uniform(c)
        sd[f"{name}.bias"] = randn(c, std=0.1)

    # backbone: caffe-style ResNet-50 (resnet.py), no conv bias
    conv("backbone.conv1", 64, 3, 7)
    bn("backbone.bn1", 64)
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        planes = 64 * 2 ** (stage - 1)
        for b in range(blocks):
            p = f"backbone.layer{stage}.{b}"
            c_in = cin if b == 0 else 4 * planes
            conv(f"{p}.conv1", planes, c_in, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", 4 * planes, planes, 1)
            bn(f"{p}.bn3", 4 * planes)
            if b == 0:
                conv(f"{p}.downsample.0", 4 * planes, c_in, 1)
                bn(f"{p}.downsample.1", 4 * planes)
        cin = 4 * planes
    # neck: FPN from C3 (start_level 1), 5 outputs, ConvModules with bias and no norm
    for i, c in enumerate((512, 1024, 2048)):
        conv(f"neck.lateral_convs.{i}.conv", 256, c, 1, bias=True)
    for i in range(5):
        conv(f"neck.fpn_convs.{i}.conv", 256, 256, 3, bias=True)
    # head (sipmask_head.py _init_layers): GN ConvModules without conv bias
    h = "bbox_head"
    for tower, n in (("cls_convs", 2), ("reg_convs", 3)):
        for i in range(n):
            conv(f"{h}.{tower}.{i}.conv", 256, 256, 3, std=0.01)
            gn(f"{h}.{tower}.{i}.gn", 256)
    conv(f"{h}.fcos_cls", 40, 256, 3, bias=True, std=0.01, bias_value=0.0)
    conv(f"{h}.fcos_reg", 4, 256, 3, bias=True, std=0.01, bias_value=3.0)  # 3-stride boxes
    conv(f"{h}.fcos_centerness", 1, 256, 3, bias=True, std=0.01)
    for level in range(5):
        sd[f"{h}.scales.{level}.scale"] = torch.tensor(1.0 + 0.1 * level)
    conv(f"{h}.feat_align.conv_offset", 72, 4, 1, std=0.1)  # offsets of about a pixel
    conv(f"{h}.feat_align.conv_adaption", 256, 256, 3, std=0.01)
    gn(f"{h}.feat_align.norm", 256)
    conv(f"{h}.sip_cof", 128, 256, 3, bias=True, std=0.01)
    conv(f"{h}.sip_mask_lat", 32, 512, 3, bias=True, std=0.01)
    conv(f"{h}.sip_mask_lat0", 512, 768, 1, bias=True, std=0.01)
    for i in range(2):
        conv(f"{h}.track_convs.{i}.conv", 256, 256, 3, std=0.01)
        gn(f"{h}.track_convs.{i}.gn", 256)
    conv(f"{h}.sipmask_track", 512, 768, 1, bias=True, std=0.01)
    return sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fake release written as mmcv writes it, and its in-process conversion."""
    source = authors_r50_state_dict()
    assert len(source) == NUM_SOURCE_KEYS
    path = tmp_path_factory.mktemp("release") / "vis_sipmask_ms_1x_final.pth"
    # as mmcv 0.2 on PyTorch 1.1 writes it: the legacy (non-zip) format, meta and optimizer
    meta = {"mmcv_version": "0.2.12", "config": "model = dict(type='SipMask')", "epoch": 12}
    meta.update(iter=23208, time="Mon Jul 20 12:00:00 2020", CLASSES=("person", "giant_panda"))
    optimizer = {"state": {}, "param_groups": [{"lr": 5e-5, "momentum": 0.9, "params": [0]}]}
    checkpoint = {"meta": meta, "state_dict": source, "optimizer": optimizer}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    cfg = setup_cfg(CONFIG, OPTS)
    conversion, model = convert_checkpoint(cfg, path)
    return source, path, conversion, model


def test_every_weight_is_accounted_for(converted):
    source, _, conversion, model = converted
    target = model.state_dict()
    assert set(conversion.state_dict) == set(target)
    mapped_sources = [s for _, s in conversion.mapped]
    unused = [s for s, _ in conversion.unused]
    assert len(mapped_sources) == len(set(mapped_sources))  # each source weight once
    assert sorted(mapped_sources + unused) == sorted(source)
    assert all(s.endswith(".num_batches_tracked") for s in unused) and len(unused) == NUM_BN
    assert sorted(t for t, _ in conversion.filled) == sorted(TOWER_BIASES)
    assert all("GroupNorm" in why for _, why in conversion.filled)
    assert len(conversion.mapped) + len(conversion.filled) == len(target) == 332
    for key in TOWER_BIASES:
        assert (target[key] == 0).all()
    # strict: every model weight has the converted value
    for key, value in target.items():
        assert torch.equal(value, conversion.state_dict[key]), key


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("feature_align.conv.weight", "bbox_head.feat_align.conv_adaption.weight"),
        ("feature_align.conv_offset.weight", "bbox_head.feat_align.conv_offset.weight"),
        ("feature_align.norm.bias", "bbox_head.feat_align.norm.bias"),
        ("coefficients.conv.weight", "bbox_head.sip_cof.weight"),
        ("coefficients.conv.bias", "bbox_head.sip_cof.bias"),
        ("fcos.head.scales.3.scale", "bbox_head.scales.3.scale"),
        ("fcos.head.bbox_pred.weight", "bbox_head.fcos_reg.weight"),
        ("fcos.head.cls_logits.bias", "bbox_head.fcos_cls.bias"),
        ("fcos.head.ctrness.weight", "bbox_head.fcos_centerness.weight"),
        ("fcos.head.cls_tower.3.weight", "bbox_head.cls_convs.1.conv.weight"),
        ("fcos.head.bbox_tower.7.weight", "bbox_head.reg_convs.2.gn.weight"),
        ("basis.lateral.weight", "bbox_head.sip_mask_lat0.weight"),
        ("basis.output.bias", "bbox_head.sip_mask_lat.bias"),
        ("track_head.tower.4.bias", "bbox_head.track_convs.1.gn.bias"),
        ("track_head.embed.weight", "bbox_head.sipmask_track.weight"),
        ("backbone.bottom_up.stem.conv1.weight", "backbone.conv1.weight"),
        ("backbone.bottom_up.stem.conv1.norm.running_var", "backbone.bn1.running_var"),
        ("backbone.bottom_up.res4.5.conv2.norm.running_mean", "backbone.layer3.5.bn2.running_mean"),
        ("backbone.bottom_up.res5.0.shortcut.weight", "backbone.layer4.0.downsample.0.weight"),
        ("backbone.bottom_up.res3.0.shortcut.norm.weight", "backbone.layer2.0.downsample.1.weight"),
        ("backbone.fpn_lateral3.weight", "neck.lateral_convs.0.conv.weight"),
        ("backbone.fpn_output5.bias", "neck.fpn_convs.2.conv.bias"),
        ("backbone.top_block.p6.weight", "neck.fpn_convs.3.conv.weight"),
        ("backbone.top_block.p7.bias", "neck.fpn_convs.4.conv.bias"),
    ],
)
def test_weights_land_where_they_belong(converted, ours, theirs):
    source, _, _, model = converted
    assert torch.equal(model.state_dict()[ours], source[theirs])


def test_scales_differ_per_level(converted):
    """The per-level scales keep their level (a swap would still pass a shape check)."""
    _, _, _, model = converted
    scales = [float(s.scale.detach()) for s in model.fcos.head.scales]
    assert scales == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4])


def test_deform_conv_offsets_follow_mmdet_v1(converted):
    """Our DeformConv against mmdetection v1's im2col rule (mmdet/ops/dcn/src/
    deform_conv_cuda_kernel.cu:208-227): for input channel c of offset group g = c / (C/G),
    kernel tap (i, j) reads offset channels g·2·kh·kw + 2·(i·kw + j) (dy) and + 1 (dx), at
    (y - pad + i + dy, x - pad + j + dx), zero outside. Integer offsets: bilinear is exact."""
    torch.manual_seed(0)
    groups, channels, size, k = 4, 8, 6, 3
    conv = DeformConv(channels, 5, k, padding=1, offset_groups=groups, bias=False)
    x = torch.randn(2, channels, size, size)
    offset = torch.randint(-2, 3, (2, conv.offset_channels, size, size)).float()
    cols = torch.zeros(2, channels, k * k, size, size)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for c in range(channels):
        g = c // (channels // groups)
        for i in range(k):
            for j in range(k):
                base = g * 2 * k * k + 2 * (i * k + j)
                y = ys - 1 + i + offset[:, base].long()
                xx = xs - 1 + j + offset[:, base + 1].long()
                inside = (y >= 0) & (y < size) & (xx >= 0) & (xx < size)
                for n in range(2):
                    value = x[n, c, y[n].clamp(0, size - 1), xx[n].clamp(0, size - 1)]
                    cols[n, c, i * k + j] = torch.where(inside[n], value, 0.0)
    reference = torch.einsum("nckhw,ock->nohw", cols, conv.weight.detach().flatten(2))
    with torch.no_grad():
        assert torch.allclose(conv(x, offset), reference, atol=1e-5)
        # and the offsets matter: transposing dy and dx changes the result
        swapped = offset.view(2, -1, 2, size, size).flip(2).reshape_as(offset)
        assert not torch.allclose(conv(x, swapped), reference, atol=1e-3)


def test_coefficient_order_matches_sip_cof():
    """sip_cof channels [32q, 32q + 32) are sub-region q = row·2 + col (sipmask_head.py:745-748
    with crop_split_cuda_kernel.cu's idx_h·2 + idx_w): ours read coefficient k of sub-region q
    from channel q·32 + k, and a box's top-right quarter is sub-region 1, bottom-left 2."""
    coefficients = SpatialCoefficients(8, 2, 32)
    maps = [torch.arange(128.0).view(1, 128, 1, 1)]
    coef = coefficients.read(maps, torch.tensor([0]))
    assert coef.shape == (1, 4, 32)
    for q in range(4):
        assert torch.equal(coef[0, q], torch.arange(32.0 * q, 32.0 * (q + 1)))
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    ys, xs = torch.tensor([[[1], [6]]]), torch.tensor([[[1, 6]]])
    two = torch.tensor([2])
    assert subregion_index(box, two, two, ys, xs).tolist() == [[[0, 1], [2, 3]]]


def test_tool_writes_weights_that_load_strictly_and_match(converted, tmp_path):
    _, path, conversion, model = converted
    output = tmp_path / "out" / "sipmask_vis_r50.pth"
    proc = run_python(
        TOOL, "--config-file", CONFIG, "--input", str(path), "--output", str(output),
        "MODEL.DEVICE", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{NUM_SOURCE_KEYS} weights in the file, 325 mapped, 53 unused" in proc.stdout
    assert "332 model weights, 325 from the file, 7 filled" in proc.stdout
    for key in TOWER_BIASES + ["backbone.layer4.2.bn3.num_batches_tracked"]:
        assert key in proc.stdout
    assert list(torch.load(output, weights_only=True)) == ["model"]

    cfg = setup_cfg(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(output)])
    loaded = load_model(cfg)  # strict
    image = torch.randint(0, 256, (3, 128, 160), generator=torch.Generator().manual_seed(1))
    image = image.to(torch.uint8)
    expected, actual = (frame_outputs(m, image, ("embeddings",)) for m in (model, loaded))
    assert len(expected["scores"]) > 0  # the comparison covers detections, masks, embeddings
    assert expected["masks"].any()
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name


def test_tool_fails_clearly_on_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    output = tmp_path / "out.pth"
    proc = run_python(
        TOOL, "--config-file", CONFIG, "--input", str(bad), "--output", str(output),
        "MODEL.DEVICE", "cpu",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not output.exists()


def test_checkpoint_files_unwrap_and_bad_files_are_named(tmp_path):
    weights = {"a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in weights.items()}, bare)  # no wrapper, DataParallel
    assert load_checkpoint_weights(bare).keys() == weights.keys()
    wrapped = tmp_path / "d2.pth"
    torch.save({"model": weights, "iteration": 3}, wrapped)
    assert load_checkpoint_weights(wrapped).keys() == weights.keys()

    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(ConversionError, match=f"{text} cannot be read as a checkpoint"):
        load_checkpoint_weights(text)
    meta_only = tmp_path / "meta.pth"
    torch.save({"meta": {"epoch": 12}}, meta_only)
    with pytest.raises(ConversionError, match=f"{meta_only} is not a model checkpoint"):
        load_checkpoint_weights(meta_only)
    with pytest.raises(ConversionError, match="does not exist"):
        load_checkpoint_weights(tmp_path / "missing.pth")


def _convert(source, model):
    return WEIGHT_CONVERTER_REGISTRY.get("SipMaskVIS")(source, model.state_dict())


def test_missing_source_weight_is_named(converted):
    source, _, _, model = converted
    source = dict(source)
    del source["bbox_head.sip_cof.weight"]
    with pytest.raises(ConversionError, match=r"no weight bbox_head\.sip_cof\.weight.*"
                       r"coefficients\.conv\.weight"):  # fmt: skip
        _convert(source, model)


def test_wrong_shape_names_both_weights_and_shapes(converted):
    source, _, _, model = converted
    source = dict(source)
    source["bbox_head.fcos_cls.weight"] = torch.zeros(80, 256, 3, 3)
    with pytest.raises(ConversionError) as info:
        _convert(source, model)
    message = str(info.value)
    for part in ("bbox_head.fcos_cls.weight", "(80, 256, 3, 3)", "fcos.head.cls_logits.weight",
                 "(40, 256, 3, 3)"):  # fmt: skip
        assert part in message


def test_unknown_source_weight_is_an_error(converted):
    source, _, _, model = converted
    source = dict(source, **{"bbox_head.sipmask_cls.weight": torch.zeros(40, 256, 3, 3)})
    with pytest.raises(ConversionError, match=r"no counterpart in the model: bbox_head\."):
        _convert(source, model)


def test_errors_of_convert_checkpoint_name_the_file(converted, tmp_path):
    source, _, _, _ = converted
    truncated = dict(source)
    del truncated["backbone.layer4.2.conv3.weight"]
    path = tmp_path / "r50_truncated.pth"
    torch.save({"state_dict": truncated}, path)
    with pytest.raises(ConversionError, match=f"{path} cannot be converted for SipMaskVIS"):
        convert_checkpoint(setup_cfg(CONFIG, OPTS), path)


def test_meta_arch_without_converter_lists_the_converters(tmp_path):
    cfg = setup_cfg(str(REPO / "configs" / "SGNet_R50.yaml"), OPTS)
    with pytest.raises(
        ConversionError, match="no weight converter .* SGNet.*: STMask, SipMask, SipMaskVIS"
    ):
        convert_checkpoint(cfg, tmp_path / "anything.pth")
