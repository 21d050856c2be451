"""
Small networks for the windowed pooling and activation ops (test/e2e/test_pool_act_flow.py):
odd sizes, padding, ceil_mode, max pooling 3x3 stride 2, average pooling 2x2 and 3x3,
LeakyReLU, Hardtanh(min, max), and a 1x1 conv + global pooling classifier.
Factories follow nets.py (a float nn.Module with `input_shape`); POOL_ZOO[name] is
(factory, calibration kind).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nets import _init


class MaxPoolLeaky(nn.Module):
    """2x8x10 signed: Conv3x3 p1 (2->4)+BN+ReLU; max_pool2d(3, 2, ceil_mode) -> 4x4x5 (an
    extra bottom row); Conv3x3 p1 (4->5); LeakyReLU(1/8); MaxPool2d(2, ceil_mode) -> 5x2x3
    (an extra right column); MaxPool2d(3, 1, 1); AdaptiveAvgPool2d + Flatten; Linear(5->3)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, 1, 1, bias=False)
        self.b1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 5, 3, 1, 1)
        self.leaky = nn.LeakyReLU(0.125)
        self.mp = nn.MaxPool2d(2, ceil_mode=True)
        self.mp3 = nn.MaxPool2d(3, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 3, 2, ceil_mode=True)
        x = self.mp3(self.mp(self.leaky(self.c2(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def maxpool_leaky() -> nn.Module:
    return _init(MaxPoolLeaky(), 11, (2, 8, 10))


class AvgPoolHardtanh(nn.Module):
    """3x9x7 unsigned: Conv3x3 p1 (3->6)+ReLU; AvgPool2d(2) -> 6x4x3; Conv1x1 (6->6);
    Hardtanh(-0.25, 0.5); AvgPool2d(3, 1, 1) -> 6x4x3 (zero padding counted); the classifier
    a 1x1 Conv2d (6->4) + x.mean((2, 3)), run on the NPU."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, 1, 1)
        self.ap2 = nn.AvgPool2d(2)
        self.c2 = nn.Conv2d(6, 6, 1)
        self.ht = nn.Hardtanh(-0.25, 0.5)
        self.ap3 = nn.AvgPool2d(3, 1, 1)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        x = self.ap2(F.relu(self.c1(x)))
        x = self.ap3(self.ht(self.c2(x)))
        return self.head(x).mean((2, 3))


def avgpool_hardtanh() -> nn.Module:
    return _init(AvgPoolHardtanh(), 12, (3, 9, 7))


class PoolMix(nn.Module):
    """Every op of this file in one small network (the default test tier). 2x8x10 signed:
    Conv3x3 p1 (2->4)+BN+ReLU; max_pool2d(3, 2, ceil_mode) -> 4x4x5; Conv3x3 p1 (4->5);
    LeakyReLU(1/8); AvgPool2d(3, 1, 1); Hardtanh(-0.25, 0.5); MaxPool2d(2, ceil_mode) ->
    5x2x3; AvgPool2d(2, 1) -> 5x1x2; 1x1 Conv2d (5->3) + AdaptiveAvgPool2d + Flatten as the
    NPU classifier."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, 1, 1, bias=False)
        self.b1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 5, 3, 1, 1)
        self.leaky = nn.LeakyReLU(0.125)
        self.ap3 = nn.AvgPool2d(3, 1, 1)
        self.ht = nn.Hardtanh(-0.25, 0.5)
        self.mp = nn.MaxPool2d(2, ceil_mode=True)
        self.ap2 = nn.AvgPool2d(2, 1)
        self.head = nn.Conv2d(5, 3, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 3, 2, ceil_mode=True)
        x = self.ht(self.ap3(self.leaky(self.c2(x))))
        x = self.ap2(self.mp(x))
        return torch.flatten(self.pool(self.head(x)), 1)


def pool_mix() -> nn.Module:
    return _init(PoolMix(), 13, (2, 8, 10))


POOL_ZOO = {
    "pool_mix": (pool_mix, "signed"),
    "maxpool_leaky": (maxpool_leaky, "signed"),
    "avgpool_hardtanh": (avgpool_hardtanh, "unsigned"),
}
#: the fast tier; the others are `slow`
POOL_DEFAULT = ["pool_mix"]
