"""
A zoo of small networks for end-to-end tests, deliberately different from the shipped
examples: other kernel sizes (1, 3, 5, 3x1, 1x3), strides 1/2, asymmetric paddings (ZeroPad2d
and padding tuples), grouped and depthwise convs, channel counts that are not multiples of 8,
input sizes that are not powers of two, with/without BatchNorm, residuals, ReLU/ReLU6/none,
`x.mean((2, 3))` vs AdaptiveAvgPool2d + Flatten, signed inputs, 1 and 3 input channels.

Every factory takes no arguments and returns a float nn.Module with an `input_shape`
attribute (what `hashiflex compile path/nets.py:factory` reads); `CALIB[name]` says how to
make calibration images ("unsigned": uniform [0, 1), "signed": uniform [-1, 1)). BatchNorm
statistics are randomised (seeded) so folding is exercised with non-trivial values.

Each entry of ZOO: (factory, what it covers).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _init(model: nn.Module, seed: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Seeded weights and non-trivial BatchNorm statistics; eval mode; the input shape."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.5 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    model.input_shape = input_shape
    return model.eval()


# -- 1. 5x5 stem, asymmetric ZeroPad2d "same" downsampling, AdaptiveAvgPool2d + Flatten --------


class K5AsymPad(nn.Module):
    """1x15x15: Conv5x5 p2 (1->5)+BN+ReLU; ZeroPad2d(0,1,0,1)+Conv3x3 s2 p0 (5->7)+ReLU6;
    Conv 1x1 (7->7)+BN+ReLU; AdaptiveAvgPool2d(1)+Flatten; Linear(7->4)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 5, 5, 1, 2, bias=False)
        self.b1 = nn.BatchNorm2d(5)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # (left, right, top, bottom)
        self.c2 = nn.Conv2d(5, 7, 3, 2, 0)
        self.c3 = nn.Conv2d(7, 7, 1, bias=False)
        self.b3 = nn.BatchNorm2d(7)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(7, 4)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu6(self.c2(self.pad(x)))
        x = torch.relu(self.b3(self.c3(x)))
        return self.fc(self.flat(self.pool(x)))


def k5_asym_pad() -> nn.Module:
    return _init(K5AsymPad(), 1, (1, 15, 15))


# -- 2. residual around a stride-1 3x3 depthwise + 1x1, signed 3-channel input, mean((2,3)) ----


class DwResidual(nn.Module):
    """3x9x11 signed: Conv3x3 (3->12)+BN+ReLU; x + BN(pw(ReLU6(BN(dw3x3(x))))) (linear
    bottleneck, no act on the branch) then ReLU (fused into the add); x.mean((2, 3));
    Linear(12->3)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, 1, 1, bias=False)
        self.bs = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, 1, 1, groups=12, bias=False)
        self.bd = nn.BatchNorm2d(12)
        self.pw = nn.Conv2d(12, 12, 1, bias=False)
        self.bp = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        x = F.relu(self.bs(self.stem(x)))
        y = self.bp(self.pw(F.relu6(self.bd(self.dw(x)))))
        x = F.relu(x + y)
        return self.fc(x.mean((2, 3)))


def dw_residual() -> nn.Module:
    return _init(DwResidual(), 2, (3, 9, 11))


# -- 3. 3x1 / 1x3 separable kernels, grouped conv, no BN, stride-2 1x1 --------------------------


class Separable1D(nn.Module):
    """3x7x7: Conv(3x1, p(1,0)) (3->6)+ReLU; grouped Conv(1x3, p(0,1), groups=3) (6->12)+ReLU;
    Conv1x1 s2 (12->5) (no act, signed); AdaptiveAvgPool2d+Flatten; Linear(5->6)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, (3, 1), 1, (1, 0))
        self.b = nn.Conv2d(6, 12, (1, 3), 1, (0, 1), groups=3)
        self.c = nn.Conv2d(12, 5, 1, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 6)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = F.relu(self.b(x))
        x = self.c(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def separable_1d() -> nn.Module:
    return _init(Separable1D(), 3, (3, 7, 7))


# -- 4. strided 5x5 with no padding, depthwise with channel multiplier, 17 classes -------------


class Stride2Valid(nn.Module):
    """1x15x15 signed: Conv5x5 s2 p0 (1->3)+BN (6x6, no act); depthwise x2 multiplier
    Conv3x3 s2 p1 groups=3 (3->6)+BN+ReLU6 (3x3); Conv3x3 p1 (6->5)+ReLU; mean; Linear(5->17)
    (>= 16 classes: the NPU's argmax is pipelined)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 5, 2, 0, bias=False)
        self.b1 = nn.BatchNorm2d(3)
        self.c2 = nn.Conv2d(3, 6, 3, 2, 1, groups=3, bias=False)
        self.b2 = nn.BatchNorm2d(6)
        self.c3 = nn.Conv2d(6, 5, 3, 1, 1)
        self.fc = nn.Linear(5, 17)

    def forward(self, x):
        x = self.b1(self.c1(x))
        x = F.relu6(self.b2(self.c2(x)))
        x = F.relu(self.c3(x))
        return self.fc(x.mean((2, 3)))


def stride2_valid() -> nn.Module:
    return _init(Stride2Valid(), 4, (1, 15, 15))


# -- 5. pointwise-only network, signed input, no activations at all ---------------------------


class PointwiseOnly(nn.Module):
    """3x7x7 signed: Conv1x1 (3->7) (no act); Conv1x1 s2 (7->5)+BN (no act); mean;
    Linear(5->3)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 7, 1)
        self.b = nn.Conv2d(7, 5, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.bn(self.b(self.a(x))).mean((2, 3)))


def pointwise_only() -> nn.Module:
    return _init(PointwiseOnly(), 5, (3, 7, 7))


# -- 6. ReLU that cannot be fused (its conv has two users) -> po2.requant; two residuals -------


class RequantTwoResiduals(nn.Module):
    """1x9x9: c = Conv3x3 p1 (1->5); r = ReLU(c) (c is also a residual operand: a requant);
    d = r + Conv3x3 p1 (5->5)(r) (ReLU6 on the add); e = d + c (no act, signed);
    Conv3x3 s2 p1 (5->7)+ReLU; AdaptiveAvgPool2d + Flatten; Linear(7->5)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 5, 3, 1, 1)
        self.d = nn.Conv2d(5, 5, 3, 1, 1)
        self.h = nn.Conv2d(5, 7, 3, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(7, 5)

    def forward(self, x):
        c = self.c(x)
        r = F.relu(c)
        d = F.relu6(r + self.d(r))
        e = d + c
        x = F.relu(self.h(e))
        return self.fc(self.flat(self.pool(x)))


def requant_two_residuals() -> nn.Module:
    return _init(RequantTwoResiduals(), 6, (1, 9, 9))


# -- 7. top-left-only padding, 5x5 with padding tuple, residual with a stride-1 5x5 ----------


class TopLeftPad(nn.Module):
    """3x11x9: ZeroPad2d(1,0,1,0)+Conv3x3 p0 (3->5)+BN+ReLU (-> 10x8); residual
    x + BN(Conv5x5 p(2,2)(x)) with ReLU; Conv(3x3, s2, p(1,0)) (5->3)+ReLU6 (-> 5x3);
    mean; Linear(3->2)."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 1, 0))
        self.a = nn.Conv2d(3, 5, 3, 1, 0, bias=False)
        self.ba = nn.BatchNorm2d(5)
        self.b = nn.Conv2d(5, 5, 5, 1, (2, 2), bias=False)
        self.bb = nn.BatchNorm2d(5)
        self.c = nn.Conv2d(5, 3, 3, 2, (1, 0))
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = F.relu(self.ba(self.a(self.pad(x))))
        x = F.relu(x + self.bb(self.b(x)))
        x = F.relu6(self.c(x))
        return self.fc(x.mean((2, 3)))


def top_left_pad() -> nn.Module:
    return _init(TopLeftPad(), 7, (3, 11, 9))


# -- 8. global conv (kernel == image), then flatten of 1x1 -------------------------------------


class GlobalConv(nn.Module):
    """1x7x7: Conv3x3 p1 (1->7)+ReLU; Conv7x7 p0 (7->12)+BN+ReLU (-> 12x1x1); Flatten
    (of a 1x1 map: no pooling); Linear(12->4)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 7, 3, 1, 1)
        self.b = nn.Conv2d(7, 12, 7, 1, 0, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = F.relu(self.bn(self.b(x)))
        return self.fc(torch.flatten(x, 1))


def global_conv() -> nn.Module:
    return _init(GlobalConv(), 8, (1, 7, 7))


# -- 9. grouped conv with uneven group shapes, bottom-right pad, ReLU via hardtanh/clamp --------


class GroupedOdd(nn.Module):
    """3x15x15: Conv3x3 s2 p1 (3->12)+BN+ReLU (8x8); grouped Conv3x3 p1 groups=4 (12->8)
    +ReLU6 via clamp(0, 6); Conv 3x3 s2 with ZeroPad2d(0,1,0,1) (8->5)+ReLU (4x4);
    AdaptiveAvgPool2d+Flatten; Linear(5->10)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, 2, 1, bias=False)
        self.ba = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 8, 3, 1, 1, groups=4)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.c = nn.Conv2d(8, 5, 3, 2, 0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(5, 10)

    def forward(self, x):
        x = F.relu(self.ba(self.a(x)))
        x = torch.clamp(self.b(x), 0, 6)
        x = F.relu(self.c(self.pad(x)))
        return self.fc(self.flat(self.pool(x)))


def grouped_odd() -> nn.Module:
    return _init(GroupedOdd(), 9, (3, 15, 15))


# -- 10. residual around a stride-1 depthwise+pointwise, without BN, with ReLU6 everywhere ----


class MbBlockNoBn(nn.Module):
    """1x10x13: Conv3x3 p1 (1->7)+ReLU6; x + pw(ReLU6(dw3x3(x))) with no act on the add
    (unsigned + signed operand -> signed sum); Conv1x1 (7->3)+ReLU; mean; Linear(3->3)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 7, 3, 1, 1)
        self.dw = nn.Conv2d(7, 7, 3, 1, 1, groups=7)
        self.pw = nn.Conv2d(7, 7, 1)
        self.out = nn.Conv2d(7, 3, 1)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        x = F.relu6(self.stem(x))
        x = x + self.pw(F.relu6(self.dw(x)))
        x = F.relu(self.out(x))
        return self.fc(x.mean((2, 3)))


def mb_block_no_bn() -> nn.Module:
    return _init(MbBlockNoBn(), 10, (1, 10, 13))


# -- 11. a classifier larger than the pipeline's frame: the NPU can be the bottleneck ---------


class WideClassifier(nn.Module):
    """1x4x4: Conv3x3 p1 (1->40)+ReLU; mean; Linear(40->12): 480 MACs against 16 pixels, so
    with few NPU lanes the NPU sets the pace and stalls the pipeline."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 40, 3, 1, 1)
        self.fc = nn.Linear(40, 12)

    def forward(self, x):
        return self.fc(F.relu(self.a(x)).mean((2, 3)))


def wide_classifier() -> nn.Module:
    return _init(WideClassifier(), 11, (1, 4, 4))


# -- 12. concatenation of unequal-latency branches, split, chunk, channel shuffle ---------------


class CatShuffle(nn.Module):
    """3x9x11: a = ReLU(BN(Conv3x3 3->6)); b = ReLU(Conv1x1(ReLU(Conv3x3 6->6 of a))) 6->5;
    cat(a, b, Conv1x1(x) 3->3) -> 14 ch (three branches of different latency); channel
    shuffle g=2 (view, transpose(1, 2), contiguous, view); split [5, 9]; cat(ReLU(Conv1x1
    9->5), first piece) -> 10; chunk(2) -> 5 + 5; residual add of one chunk and a depthwise
    conv of the other; mean((2, 3)); Linear(5 -> 4)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, 1, 1, bias=False)
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 6, 3, 1, 1)
        self.c3 = nn.Conv2d(6, 5, 1)
        self.skip = nn.Conv2d(3, 3, 1)
        self.c4 = nn.Conv2d(9, 5, 1)
        self.dw = nn.Conv2d(5, 5, 3, 1, 1, groups=5)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        a = F.relu(self.b1(self.c1(x)))
        b = F.relu(self.c3(F.relu(self.c2(a))))
        y = torch.cat([a, b, self.skip(x)], dim=1)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        p, q = torch.split(y, [5, 9], dim=1)
        z = torch.cat((F.relu(self.c4(q)), p), 1)
        z1, z2 = z.chunk(2, dim=1)
        return self.fc((z1 + self.dw(z2)).mean((2, 3)))


def cat_shuffle() -> nn.Module:
    return _init(CatShuffle(), 12, (3, 9, 11))


# -- 13. slow layers: after stride-2 layers the convs get multicycle trees ----------------------


class SlowTail(nn.Module):
    """1x16x16: Conv3x3 s2 p1 (1->6)+ReLU6 (8x8: items every >= 2 cycles); residual around
    depthwise 3x3 + 1x1 (6->6); depthwise 3x3 s2 (4x4: every >= 4 cycles)+ReLU; 1x1 6->16
    +ReLU; depthwise 3x3 (16)+ReLU; 1x1 16->24; mean((2, 3)); Linear(24->5). Its 4x4
    pointwise and depthwise convs are multicycle at the default clock target
    (passes/to_hw/multicycle.py; the 8x8 depthwise trees need more than their gap of 2)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, 2, 1)
        self.dw1 = nn.Conv2d(6, 6, 3, 1, 1, groups=6)
        self.pw1 = nn.Conv2d(6, 6, 1)
        self.dw2 = nn.Conv2d(6, 6, 3, 2, 1, groups=6)
        self.pw2 = nn.Conv2d(6, 16, 1)
        self.dw3 = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.pw3 = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        x = F.relu6(self.stem(x))
        x = x + self.pw1(F.relu6(self.dw1(x)))
        x = F.relu(self.pw2(F.relu(self.dw2(x))))
        x = F.relu(self.dw3(x))
        return self.fc(self.pw3(x).mean((2, 3)))


def slow_tail() -> nn.Module:
    return _init(SlowTail(), 13, (1, 16, 16))


# name -> (factory, calibration kind, what it covers)
ZOO: dict[str, tuple] = {
    "k5_asym_pad": (k5_asym_pad, "unsigned",
                    "5x5 p2 stem, ZeroPad2d(0,1,0,1)+3x3 s2, BN, ReLU/ReLU6, 1->5->7 ch, 15x15, "
                    "AdaptiveAvgPool2d+Flatten"),
    "dw_residual": (dw_residual, "signed",
                    "3 signed input ch, 9x11, residual around stride-1 3x3 depthwise + 1x1 "
                    "(linear bottleneck), 12 ch, ReLU fused into the add, mean((2,3))"),
    "separable_1d": (separable_1d, "unsigned",
                     "3x1 and 1x3 kernels with tuple padding, grouped conv (groups=3), no BN, "
                     "conv bias, 1x1 stride 2, no activation before the pool, 7x7"),
    "stride2_valid": (stride2_valid, "signed",
                      "5x5 s2 no padding on 15x15, no-act conv, depthwise x2 multiplier s2, "
                      "17 classes (pipelined argmax), signed 1-ch input"),
    "pointwise_only": (pointwise_only, "signed",
                       "only 1x1 convs (s1 and s2), signed input, no activations anywhere"),
    "requant_two_residuals": (requant_two_residuals, "unsigned",
                              "ReLU on a conv with two users (po2.requant), two residuals "
                              "(ReLU6 and none), 9x9"),
    "top_left_pad": (top_left_pad, "unsigned",
                     "ZeroPad2d(1,0,1,0), residual around a 5x5 p2 conv, 3x3 s2 p(1,0), "
                     "11x9 (H != W), 3 input ch"),
    "global_conv": (global_conv, "unsigned",
                    "7x7 conv over a 7x7 map (-> 1x1), flatten without pooling"),
    "grouped_odd": (grouped_odd, "unsigned",
                    "grouped 12->8 groups=4, clamp(0,6) as ReLU6, ZeroPad2d(0,1,0,1) s2, "
                    "10 classes, 3-ch 15x15"),
    "mb_block_no_bn": (mb_block_no_bn, "unsigned",
                       "residual (no act) around dw3x3+pw without BN, 7 ch, 10x13"),
    "wide_classifier": (wide_classifier, "unsigned",
                        "40 features x 12 classes on a 4x4 image: the NPU needs more lanes "
                        "than one pixel's worth (with --npu-lanes 1 it stalls the pipeline)"),
    "cat_shuffle": (cat_shuffle, "unsigned",
                    "torch.cat of three branches of unequal latency (FIFOs), channel shuffle "
                    "g=2, split [5, 9], chunk(2), residual of two chunks, 3x9x11"),
    "slow_tail": (slow_tail, "unsigned",
                  "3x3 s2 stem, residual dw+pw at 8x8, dw s2 to 4x4, pointwise 6->16->24: "
                  "multicycle trees on the slow layers (rtl/constraints.sdc)"),
}

# the default (fast) tier: the most diverse ones
DEFAULT = ["dw_residual", "k5_asym_pad", "separable_1d", "stride2_valid", "cat_shuffle"]


def calibration(name: str, n: int = 64, seed: int = 0) -> np.ndarray:
    factory, kind, _ = ZOO[name]
    shape = factory().input_shape
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32)
    if kind == "signed":
        x = 2 * x - 1
    return x


def stimulus(name: str, n_random: int = 6, seed: int = 1) -> np.ndarray:
    """Random images (the calibration distribution, a bit wider), all-max, all-min, zeros."""
    factory, kind, _ = ZOO[name]
    shape = factory().input_shape
    rng = np.random.default_rng(seed)
    x = rng.random((n_random, *shape), dtype=np.float32) * 1.25
    if kind == "signed":
        x = 2 * x - 1.25
    return np.concatenate([
        x,
        np.full((1, *shape), 1e6, np.float32),
        np.full((1, *shape), -1e6, np.float32),
        np.zeros((1, *shape), np.float32),
        x[:1],  # a repeat: back-to-back images with identical content
    ])


# -- models the flow must refuse with a one-line error (test_cli.py) ---------------------------


class _Bad(nn.Module):
    def __init__(self, mid: nn.Module, pad: tuple[int, int, int, int] | None = None,
                 flatten_spatial: bool = False):
        super().__init__()
        self.pad = nn.ZeroPad2d(pad) if pad else nn.Identity()
        self.conv = nn.Conv2d(1, 4, 3, 1, 0 if pad else 1)
        self.mid = mid
        self.flatten_spatial = flatten_spatial
        self.fc = nn.Linear(4 * 49 if flatten_spatial else 4, 3)

    def forward(self, x):
        x = self.mid(self.conv(self.pad(x)))
        return self.fc(torch.flatten(x, 1) if self.flatten_spatial else x.mean((2, 3)))


def bad_maxpool() -> nn.Module:
    """Unsupported form: nn.MaxPool2d with return_indices (named 'mid')."""
    return _init(_Bad(nn.MaxPool2d(2, return_indices=True)), 40, (1, 7, 7))


def bad_sigmoid() -> nn.Module:
    """Unsupported layer: nn.Sigmoid (named 'mid')."""
    return _init(_Bad(nn.Sigmoid()), 41, (1, 7, 7))


def bad_wide_padding() -> nn.Module:
    """Imports fine, fails in po2-to-hw: left+right padding 4 >= KW=3 (layer 'conv')."""
    return _init(_Bad(nn.ReLU(), pad=(2, 2, 1, 1)), 42, (1, 5, 7))


def bad_flatten_spatial() -> nn.Module:
    """Imports fine, fails in po2-to-hw: flatten of a 4x7x7 map (no global pooling)."""
    return _init(_Bad(nn.ReLU(), flatten_spatial=True), 43, (1, 7, 7))


class _CatDim(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], dim=2)  # along H, not channels


def bad_cat_dim() -> nn.Module:
    """Unsupported form: torch.cat along dim 2 (the node 'cat' inside 'mid')."""
    return _init(_Bad(_CatDim()), 44, (1, 7, 7))
