"""The released STMask checkpoints' layout (MinghanLi/STMask: backbone.py ResNetBackbone /
Bottleneck with DCNv2's DCN, layers/modules/FPN.py, make_net.py, prediction_head_FC.py,
Featurealign.py, track_to_segment_head.py, and the STMask_plus_* configs of
datasets/config.py), with deterministic random values: the fake checkpoints of
test_stmask_convert.py and test_stmask_reference.py."""

import hashlib

import numpy as np
import torch

KERNELS = [(3, 3), (3, 5), (5, 3)]  # head_layer_params: (h, w) of anchor shape k
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def authors_state_dict(
    depth: int = 50,
    dcn_interval: int = 3,
    fcb: str = "ada",
    num_classes: int = 41,
    seed: int = 0,
    favoured_classes: int = 1,
    class_std: float = 0.01,
) -> dict[str, torch.Tensor]:
    """The released STMask weights' names and shapes (``fcb``: "ada", "ali" or "none" for the
    _ada, _ali and plain files), random values: the logits of the first ``favoured_classes``
    foreground classes have a bias of 4 (so that there are detections), the class convs'
    weights the std ``class_std`` (larger: the class varies more with the image)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    def conv(name, cout, cin, kh, kw=None, bias=True, std=None, bias_value=None):
        kw = kh if kw is None else kw
        sd[f"{name}.weight"] = randn(cout, cin, kh, kw, std=std or (2 / (cin * kh * kw)) ** 0.5)
        if bias:
            sd[f"{name}.bias"] = randn(cout, std=0.1) if bias_value is None else bias_value(cout)

    def bn(name, c, scale=1.0):  # scale < 1 keeps the residual sums of 16-33 blocks tame
        sd[f"{name}.weight"] = (torch.rand(c, generator=g) + 0.5) * scale
        sd[f"{name}.bias"] = randn(c, std=0.1)
        sd[f"{name}.running_mean"] = randn(c, std=0.1)
        sd[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(120000, dtype=torch.int64)

    # backbone.py ResNetBackbone(layers, dcn_layers=[0, 4, L3, 3], dcn_interval): torchvision
    # Bottleneck, DCN (dcn_v2) as conv2 where _make_layer says so
    conv("backbone.conv1", 64, 3, 7, bias=False)
    bn("backbone.bn1", 64)
    blocks = BLOCKS[depth]
    dcn_layers = [0, 4, blocks[2], 3]
    cin = 64
    for layer, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        for i in range(n):
            p = f"backbone.layers.{layer}.{i}"
            use_dcn = dcn_layers[layer] >= n if i == 0 else (
                i + dcn_layers[layer] >= n and i % dcn_interval == 0
            )  # fmt: skip
            c_in = cin if i == 0 else 4 * planes
            conv(f"{p}.conv1", planes, c_in, 1, bias=False)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3, bias=use_dcn)
            if use_dcn:  # DCN(planes, planes, 3): weight, bias, conv_offset_mask (3·9 outputs)
                conv(f"{p}.conv2.conv_offset_mask", 27, planes, 3, std=0.01)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", 4 * planes, planes, 1, bias=False)
            bn(f"{p}.bn3", 4 * planes, scale=0.2)
            if i == 0:
                conv(f"{p}.downsample.0", 4 * planes, c_in, 1, bias=False)
                bn(f"{p}.downsample.1", 4 * planes)
        cin = 4 * planes
    # FPN.py: lat_layers for reversed(in_channels) = C5, C4, C3; pred_layers; 2 conv downsamples
    for i, c in enumerate((2048, 1024, 512)):
        conv(f"fpn.lat_layers.{i}", 256, c, 1)
    for i in range(3):
        conv(f"fpn.pred_layers.{i}", 256, 256, 3)
    for i in range(2):
        conv(f"fpn.downsample_layers.{i}", 256, 256, 3)
    # mask_proto_net [(256, 3)] * 3 + [(None, -2), (256, 3)] + [(32, 1)] through make_net
    for i in (0, 2, 4, 8):
        conv(f"proto_net.{i}", 256, 256, 3)
    conv("proto_net.10", 32, 256, 1)
    # prediction_head_FC.py PredictionModule_FC (prediction_layers.0; the others share it)
    h = "prediction_layers.0"
    conv(f"{h}.upfeature.0", 256, 256, 3)
    for k, (kh, kw) in enumerate(KERNELS):
        conv(f"{h}.centerness_layer.{k}", 1, 256, kh, kw, std=0.01, bias_value=torch.ones)
        conv(f"{h}.bbox_layer.{k}", 4, 256, kh, kw, std=0.01)
        cls_bias = lambda c: torch.zeros(c).index_fill_(  # noqa: E731
            0, torch.arange(1, 1 + favoured_classes), 4.0
        )
        if fcb == "none":
            conv(f"{h}.conf_layer.{k}", num_classes, 256, kh, kw, std=class_std,
                 bias_value=cls_bias)  # fmt: skip
        else:  # Featurealign.py FeatureAlign(deformable_groups=1)
            if fcb == "ada":
                conv(f"{h}.conf_layer.{k}.conv_offset", 2 * kh * kw, 4, 1, bias=False, std=0.5)
            conv(f"{h}.conf_layer.{k}.conv_adaption", 256, 256, kh, kw, bias=False, std=0.01)
            conv(
                f"{h}.conf_layer.{k}.conv",
                num_classes,
                256,
                kh,
                kw,
                std=class_std,
                bias_value=cls_bias,
            )
        conv(f"{h}.track_layer.{k}", 128, 256, kh, kw, std=0.01)
        conv(f"{h}.mask_layer.{k}", 32, 256, kh, kw, std=0.05)
    for name in ("track_extra", "conf_extra", "bbox_extra", "mask_extra"):
        for i in (0, 2):
            conv(f"{h}.{name}.{i}", 256, 256, 3, std=0.02)
    # track_to_segment_head.py TemporalNet(2 * 256 + 11², 32)
    conv("TemporalNet.conv1", 512, 633, 3, std=0.01)
    conv("TemporalNet.conv2", 512, 512, 3, std=0.02)
    conv("TemporalNet.conv3", 1024, 512, 3, std=0.02)
    for name, c in (("fc", 4), ("fc_coeff", 32)):
        sd[f"TemporalNet.{name}.weight"] = randn(c, 1024, std=0.01)
        sd[f"TemporalNet.{name}.bias"] = randn(c, std=0.01)
    return sd


# the released model the reference fixture stands for, STMask_plus_resnet50_ada_YTVIS2021.pth,
# as the authors' code at its last commit builds it (their config of that name: R-50 with DCN
# in every 2nd block of res3-res5, FCB(ada) on the class branch), and the seed of its weights
REFERENCE_CONFIG = "STMask_plus_resnet50_ada_YTVIS2021_config"
REFERENCE_SEED = 11
REFERENCE_SIZE = (256, 384)  # (H, W) of the frames, multiples of 32 (no padding, no resize)
# the fixture keeps every CHANNEL_STEP-th channel of the dense maps of the first frame, every
# ROW_STEP-th head row of the class logits and coefficients (3·ROW_STEP-th of the embeddings)
CHANNEL_STEP = {"backbone": 64, "fpn": 16, "proto": 4}
ROW_STEP = 7


def reference_checkpoint() -> dict[str, torch.Tensor]:
    """The fake STMask_plus_resnet50_ada_YTVIS2021.pth of the reference fixture."""
    return authors_state_dict(
        dcn_interval=2, seed=REFERENCE_SEED, favoured_classes=4, class_std=0.04
    )


def checkpoint_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the names, shapes and float32 values of a state dict, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        value = state_dict[name].detach().cpu()
        digest.update(f"{name}{tuple(value.shape)}".encode())
        digest.update(value.to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def reference_frames(num_frames: int = 3) -> list[np.ndarray]:
    """The fixture's video: RGB uint8 (H, W, 3) frames of a smooth background with noise and
    three shapes (a rectangle, a disc and a triangle) that move a few pixels a frame."""
    height, width = REFERENCE_SIZE
    rng = np.random.default_rng(REFERENCE_SEED)
    noise = rng.integers(-12, 13, size=(num_frames, height, width, 3))
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(num_frames):
        image = np.stack(
            (60 + 80 * xs / width, 90 + 60 * ys / height, 140 - 50 * xs / width), axis=-1
        )
        rect = (ys >= 40 + 3 * t) & (ys < 130 + 3 * t) & (xs >= 30 + 9 * t) & (xs < 150 + 9 * t)
        image[rect] = (220, 60, 50)
        disc = (ys - 170 + 4 * t) ** 2 + (xs - 260 + 7 * t) ** 2 < 55**2
        image[disc] = (40, 200, 90)
        tri = (ys >= 30) & (ys < 120) & (np.abs(xs - 300 - 5 * t) < (ys - 30) * 0.6)
        image[tri] = (250, 230, 40)
        frames.append(np.clip(image + noise[t], 0, 255).astype(np.uint8))
    return frames
