"""A tiny CNN for 16x16 inputs that exercises every op of the Po2 flow.

Small enough to unroll into hardware and simulate in Verilator (5 K conv weights), yet it
has each construct the frontend must handle:

    stem    Conv 3x3 (1->8)  + BN + ReLU                 16x16x8
    down    Conv 3x3 s2 (8->16) + BN + ReLU               8x8x16
    dw      Conv 3x3 depthwise (groups=16) + BN + ReLU6   8x8x16
    pw      Conv 1x1 (16->16) + BN + ReLU6                8x8x16
    add     down + pw (residual)                          8x8x16
    head    Conv 3x3 s2 (16->24) + BN + ReLU              4x4x24
    pool    AdaptiveAvgPool2d(1), Flatten                 24
    fc      Linear (24->classes)                          the NPU classifier
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, 8, 3), nn.ReLU(inplace=True))
        self.down = nn.Sequential(*_conv_bn(8, 16, 3, stride=2), nn.ReLU(inplace=True))
        self.dw = nn.Sequential(*_conv_bn(16, 16, 3, groups=16), nn.ReLU6(inplace=True))
        self.pw = nn.Sequential(*_conv_bn(16, 16, 1), nn.ReLU6(inplace=True))
        self.head = nn.Sequential(*_conv_bn(16, 24, 3, stride=2), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.stem(x))
        y = self.pw(self.dw(x))
        x = self.head(x + y)
        return self.fc(self.flatten(self.pool(x)))


def tiny_cnn(num_classes: int = 10, in_channels: int = 1) -> TinyCNN:
    return TinyCNN(num_classes, in_channels)
