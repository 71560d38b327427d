"""Converting the authors' released STMask checkpoints (YOLACT++-based plain state dicts, e.g.
STMask_plus_resnet50_ada.pth, STMask_plus_base_ada.pth) to STMask: stmask.convert and
tools/convert_weights.py.

The fake checkpoints have the key names and shapes of the released models as the authors'
code defines them (MinghanLi/STMask: backbone.py ResNetBackbone/Bottleneck with DCNv2's DCN,
layers/modules/FPN.py, make_net.py, prediction_head_FC.py, Featurealign.py,
track_to_segment_head.py, and the STMask_plus_* configs of datasets/config.py), built here
independently of our model, with random values chosen so that the converted model detects
objects. The references below compute the authors' layers from those tensors with torch
primitives (torchvision's deform_conv2d for DCNv2 and mmcv's DeformConv2d: same offset and
mask layouts)."""

import pytest
import torch
from conftest import REPO, frame_outputs, run_python
from detectron2.modeling import build_backbone, build_model
from stmask.convert import CONCATENATED_CENTERNESS, FOLDED_DCN_BIAS, deformable_interval
from stmask_authors import BLOCKS, KERNELS, authors_state_dict
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

from vis_d2.engine.predictor import load_model, setup_cfg
from vis_d2.engine.weight_conversion import (
    UNUSED_STEP_COUNTER,
    WEIGHT_CONVERTER_REGISTRY,
    ConversionError,
    convert_checkpoint,
)

CONFIGS = REPO / "projects" / "STMask" / "configs"
# the configs for converted weights: the authors' torchvision-style ResNet (stride in the 3x3)
# and their input normalisation (RGB, ImageNet mean and std)
R50_DCN = str(CONFIGS / "STMask_R50_DCN_authors.yaml")
R101_DCN = str(CONFIGS / "STMask_R101_DCN_authors.yaml")
TOOL = "tools/convert_weights.py"
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]


def num_dcn(depth, interval):
    return sum(len(range(0, n, interval)) for n in BLOCKS[depth][1:])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """STMask_plus_resnet50_ada.pth as the authors' save_weights writes it (a bare state dict)
    and its in-process conversion for STMask_R50_DCN.yaml."""
    source = authors_state_dict()
    path = tmp_path_factory.mktemp("release") / "STMask_plus_resnet50_ada.pth"
    torch.save(source, path)
    conversion, model = convert_checkpoint(setup_cfg(R50_DCN, OPTS), path)
    return source, path, conversion, model


@pytest.fixture(scope="module")
def r101():
    """STMask_plus_base_ada.pth's weights and the target of STMask_R101_DCN.yaml."""
    target = build_model(setup_cfg(R101_DCN, OPTS)).state_dict()
    return authors_state_dict(depth=101), target


def _convert(source, target):
    return WEIGHT_CONVERTER_REGISTRY.get("STMask")(source, target)


def _unused_by_reason(conversion):
    counts = {}
    for _, why in conversion.unused:
        counts[why] = counts.get(why, 0) + 1
    return counts


def test_every_weight_is_accounted_for(converted):
    source, _, conversion, model = converted
    target = model.state_dict()
    # 318 ResNet-50 + 5 DCN blocks × 3 (bias, offset-mask weight and bias), 16 FPN,
    # 10 protonet, 54 head (FCB ada), 10 TemporalNet
    assert len(source) == 423 and len(target) == 359
    assert num_dcn(50, 3) == 5
    mapped_sources = [s for _, s in conversion.mapped]
    assert len(mapped_sources) == len(set(mapped_sources))  # each source weight once
    assert sorted(mapped_sources + [s for s, _ in conversion.unused]) == sorted(source)
    assert sorted(t for t, _ in conversion.mapped) == sorted(target)  # every weight from the file
    assert conversion.filled == []
    reasons = _unused_by_reason(conversion)
    assert reasons.pop(FOLDED_DCN_BIAS) == 5
    assert reasons.pop(CONCATENATED_CENTERNESS) == 6
    assert reasons == {UNUSED_STEP_COUNTER: 53}
    counters = [s for s, why in conversion.unused if why == UNUSED_STEP_COUNTER]
    assert all(s.endswith(".num_batches_tracked") for s in counters)
    for key, value in target.items():  # strict: every model weight has the converted value
        assert torch.equal(value, conversion.state_dict[key]), key


def test_r101_dcn_counts(r101):
    source, target = r101
    conversion = _convert(source, target)
    # 624 ResNet-101 + 11 DCN blocks × 3, and the same 90 as R-50
    assert (len(source), len(target), num_dcn(101, 3)) == (747, 626, 11)
    assert (len(conversion.mapped), len(conversion.unused), len(conversion.filled)) == (626, 121, 0)
    reasons = _unused_by_reason(conversion)
    assert (reasons[FOLDED_DCN_BIAS], reasons[CONCATENATED_CENTERNESS]) == (11, 6)
    deformable = sorted(k for k in target if k.endswith("conv2_offset.weight"))
    assert [k.split(".")[3] + "." + k.split(".")[4] for k in deformable] == sorted(
        ["res3.0", "res3.3", "res5.0"] + [f"res4.{i}" for i in range(0, 23, 3)]
    )


RES, LAYERS, H = "backbone.fpn.bottom_up.", "backbone.layers.", "prediction_layers.0."


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (RES + "stem.conv1.weight", "backbone.conv1.weight"),
        (RES + "stem.conv1.norm.running_var", "backbone.bn1.running_var"),
        (RES + "res2.0.shortcut.weight", LAYERS + "0.0.downsample.0.weight"),
        (RES + "res4.5.conv3.norm.bias", LAYERS + "2.5.bn3.bias"),
        (RES + "res3.3.conv2.weight", LAYERS + "1.3.conv2.weight"),
        (RES + "res3.3.conv2_offset.weight", LAYERS + "1.3.conv2.conv_offset_mask.weight"),
        (RES + "res5.0.conv2_offset.bias", LAYERS + "3.0.conv2.conv_offset_mask.bias"),
        (RES + "res5.0.conv2.norm.running_var", LAYERS + "3.0.bn2.running_var"),
        (RES + "res5.1.conv2.norm.running_mean", LAYERS + "3.1.bn2.running_mean"),
        ("backbone.fpn.fpn_lateral5.weight", "fpn.lat_layers.0.weight"),
        ("backbone.fpn.fpn_lateral3.bias", "fpn.lat_layers.2.bias"),
        ("backbone.fpn.fpn_output5.weight", "fpn.pred_layers.0.weight"),
        ("backbone.fpn.fpn_output4.bias", "fpn.pred_layers.1.bias"),
        ("backbone.downsample.1.weight", "fpn.downsample_layers.1.weight"),
        ("protonet.tower.4.weight", "proto_net.4.weight"),
        ("protonet.refine.bias", "proto_net.8.bias"),
        ("protonet.output.weight", "proto_net.10.weight"),
        ("head.upfeature.0.weight", H + "upfeature.0.weight"),
        ("head.towers.cls.2.weight", H + "conf_extra.2.weight"),
        ("head.towers.box.0.bias", H + "bbox_extra.0.bias"),
        ("head.towers.track.2.bias", H + "track_extra.2.bias"),
        ("head.towers.mask.0.weight", H + "mask_extra.0.weight"),
        ("head.last.cls.1.deform.weight", H + "conf_layer.1.conv_adaption.weight"),
        ("head.last.cls.2.conv_offset.weight", H + "conf_layer.2.conv_offset.weight"),
        ("head.last.cls.0.conv.bias", H + "conf_layer.0.conv.bias"),
        ("head.last.track.1.conv.weight", H + "track_layer.1.weight"),
        ("head.last.mask.2.conv.bias", H + "mask_layer.2.bias"),
        ("temporal_net.convs.0.weight", "TemporalNet.conv1.weight"),
        ("temporal_net.convs.2.bias", "TemporalNet.conv3.bias"),
        ("temporal_net.box_shift.weight", "TemporalNet.fc.weight"),
        ("temporal_net.coeff_shift.bias", "TemporalNet.fc_coeff.bias"),
    ],
)  # fmt: skip
def test_weights_land_where_they_belong(converted, ours, theirs):
    source, _, _, model = converted
    assert torch.equal(model.state_dict()[ours], source[theirs])


def test_box_conv_is_bbox_then_centerness_and_dcn_bias_is_folded(converted):
    source, _, _, model = converted
    sd = model.state_dict()
    h = "prediction_layers.0."
    for k in range(3):
        for p in ("weight", "bias"):
            ours = sd[f"head.last.box.{k}.{p}"]
            assert torch.equal(ours[:4], source[f"{h}bbox_layer.{k}.{p}"])
            assert torch.equal(ours[4:], source[f"{h}centerness_layer.{k}.{p}"])
    mean = sd["backbone.fpn.bottom_up.res4.3.conv2.norm.running_mean"]
    expected = (
        source["backbone.layers.2.3.bn2.running_mean"] - source["backbone.layers.2.3.conv2.bias"]
    )
    assert torch.allclose(mean, expected, atol=1e-7)


# ------------------------------------------------------------------- the authors' layers
def _bn(x, source, name):
    return F.batch_norm(
        x, source[f"{name}.running_mean"], source[f"{name}.running_var"],
        source[f"{name}.weight"], source[f"{name}.bias"], training=False, eps=1e-5,
    )  # fmt: skip


def authors_bottleneck(x, source, p, stride):
    """backbone.py Bottleneck.forward: the stride in conv2, DCN = DCNv2 (offsets the first 18
    channels of conv_offset_mask, the mask the sigmoid of the last 9) with its bias, then bn2."""
    out = F.relu(_bn(F.conv2d(x, source[f"{p}.conv1.weight"]), source, f"{p}.bn1"))
    if f"{p}.conv2.conv_offset_mask.weight" in source:
        om = F.conv2d(
            out, source[f"{p}.conv2.conv_offset_mask.weight"],
            source[f"{p}.conv2.conv_offset_mask.bias"], stride=stride, padding=1,
        )  # fmt: skip
        out = deform_conv2d(
            out, om[:, :18], source[f"{p}.conv2.weight"], source[f"{p}.conv2.bias"],
            stride=stride, padding=1, mask=om[:, 18:].sigmoid(),
        )  # fmt: skip
    else:
        out = F.conv2d(out, source[f"{p}.conv2.weight"], stride=stride, padding=1)
    out = F.relu(_bn(out, source, f"{p}.bn2"))
    out = _bn(F.conv2d(out, source[f"{p}.conv3.weight"]), source, f"{p}.bn3")
    if f"{p}.downsample.0.weight" in source:
        x = F.conv2d(x, source[f"{p}.downsample.0.weight"], stride=stride)
        x = _bn(x, source, f"{p}.downsample.1")
    return F.relu(out + x)


def authors_resnet_res3(image, source):
    x = F.relu(_bn(F.conv2d(image, source["backbone.conv1.weight"], stride=2, padding=3),
                   source, "backbone.bn1"))  # fmt: skip
    x = F.max_pool2d(x, 3, 2, 1)
    for layer, n in ((0, 3), (1, 4)):
        for i in range(n):
            stride = 2 if layer == 1 and i == 0 else 1
            x = authors_bottleneck(x, source, f"backbone.layers.{layer}.{i}", stride)
    return x


def test_backbone_computes_the_authors_resnet_with_dcn(converted):
    """Stem, res2 and res3 (res3.0 deformable with stride 2, res3.3 deformable): the folded
    frozen BatchNorm after the bias-free deformable conv gives the authors' DCN + bias + BN, and
    STRIDE_IN_1X1 False puts the stride where their 3x3 conv has it (True does not)."""
    source, _, conversion, model = converted
    image = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = authors_resnet_res3(image, source)
        ours = model.backbone.fpn.bottom_up(image)["res3"]
        assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-4)
        # STMask_R50_DCN.yaml (for MSRA ImageNet weights): STRIDE_IN_1X1 True
        wrong = build_backbone(setup_cfg(str(CONFIGS / "STMask_R50_DCN.yaml"), OPTS))
        weights = {k[len("backbone.") :]: v for k, v in conversion.state_dict.items()}
        wrong.load_state_dict({k: v for k, v in weights.items() if k in wrong.state_dict()})
        assert not torch.allclose(wrong.fpn.bottom_up(image)["res3"], expected, atol=1e-2)


def _conv(x, source, name, kernel=(3, 3)):
    return F.conv2d(x, source[f"{name}.weight"], source.get(f"{name}.bias"),
                    padding=(kernel[0] // 2, kernel[1] // 2))  # fmt: skip


def authors_head(x, source):
    """prediction_head_FC.py PredictionModule_FC.forward (FCB ada on the class branch):
    per-anchor-shape maps (B, C, H, W) and the rows of loc, conf as the authors order them."""
    h = "prediction_layers.0."
    x = F.relu(_conv(x, source, f"{h}upfeature.0"))

    def extra(name):
        y = x
        for i in (0, 2):
            y = F.relu(_conv(y, source, f"{h}{name}.{i}"))
        return y

    conf_x, bbox_x, mask_x, track_x = (
        extra(f"{n}_extra") for n in ("conf", "bbox", "mask", "track")
    )
    maps = {"loc": [], "ctr": [], "conf": [], "track": [], "mask": []}
    for k, kernel in enumerate(KERNELS):
        pad = (kernel[0] // 2, kernel[1] // 2)
        box = _conv(bbox_x, source, f"{h}bbox_layer.{k}", kernel)
        maps["loc"].append(box)
        maps["ctr"].append(_conv(bbox_x, source, f"{h}centerness_layer.{k}", kernel))
        fa = f"{h}conf_layer.{k}."
        offset = F.conv2d(box, source[f"{fa}conv_offset.weight"])
        aligned = F.relu(deform_conv2d(conf_x, offset, source[f"{fa}conv_adaption.weight"],
                                       padding=pad))  # fmt: skip
        maps["conf"].append(_conv(aligned, source, f"{fa}conv", kernel))
        maps["track"].append(_conv(track_x, source, f"{h}track_layer.{k}", kernel))
        maps["mask"].append(_conv(mask_x, source, f"{h}mask_layer.{k}", kernel))
    return x, maps


def test_head_rows_are_the_authors_convs_per_location_and_anchor_shape(converted):
    """Row (y·W + x)·3 + k of each of our outputs is the authors' anchor-shape-k conv at (y, x),
    all 41 logits in the same order (background first), deltas; the centerness in the
    authors' order."""
    source, _, _, model = converted
    feature = torch.randn(1, 256, 5, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = model.head._level(feature)
        t2s, maps = authors_head(feature, source)
    height, width = 5, 7
    assert torch.allclose(ours["t2s"], t2s, atol=1e-5)
    for y, x, k in [(0, 0, 0), (2, 3, 1), (4, 6, 2), (1, 5, 1), (3, 0, 2)]:
        row = (y * width + x) * 3 + k
        assert torch.allclose(ours["cls"][0, row], maps["conf"][k][0, :, y, x], atol=1e-4)
        assert torch.allclose(ours["box"][0, row], maps["loc"][k][0, :, y, x], atol=1e-5)
        assert torch.allclose(ours["mask"][0, row], maps["mask"][k][0, :, y, x], atol=1e-5)
        track = F.normalize(maps["track"][k][0, :, y, x], dim=0)
        assert torch.allclose(ours["track"][0, row], track, atol=1e-5)
    # the whole level: the authors' cat(dim=-1).view(B, -1, C) of the (B, H, W, C) maps
    conf = torch.cat([m.permute(0, 2, 3, 1) for m in maps["conf"]], dim=-1).view(1, -1, 41)
    assert torch.allclose(ours["cls"], conf, atol=1e-4)
    # the centerness rows as the authors' code reads them (STMask_R50_DCN_authors.yaml:
    # CENTERNESS_ORDER shape_major): the per-shape (B, H, W, 1) maps concatenated along y, then
    # flattened, so that row r takes position r of the shape-major maps, not its own anchor's
    ctr = torch.cat([m.permute(0, 2, 3, 1) for m in maps["ctr"]], dim=1).view(1, -1).tanh()
    assert torch.allclose(ours["ctr"], ctr, atol=1e-5)
    own = torch.stack([m[0, 0] for m in maps["ctr"]], dim=-1).reshape(1, -1).tanh()
    assert not torch.allclose(ours["ctr"], own, atol=1e-3)
    assert ours["cls"].shape[1] == height * width * 3
    # the class with the large bias is logit 1 (the first foreground class) in both
    assert (ours["cls"][0].argmax(dim=1) == 1).all()


def test_protonet_and_temporal_net_compute_the_authors_layers(converted):
    source, _, _, model = converted
    g = torch.Generator().manual_seed(5)
    p3 = torch.randn(1, 256, 6, 8, generator=g)
    x = p3
    for i in (0, 2, 4):
        x = F.relu(_conv(x, source, f"proto_net.{i}"))
    x = F.relu(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    x = F.relu(_conv(F.relu(_conv(x, source, "proto_net.8")), source, "proto_net.10", (1, 1)))
    rois = torch.randn(3, 633, 7, 7, generator=g).relu()
    r = rois
    for i in (1, 2, 3):
        r = F.relu(_conv(r, source, f"TemporalNet.conv{i}"))
    r = F.avg_pool2d(r, 7).flatten(1)
    with torch.no_grad():
        assert torch.allclose(model.protonet(p3), x, atol=1e-5)
        h = rois
        for conv in model.temporal_net.convs:
            h = F.relu(conv(h))
        h = h.mean(dim=(2, 3))
        box, coef = model.temporal_net.box_shift(h), model.temporal_net.coeff_shift(h)
    for ours, name in ((box, "fc"), (coef, "fc_coeff")):
        linear = F.linear(
            r, source[f"TemporalNet.{name}.weight"], source[f"TemporalNet.{name}.bias"]
        )
        assert torch.allclose(ours, linear, atol=1e-5)


def test_tool_writes_weights_that_load_strictly_and_match(converted, tmp_path):
    _, path, _, model = converted
    output = tmp_path / "out" / "stmask_r50_dcn_ada.pth"
    proc = run_python(
        TOOL, "--config-file", R50_DCN, "--input", str(path), "--output", str(output),
        "MODEL.DEVICE", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "423 weights in the file, 359 mapped, 64 unused" in proc.stdout
    assert "359 model weights, 359 from the file, 0 filled" in proc.stdout
    for line in (f"5 × {FOLDED_DCN_BIAS}", f"6 × {CONCATENATED_CENTERNESS}"):
        assert line in proc.stdout
    for name in ("layers.1.3.conv2.bias", "layers.3.0.conv2.bias", "layers.2.4.bn1.num_batches"):
        assert f"backbone.{name}" in proc.stdout
    assert "prediction_layers.0.centerness_layer.2.bias" in proc.stdout
    cfg = setup_cfg(R50_DCN, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(output)])
    loaded = load_model(cfg)  # strict
    image = torch.randint(0, 256, (3, 128, 160), generator=torch.Generator().manual_seed(1))
    image = image.to(torch.uint8)
    expected, actual = frame_outputs(model, image), frame_outputs(loaded, image)
    assert len(expected["scores"]) > 0 and expected["masks"].any()
    assert (expected["classes"] == 0).all()  # logit 1 → the first category
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name


def test_tool_fails_clearly_on_another_architecture(tmp_path):
    """A SipMask-VIS (mmdetection) checkpoint given for an STMask config."""
    other = {
        "backbone.conv1.weight": torch.zeros(64, 3, 7, 7),
        "neck.lateral_convs.0.conv.weight": torch.zeros(256, 512, 1, 1),
        "bbox_head.fcos_cls.weight": torch.zeros(40, 256, 3, 3),
    }
    path = tmp_path / "vis_sipmask_ms_1x_final.pth"
    torch.save({"state_dict": other, "meta": {}}, path)
    output = tmp_path / "out.pth"
    proc = run_python(
        TOOL, "--config-file", R50_DCN, "--input", str(path), "--output", str(output),
        "MODEL.DEVICE", "cpu",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert f"{path} cannot be converted for STMask" in proc.stderr
    assert "not a checkpoint of the authors' STMask" in proc.stderr
    assert "backbone, bbox_head, neck" in proc.stderr
    assert not output.exists()


def _error(source, target) -> str:
    with pytest.raises(ConversionError) as info:
        _convert(source, target)
    return str(info.value)


def test_wrong_settings_are_named(converted, r101):
    source, _, _, model = converted
    target = model.state_dict()
    # an OVIS checkpoint (25 classes) for a YouTube-VIS config
    ovis = authors_state_dict(num_classes=26, seed=1)
    assert "26 class logits" in _error(ovis, target)
    assert "MODEL.STMASK.NUM_CLASSES 25" in _error(ovis, target)
    # ResNet-101 for ResNet-50
    message = _error(r101[0], target)
    assert "(3, 4, 23, 3)" in message and "ResNet-101" in message and "DEPTH" in message
    # the README's later R-50 configs: DCN every 2nd block
    message = _error(authors_state_dict(dcn_interval=2, seed=2), target)
    assert "res3.0, res3.2, res4.0, res4.2, res4.4, res5.0, res5.2" in message
    assert "DEFORM_ON_PER_STAGE [False, True, True, True]" in message
    assert "DEFORM_INTERVAL 2" in message
    # FCB ali / no FCB for an FCB(ada) config
    assert "is FCB(ali)" in _error(authors_state_dict(fcb="ali", seed=3), target)
    assert "MODEL.STMASK.FCB" in _error(authors_state_dict(fcb="none", seed=3), target)


def test_bad_shapes_and_names_are_errors(converted):
    source, _, _, model = converted
    target = model.state_dict()
    wrong = dict(source)
    wrong["TemporalNet.conv1.weight"] = torch.zeros(512, 634, 3, 3)
    message = _error(wrong, target)
    for part in ("TemporalNet.conv1.weight", "(512, 634, 3, 3)", "temporal_net.convs.0.weight"):
        assert part in message
    missing = {
        k: v for k, v in source.items() if k != "prediction_layers.0.centerness_layer.1.bias"
    }
    assert "no weight prediction_layers.0.centerness_layer.1.bias" in _error(missing, target)
    extra = dict(source, **{"maskiou_net.0.weight": torch.zeros(8, 1, 3, 3)})
    assert "no counterpart in the model: maskiou_net.0.weight" in _error(extra, target)


def test_checkpoint_errors_name_the_file(tmp_path):
    source = authors_state_dict(dcn_interval=2, seed=2)
    path = tmp_path / "STMask_plus_resnet50_ada_OVIS.pth"
    torch.save(source, path)
    with pytest.raises(ConversionError, match=f"{path} cannot be converted for STMask: .*"
                       "DEFORM_INTERVAL 2"):  # fmt: skip
        convert_checkpoint(setup_cfg(R50_DCN, OPTS), path)


def test_the_plain_release_converts_for_fcb_none():
    """STMask_plus_resnet50.pth (no FCB: conf_layer.k a plain conv) for MODEL.STMASK.FCB none,
    and without temporal fusion the TemporalNet is reported unused."""
    source = authors_state_dict(fcb="none", seed=6)
    cfg = setup_cfg(R50_DCN, OPTS + ["MODEL.STMASK.FCB", "none", "MODEL.STMASK.TF.ON", "False"])
    target = build_model(cfg).state_dict()
    conversion = _convert(source, target)
    assert len(source) == 417 and len(target) == 359 - 6 - 10
    assert len(conversion.mapped) == len(target)
    assert sum("TF.ON False" in why for _, why in conversion.unused) == 10
    assert torch.equal(
        conversion.state_dict["head.last.cls.2.conv.weight"],
        source["prediction_layers.0.conf_layer.2.weight"],
    )


def test_deformable_interval_reads_the_released_layouts():
    blocks = {s: set(range(n)) for s, n in zip((2, 3, 4, 5), BLOCKS[101], strict=True)}
    every_third = {(s, i) for s in (3, 4, 5) for i in blocks[s] if i % 3 == 0}
    assert deformable_interval(every_third, blocks) == ([False, True, True, True], 3)
    assert deformable_interval(set(), blocks) == ([False, False, False, False], 1)
    assert deformable_interval({(3, 1)}, blocks) is None
