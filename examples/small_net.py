"""
A deliberately small network for fast hardware experiments: 8x8 input, one 3x3 conv
(1 -> 8, BatchNorm, ReLU), global pool, Linear 8 -> 10 (untrained, seed 0).

Its pipeline takes 64 cycles per image while the NPU has 80 multiply-accumulates per image,
so the default NPU needs 2 lanes (40 cycles) and a 1-lane NPU is the bottleneck (80 cycles):
the NPU stress tests and benchmarks/bench_npu.py use it to force stalls.
"""

from torch import nn


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.conv(x))))


def small_net() -> SmallNet:
    return SmallNet()
