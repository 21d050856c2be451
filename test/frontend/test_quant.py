"""Po2 quantisation: the fake-quant torch model equals the integer executor bit for bit.

The central check (``assert_bit_exact``): the fake-quant model evaluated in float64, times
``2^logits_frac``, equals the golden model on the exported po2 IR exactly, on
random, extreme (all-max, all-min, zeros, far out of range) and real digits inputs, for the
tiny CNN, a small MobileNetV2 and hypothesis-generated networks. Also: tracing coverage
(functional forms, fusions), error messages, BN folding, the weight-code rules.
"""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from hashiflex.examples.digits import load_digits_split
from hashiflex.examples.mobilenetv2 import mobilenetv2
from hashiflex.examples.tiny_cnn import tiny_cnn
from hashiflex.dialects import po2
from hashiflex.frontend.quant import (
    ModelShapeError,
    QuantizedModel,
    UnsupportedModelError,
    build_fake_quant,
    po2_weight_codes,
    po2_weight_values,
    quantize_ptq,
    quantize_qat,
)
from hashiflex.golden import model as golden_model
from hashiflex.golden.semantics import Format, quantize_input


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convs on a shared 2-core machine: one thread avoids OpenMP contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(16, 0)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics so that folding matters."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
    return model.eval()


def fake_quant_int(q, x: torch.Tensor) -> np.ndarray:
    """The fake-quant model's logits in float64, scaled to the integer grid."""
    fq = copy.deepcopy(q.fake_quant).double().eval()
    with torch.no_grad():
        out = fq(x.double()).numpy() * 2.0 ** q.logits_frac
    assert np.array_equal(out, np.round(out)), "fake-quant logits off the integer grid"
    return out.astype(np.int64)


def assert_bit_exact(q, x: torch.Tensor) -> np.ndarray:
    """fake-quant (float64) == the golden model on the exported po2 IR."""
    x_int = quantize_input(x.numpy(), q.input_format)
    ref = golden_model.run_int(q.module, x_int)
    got = fake_quant_int(q, x)
    mismatch = np.argwhere(got != ref)
    assert mismatch.size == 0, f"{len(mismatch)} mismatches, first at {mismatch[0]}"
    return ref


def kinds(q) -> list[str]:
    return [op.name.removeprefix("po2.") for op in q.layers]


def ops_of(q, kind: type) -> list:
    return [op for op in q.layers if isinstance(op, kind)]


def extreme_inputs(fmt: Format, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """All-max and all-min of the input format, zeros, and far out of range both ways."""
    full = lambda v: torch.full((2, *shape), float(v))  # noqa: E731
    return [full(math.ldexp(fmt.hi, -fmt.frac)), full(math.ldexp(fmt.lo, -fmt.frac)),
            full(0.0), full(1e3), full(-1e3)]


def check_model(model: nn.Module, calib: torch.Tensor, tests: list[torch.Tensor],
                **options) -> object:
    q = quantize_ptq(model, calib, **options)
    for x in tests + extreme_inputs(q.input_format, tuple(calib.shape[1:])):
        assert_bit_exact(q, x)
    return q


# ---------------------------------------------------------------------------------------
# The examples
# ---------------------------------------------------------------------------------------


def test_tiny_cnn_bit_exact(digits):
    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = randomize_bn(tiny_cnn())
    gen = torch.Generator().manual_seed(1)
    q = check_model(model, x_train[:128], [x_test[:64], torch.rand(16, 1, 16, 16, generator=gen),
                                            torch.randn(16, 1, 16, 16, generator=gen) * 3])
    assert kinds(q) == ["conv2d", "conv2d", "conv2d", "conv2d", "residual_add", "conv2d",
                        "avgpool", "flatten", "npu_linear"]
    acts = [op.act for op in q.layers if isinstance(op, (po2.Conv2dOp, po2.ResidualAddOp))]
    assert acts == ["relu", "relu", "relu6", "relu6", "none", "relu"]
    assert q.input_format == Format(8, False, 7)  # digits in [0, 1]: 1.0 * 2^7 <= 255


def test_mobilenetv2_small_bit_exact(digits):
    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = randomize_bn(mobilenetv2(0.25, 16, 10, 1))
    gen = torch.Generator().manual_seed(2)
    q = check_model(model, x_train[:64], [x_test[:16], torch.rand(8, 1, 16, 16, generator=gen)])
    # width 0.25 rounds the first blocks to 8 channels: 2 more residuals than width 1.0
    adds = ops_of(q, po2.ResidualAddOp)
    assert len(adds) == 12
    assert all(op.output.type.fmt.signed for op in adds)


def test_mobilenetv2_rgb_32_bit_exact():
    torch.manual_seed(0)
    model = randomize_bn(mobilenetv2(0.25, 32, 10, 3))
    gen = torch.Generator().manual_seed(3)
    calib = torch.randn(16, 3, 32, 32, generator=gen)
    q = quantize_ptq(model, calib)
    assert q.input_format.signed  # calibration data has negative values
    for x in [torch.randn(4, 3, 32, 32, generator=gen)] + extreme_inputs(q.input_format,
                                                                         (3, 32, 32))[:2]:
        assert_bit_exact(q, x)
    assert q.layers[-2].output.type.dims == (1280,)
    (pool,) = ops_of(q, po2.AvgPoolOp)
    assert (pool.multiplier, pool.shift) == (1, 4)  # 4x4 -> sum >> 4


# ---------------------------------------------------------------------------------------
# Random networks
# ---------------------------------------------------------------------------------------

class _Fn(nn.Module):
    """A functional activation, traced through by fx."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


_ACTS = {
    "none": lambda: _Fn(lambda x: x),
    "relu": nn.ReLU,
    "relu6": lambda: nn.ReLU6(inplace=True),
    "F.relu": lambda: _Fn(F.relu),
    "torch.clamp06": lambda: _Fn(lambda x: torch.clamp(x, 0, 6)),
    "x.clamp0": lambda: _Fn(lambda x: x.clamp(min=0)),
    "hardtanh06": lambda: nn.Hardtanh(0.0, 6.0),
}


class RandomNet(nn.Module):
    def __init__(self, in_ch: int, layers: list[dict], head: str, classes: int,
                 fc_bias: bool, in_shape: tuple[int, int]):
        super().__init__()
        self.spec = layers
        self.head = head
        self.pads = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.acts = nn.ModuleList(_ACTS[layer["act"]]() for layer in layers)
        c, (h, w) = in_ch, in_shape
        for layer in layers:
            top, left, bottom, right = layer["pad"]
            sym = top == bottom and left == right
            self.pads.append(nn.Identity() if sym else nn.ZeroPad2d((left, right, top, bottom)))
            self.convs.append(nn.Conv2d(c, layer["cout"], layer["k"], layer["stride"],
                                        (top, left) if sym else 0, groups=layer["groups"],
                                        bias=layer["bias"]))
            self.bns.append(nn.BatchNorm2d(layer["cout"]) if layer["bn"] else nn.Identity())
            c = layer["cout"]
            h = (h + top + bottom - layer["k"]) // layer["stride"] + 1
            w = (w + left + right - layer["k"]) // layer["stride"] + 1
        features = c if head != "flatten" else c * h * w
        self.fc = nn.Linear(features, classes, bias=fc_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, pad, conv, bn, act in zip(self.spec, self.pads, self.convs, self.bns,
                                             self.acts):
            y = act(bn(conv(pad(x))))
            x = x + y if layer["residual"] else y
            if layer["post_act"]:
                x = F.relu(x)
        if self.head == "pool":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        elif self.head == "mean":
            x = x.mean((2, 3))
        else:
            x = x.view(x.size(0), -1)
        return self.fc(x)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_networks_bit_exact(data):
    in_ch = data.draw(st.integers(1, 5), label="in_ch")
    hw = (data.draw(st.integers(3, 13), label="H"), data.draw(st.integers(3, 13), label="W"))
    spec = data.draw(_layers_for(in_ch, hw), label="spec")
    torch.manual_seed(spec["seed"])
    model = RandomNet(in_ch, spec["layers"], spec["head"], spec["classes"], spec["fc_bias"],
                      hw)
    randomize_bn(model, spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    make = (lambda n: torch.randn(n, in_ch, *hw, generator=gen) * 2) if spec["signed_input"] \
        else (lambda n: torch.rand(n, in_ch, *hw, generator=gen))
    q = check_model(model, make(32), [make(8)], exp_bits=spec["exp_bits"])
    for conv in ops_of(q, po2.Conv2dOp):
        assert np.abs(conv.weight_codes).max(initial=0) <= 2 ** spec["exp_bits"]


@st.composite
def _layers_for(draw, in_ch: int, hw: tuple[int, int]):
    c, (h, w) = in_ch, hw
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.sampled_from([1, 3, 5]))
        residual = draw(st.booleans()) and k % 2 == 1
        if residual:
            stride, cout, pad = 1, c, (k // 2,) * 4
            groups = draw(st.sampled_from([1, c]))
        else:
            stride = draw(st.sampled_from([1, 2]))
            pad = tuple(draw(st.integers(0, k // 2 + 1)) for _ in range(4))
            groups = draw(st.sampled_from([1, 1, c] + [d for d in (2, 3) if c % d == 0]))
            cout = groups * draw(st.integers(1, max(1, 11 // groups)))
        if h + pad[0] + pad[2] < k or w + pad[1] + pad[3] < k:
            break
        oh = (h + pad[0] + pad[2] - k) // stride + 1
        ow = (w + pad[1] + pad[3] - k) // stride + 1
        layers.append(dict(k=k, stride=stride, pad=pad, groups=groups, cout=cout,
                           bn=draw(st.booleans()), bias=draw(st.booleans()),
                           act=draw(st.sampled_from(sorted(_ACTS))), residual=residual,
                           post_act=residual and draw(st.booleans())))
        c, h, w = cout, oh, ow
    if not layers:
        layers.append(dict(k=1, stride=1, pad=(0, 0, 0, 0), groups=1, cout=3, bn=True,
                           bias=False, act="relu", residual=False, post_act=False))
    return dict(layers=layers, head=draw(st.sampled_from(["pool", "mean", "flatten"])),
                classes=draw(st.integers(2, 7)), fc_bias=draw(st.booleans()),
                signed_input=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
                exp_bits=draw(st.sampled_from([2, 3, 3, 4])))


# ---------------------------------------------------------------------------------------
# Tracing: functional forms, fusions, padding
# ---------------------------------------------------------------------------------------


class FunctionalNet(nn.Module):
    """Functional spellings of every supported op, and an unfusable ReLU."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 1, 0))  # left, right, top, bottom
        self.a = nn.Conv2d(2, 6, 3, bias=True)
        self.b = nn.Conv2d(6, 6, 3, padding="same", groups=3, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.c = nn.Conv2d(6, 6, 2)
        self.drop = nn.Dropout(0.5)
        self.ident = nn.Identity()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(self.pad(x))
        r = torch.relu(a)  # `a` also feeds the add below: this ReLU cannot fuse
        y = F.relu6(self.bn(self.b(r)))
        y = torch.add(F.pad(y, (0, 0, 0, 0)), a)
        y = y.clamp(0, 6)
        z = self.c(F.pad(self.drop(y), (1, 0, 0, 1)))
        z = F.hardtanh(z + self.ident(y), 0.0, 6.0)
        z = z.mean(dim=(-1, -2), keepdim=True)
        return self.fc(torch.flatten(z, 1))


def test_functional_forms_and_fusion():
    torch.manual_seed(0)
    model = randomize_bn(FunctionalNet())
    x = torch.randn(32, 2, 9, 8)
    q = check_model(model, x, [torch.randn(8, 2, 9, 8)])
    acts = [(kind, getattr(op, "act", "")) for kind, op in zip(kinds(q), q.layers)]
    assert acts == [("conv2d", "none"), ("requant", "relu"), ("conv2d", "relu6"),
                    ("residual_add", "relu6"), ("conv2d", "none"), ("residual_add", "relu6"),
                    ("avgpool", ""), ("flatten", ""), ("npu_linear", "")]
    conv_a, conv_b, conv_c = ops_of(q, po2.Conv2dOp)
    assert conv_a.padding == (1, 0, 0, 1)  # (top, left, bottom, right) from ZeroPad2d
    assert conv_b.padding == (1, 1, 1, 1) and conv_b.groups == 3
    assert conv_c.padding == (0, 1, 1, 0)  # F.pad (left 1, bottom 1)
    requant = q.layers[1]
    assert isinstance(requant, po2.RequantOp)
    assert not requant.output.type.fmt.signed and requant.input.owner is conv_a


def test_view_flatten_and_no_pool():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, stride=2)
            self.fc = nn.Linear(3 * 3 * 3, 5)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x)).reshape(x.shape[0], -1))

    q = check_model(Net(), torch.rand(16, 1, 7, 7), [torch.rand(4, 1, 7, 7)])
    assert isinstance(q.layers[1], po2.FlattenOp) and q.layers[1].output.type.dims == (27,)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_unsupported_op_names_the_node():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            y = torch.sigmoid(self.conv(x))
            return self.fc(y.mean((2, 3)))

    with pytest.raises(UnsupportedModelError) as err:
        quantize_ptq(Net(), torch.rand(2, 1, 5, 5))
    msg = str(err.value)
    assert "'sigmoid'" in msg and "call_function" in msg and "Supported:" in msg


@pytest.mark.parametrize("make, fragment", [
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, return_indices=True),
                           nn.Flatten(), nn.Linear(2, 2)), "return_indices"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten(), nn.Linear(2, 2)),
     "dilation"),
    (lambda: nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 5), nn.Flatten(),
                           nn.Linear(2, 2)), "BatchNorm2d must directly follow"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 5), nn.Flatten(), nn.Linear(2, 2), nn.ReLU()),
     "must end with"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 5), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                           nn.Linear(8, 2)), "output size"),
])
def test_unsupported_models(make, fragment):
    with pytest.raises(UnsupportedModelError, match=fragment):
        quantize_ptq(make(), torch.rand(2, 1, 5, 5))


def test_shape_errors_name_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(5, 2))
    with pytest.raises(ModelShapeError, match="'_2'.*expects 5 features, got 36"):
        quantize_ptq(model, torch.rand(2, 1, 5, 5))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(36, 2))
    with pytest.raises(ModelShapeError, match="'_0'.*3 input channels, got 1"):
        quantize_ptq(model, torch.rand(2, 1, 5, 5))
    with pytest.raises(ModelShapeError, match="4-D"):
        quantize_ptq(nn.Sequential(nn.Flatten(), nn.Linear(5, 2)), torch.rand(2, 5))


# ---------------------------------------------------------------------------------------
# BN folding and weight codes
# ---------------------------------------------------------------------------------------


def test_bn_folding_preserves_float_outputs(digits):
    torch.manual_seed(0)
    for model in (randomize_bn(tiny_cnn()), randomize_bn(mobilenetv2(0.25, 16, 10, 1))):
        fq = build_fake_quant(model, digits[0][:4]).set_quantize(False).eval()
        with torch.no_grad():
            x = digits[2][:32]
            torch.testing.assert_close(fq(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exp_bits", [1, 2, 3, 4])
def test_weight_codes_in_range(exp_bits):
    gen = torch.Generator().manual_seed(exp_bits)
    w = torch.randn(16, 3, 3, 3, generator=gen) * torch.logspace(-3, 1, 16).reshape(-1, 1, 1, 1)
    w[3] = 0  # an all-zero channel
    codes, exp_base = po2_weight_codes(w, exp_bits)
    assert codes.dtype == torch.int64 and exp_base.shape == (16,)
    assert int(codes.abs().max()) == 2 ** exp_bits  # the channel max uses the top code
    assert torch.all(codes[3] == 0) and exp_base[3] == 0
    assert torch.all(torch.sign(codes) * torch.sign(w) >= 0)
    values = po2_weight_values(codes, exp_base)
    nz = codes != 0
    ratio = values[nz] / w.double()[nz]
    # nearest in the log domain: within sqrt(2); the lowest level also takes values down
    # to half of it (ratio up to 2)
    lowest = codes.abs() == 1
    assert torch.all(ratio[~lowest[nz]] <= math.sqrt(2) + 1e-12) and torch.all(ratio > 0)
    assert torch.all(ratio <= 2 + 1e-12)
    # re-quantising the quantised weights changes nothing
    codes2, exp_base2 = po2_weight_codes(values, exp_bits)
    assert torch.equal(codes, codes2) and torch.equal(exp_base[~(codes == 0).all(1).all(1).all(1)],
                                                      exp_base2[~(codes == 0).all(1).all(1).all(1)])


def test_weight_rounding_rule():
    # channel max 1.0 -> emax 0, exp_base -7: levels 2^-7 .. 2^0
    w = torch.tensor([1.0, -0.75, 0.70, 0.3, 2 ** -7, 2 ** -8, 0.9 * 2 ** -8, -0.0],
                     dtype=torch.float64).reshape(1, -1, 1, 1)
    codes, exp_base = po2_weight_codes(w, 3)
    assert int(exp_base[0]) == -7
    # 0.75 > 2^-0.5 -> 2^0; 0.70 < 2^-0.5 -> 2^-1; 0.3 -> 2^-2 (log2 0.3 = -1.74)
    # 2^-7 -> lowest level (code 1); 2^-8 = 2^(exp_base-1) rounds up to it; below: 0
    assert codes.flatten().tolist() == [8, -8, 7, 6, 1, 1, 0, 0]


def test_prune_zeroes_smallest():
    torch.manual_seed(0)
    model = randomize_bn(tiny_cnn())
    q = quantize_ptq(model, torch.rand(8, 1, 16, 16), prune=0.5)
    for conv in ops_of(q, po2.Conv2dOp):
        assert np.mean(conv.weight_codes == 0) >= 0.5
    assert_bit_exact(q, torch.rand(4, 1, 16, 16))


def test_exported_ir(digits):
    torch.manual_seed(0)
    q = quantize_ptq(randomize_bn(tiny_cnn()), digits[0][:32])
    func = po2.network_func(q.rename("tiny.cnn").module)
    assert func.sym_name.data == "tiny_cnn" and func.args[0].type.fmt == q.input_format
    for op in q.layers:
        assert op.location.desc.data == op.layer  # the fx node name, for diagnostics
    for conv in ops_of(q, po2.Conv2dOp):
        assert conv.weights_attr.get_element_type().width.data == 8
        assert len(conv.bias) == conv.output.type.dims[0]
    npu = q.layers[-1]
    assert isinstance(npu, po2.NpuLinearOp) and npu.weight_matrix.shape == (10, 24)
    assert np.abs(npu.weight_matrix).max() <= 128 and np.abs(npu.weight_matrix).max() >= 64
    fmt = npu.output.type.fmt
    assert fmt.frac == q.layers[-2].output.type.fmt.frac + npu.weight_frac and fmt.signed
    assert fmt.frac == q.logits_frac


# ---------------------------------------------------------------------------------------
# QAT, snapping, checkpoints
# ---------------------------------------------------------------------------------------


def test_qat_step_keeps_bit_exactness(digits):
    x_train, y_train, x_test, _ = digits
    torch.manual_seed(0)
    q = quantize_qat(randomize_bn(tiny_cnn()), x_train[:64], (x_train[:128], y_train[:128]),
                     epochs=1, lr=1e-3, seed=0)
    assert_bit_exact(q, x_test[:32])
    before = str(q.module)
    # snapping the weights to their Po2 values is idempotent for the exported IR
    q.fake_quant.snap_()
    after = str(q.refresh().module)
    assert after == before
    # a state_dict round trip (formats travel as extra state)
    buf = io.BytesIO()
    torch.save(q.fake_quant.state_dict(), buf)
    fresh = build_fake_quant(tiny_cnn(), x_train[:2])
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    restored = QuantizedModel(fresh.set_quantize(True).eval())
    assert str(restored.module) == after
