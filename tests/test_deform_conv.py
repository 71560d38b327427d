"""vis_d2.layers.DeformConv: its CPU computation equals torchvision's deform_conv2d."""

import pytest
import torch
from torchvision.ops import deform_conv2d

from vis_d2.layers import DeformConv
from vis_d2.layers.deform_conv import deform_conv2d_by_sampling

CASES = [  # (N, C, H, W), kernel, stride, padding, dilation, offset groups
    ((2, 8, 9, 11), 3, 1, 1, 1, 4),
    ((2, 8, 9, 11), 3, 2, 1, 1, 2),
    ((1, 4, 7, 6), 3, 1, 2, 2, 1),
    ((2, 6, 5, 8), (3, 5), 1, (1, 2), 1, 3),
    ((1, 4, 6, 7), 3, (2, 1), 0, (1, 2), 2),
    ((1, 4, 1, 1), 3, 1, 1, 1, 1),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("modulated", [False, True], ids=["dcn", "dcnv2"])
@pytest.mark.parametrize(("shape", "kernel", "stride", "padding", "dilation", "groups"), CASES)
def test_sampling_equals_torchvision_forward_and_backward(
    shape, kernel, stride, padding, dilation, groups, modulated
):
    torch.manual_seed(0)
    (n, c, h, w), (kh, kw) = shape, _pair(kernel)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, c, kh, kw, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64)
    # offsets of a few pixels: samples between pixels and outside the input
    offset = torch.randn(n, 2 * groups * kh * kw, out_h, out_w, dtype=torch.float64) * 2
    offset.requires_grad_()
    mask = None
    if modulated:  # DCNv2: one modulation in [0, 1] per group, tap and output location
        mask = torch.rand(n, groups * kh * kw, out_h, out_w, dtype=torch.float64)
        mask.requires_grad_()
    args = {"stride": stride, "padding": padding, "dilation": dilation, "mask": mask}
    inputs = (x, offset, weight) + ((mask,) if modulated else ())
    expected = deform_conv2d(x, offset, weight, bias, **args)
    out = deform_conv2d_by_sampling(x, offset, weight, bias, **args)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-10)
    # samples on pixels too (where the offsets' gradient is one-sided, so compared above only)
    on_pixels = offset.detach().round()
    assert torch.allclose(
        deform_conv2d_by_sampling(x, on_pixels, weight, bias, **args),
        deform_conv2d(x, on_pixels, weight, bias, **args),
        atol=1e-10,
    )
    grad = torch.randn_like(out)
    for a, b in zip(
        torch.autograd.grad(out, inputs, grad),
        torch.autograd.grad(expected, inputs, grad),
        strict=True,
    ):
        assert torch.allclose(a, b, atol=1e-9)


def test_module_runs_the_sampling_form_on_the_cpu():
    conv = DeformConv(8, 4, 3, padding=1, offset_groups=4)
    x, offset = torch.randn(2, 8, 5, 6), torch.randn(2, conv.offset_channels, 5, 6)
    expected = deform_conv2d(x, offset, conv.weight, conv.bias, padding=1)
    assert torch.allclose(conv(x, offset), expected, atol=1e-5)
    mask = torch.rand(2, 4 * 9, 5, 6)
    expected = deform_conv2d(x, offset, conv.weight, conv.bias, padding=1, mask=mask)
    assert torch.allclose(conv(x, offset, mask), expected, atol=1e-5)
    norm = torch.nn.BatchNorm2d(4).eval()
    torch.nn.init.normal_(norm.running_mean)
    normed = DeformConv(8, 4, 3, padding=1, offset_groups=4, norm=norm)
    normed.load_state_dict(conv.state_dict(), strict=False)
    assert torch.allclose(normed(x, offset, mask), norm(expected), atol=1e-5)
    with pytest.raises(ValueError, match="8 input channels in 3 offset groups"):
        DeformConv(8, 4, 3, offset_groups=3)
