"""
The frontend's windowed pooling, LeakyReLU, Hardtanh and 1x1-conv classifier (issue 13):
the exported po2 ops and shapes (ceil_mode as padding), the fake-quant model (float64)
equal to the golden model on that IR bit for bit, the Po2 slope warning, and one-line errors naming the fx node
for what cannot be hardened.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashiflex.dialects import po2
from hashiflex.frontend.quant import UnsupportedModelError, quantize_ptq


def _fq_equals_int(q, x: torch.Tensor) -> None:
    x_int = q.quantize_input(x)
    fq = q.fake_quant.double().eval()
    with torch.no_grad():
        y = fq(torch.from_numpy(x_int * 2.0 ** -q.input_format.frac)).numpy()
    np.testing.assert_array_equal(y * 2.0 ** q.logits_frac, q.run_int(x).astype(np.float64))


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.mp = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = self.mp(self.conv(x))                        # 7x9 -> 4x5
        x = F.max_pool2d(x, 2, ceil_mode=True)           # 4x5 -> 2x3 (extra right column)
        x = F.avg_pool2d(x, 3, 1, 1)                     # 2x3, zero padding counted
        x = F.leaky_relu(F.hardtanh(x, -0.3, 0.2), 0.25)
        return self.fc(x.mean((2, 3)))


def test_pool_ops_shapes_and_bit_exactness():
    torch.manual_seed(0)
    x = torch.rand(32, 2, 7, 9) * 2 - 1
    q = quantize_ptq(Pools().eval(), x, ptq="nearest")
    by_type = {type(op): op for op in q.layers}
    mp = [op for op in q.layers if isinstance(op, po2.MaxPool2dOp)]
    assert [m.output.type.dims for m in mp] == [(3, 4, 5), (3, 2, 3)]
    assert mp[0].padding == (1, 1, 1, 1) and mp[1].padding == (0, 0, 0, 1)
    conv_fmt = q.layers[0].output.type.fmt
    assert all(m.output.type.fmt == conv_fmt for m in mp)  # max pooling keeps the format
    avg = by_type[po2.AvgPool2dOp]
    assert (avg.multiplier, avg.shift) == (116508, 20)
    clamp = by_type[po2.ClampOp]
    fmt = clamp.output.type.fmt
    bound = lambda v: int(np.floor(v * 2 ** fmt.frac + 0.5))  # noqa: E731
    assert (clamp.lo, clamp.hi) == (max(bound(-0.3), fmt.lo), min(bound(0.2), fmt.hi))
    assert clamp.hi < fmt.hi  # the bound really clamps
    assert by_type[po2.LeakyReluOp].slope_shift == 2
    _fq_equals_int(q, x)


def test_leaky_slope_rounds_to_po2_with_a_warning():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(18, 2))
    with pytest.warns(UserWarning, match=r"negative_slope 0.1 is not a power of two; rounded to 2\^-3"):
        q = quantize_ptq(model.eval(), torch.rand(8, 1, 5, 5) - 0.5, ptq="nearest")
    assert next(op for op in q.layers if isinstance(op, po2.LeakyReluOp)).slope_shift == 3


class ConvHead(nn.Module):
    def __init__(self, relu: bool = False, kernel: int = 1):
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 5, kernel)
        self.bn = nn.BatchNorm2d(5)
        self.relu = relu

    def forward(self, x):
        y = self.bn(self.head(F.relu(self.body(x))))
        return (F.relu(y) if self.relu else y).mean((2, 3))


def test_final_1x1_conv_and_global_pooling_go_to_the_npu():
    torch.manual_seed(1)
    model = ConvHead().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    x = torch.rand(16, 3, 6, 7)
    q = quantize_ptq(model, x, ptq="nearest")
    assert isinstance(q.layers[-1], po2.NpuLinearOp) and q.layers[-1].output.type.dims == (5,)
    assert [op.name for op in q.layers] == ["po2.conv2d", "po2.avgpool", "po2.flatten",
                                            "po2.npu_linear"]
    _fq_equals_int(q, x)
    # the rewrite is the same linear map: the float (folded) model matches the original
    fq = q.fake_quant.float().set_quantize(False)
    with torch.no_grad():
        torch.testing.assert_close(fq(x), model(x), rtol=1e-4, atol=1e-5)
    q.fake_quant.set_quantize(True)


@pytest.mark.parametrize("make, fragment", [
    (lambda: ConvHead(relu=True), r"fx node 'head'.*no activation follows it"),
    (lambda: ConvHead(kernel=3), r"fx node 'head'.*only when it is 1x1"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3, dilation=2), nn.Flatten(), nn.Linear(8, 2)),
     r"fx node '_0'.*dilation"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(),
                           nn.Linear(72, 2)), r"fx node '_0'.*padding_mode 'reflect'"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.MaxPool2d(2, dilation=2), nn.Flatten(),
                           nn.Linear(2, 2)), r"fx node '_1'.*dilation"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.MaxPool2d(2, return_indices=True),
                           nn.Flatten(), nn.Linear(2, 2)), r"fx node '_1'.*return_indices"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.Hardswish(), nn.Flatten(), nn.Linear(32, 2)),
     r"fx node '_1'.*Hardswish multiplies activations by activations"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.Hardsigmoid(), nn.Flatten(), nn.Linear(32, 2)),
     r"fx node '_1'.*Hardsigmoid multiplies activations by activations"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.AvgPool2d(2, 1, 1, count_include_pad=False),
                           nn.Flatten(), nn.Linear(50, 2)), r"fx node '_1'.*count_include_pad"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 2), nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(),
                           nn.Linear(18, 2)), r"fx node '_1'.*ceil_mode"),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.LeakyReLU(-0.5), nn.Flatten(),
                           nn.Linear(32, 2)), r"fx node '_1'.*negative_slope"),
])
def test_bad_input_is_one_line_naming_the_node(make, fragment):
    with pytest.raises(UnsupportedModelError, match=fragment) as err:
        quantize_ptq(make().eval(), torch.rand(4, 3, 6, 6), ptq="nearest")
    assert "\n" not in str(err.value)
