"""MobileNetV2 (Sandler et al. 2018) in the CIFAR style, for small inputs.

The layers are torchvision's (inverted residual blocks: expand 1x1 + BN + ReLU6, depthwise
3x3 + BN + ReLU6, project 1x1 + BN, no activation; the residual when stride is 1 and the
block's input and output channels agree; channel counts rounded by ``_make_divisible`` to
multiples of 8; a last 1x1 conv to ``1280 * max(1, width_mult)`` channels + ReLU6, global
average pool, Dropout(0.2), Linear).

For small inputs the total stride is 8 instead of 32, as in the common CIFAR variant: the
stem conv has stride 1 and the first 24-channel stage stride 1. The (t, c, n, s) config:

    stem  conv 3x3, 32, stride 1
    t=1  c=16   n=1  s=1
    t=6  c=24   n=2  s=1   (torchvision: 2)
    t=6  c=32   n=3  s=2
    t=6  c=64   n=4  s=2
    t=6  c=96   n=3  s=1
    t=6  c=160  n=3  s=2
    t=6  c=320  n=1  s=1
    last conv 1x1, 1280

so a 32x32 input ends at 4x4 (16x16 at 2x2). Conv weights (Conv2d only): 2,189,760 for
width 1.0 and 227,456 for width 0.25 (3 input channels, any input size).

``strides="imagenet"`` builds torchvision's strides instead (stem stride 2, the first 24-channel
stage stride 2; total stride 32): a 32x32 input then ends at 1x1, the stem sees 4 input pixels
per output pixel and most weights sit in layers that see one pixel per image. Same layers and
weights, so the same conv weight counts.
"""

from __future__ import annotations

import torch
from torch import nn

# t (expansion), c (channels), n (blocks), s (stride of the first block)
CIFAR_CONFIG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
TOTAL_STRIDE = 8
# torchvision's own strides: the stem (2) and the first 24-channel stage (2) downsample too
IMAGENET_CONFIG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STRIDES = {"cifar": (1, CIFAR_CONFIG, TOTAL_STRIDE), "imagenet": (2, IMAGENET_CONFIG, 32)}


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's channel rounding: nearest multiple of divisor, never 10 % below v."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(cin, hidden, 1))
        layers += [_conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
                   _conv_bn_act(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult: float = 1.0, input_size: int = 32, num_classes: int = 10,
                 in_channels: int = 3, dropout: float = 0.2, strides: str = "cifar"):
        super().__init__()
        if strides not in STRIDES:
            raise ValueError(f"strides must be one of {sorted(STRIDES)}, got {strides!r}")
        stem_stride, config, total_stride = STRIDES[strides]
        if input_size % total_stride:
            raise ValueError(f"input_size {input_size} is not a multiple of {total_stride}")
        self.input_size = input_size
        cin = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_act(in_channels, cin, 3, stride=stem_stride)]
        for t, c, n, s in config:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_conv_bn_act(cin, self.last_channel, 1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout),
                                        nn.Linear(self.last_channel, num_classes))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2(width_mult: float = 1.0, input_size: int = 32, num_classes: int = 10,
                in_channels: int = 3, strides: str = "cifar") -> MobileNetV2:
    return MobileNetV2(width_mult, input_size, num_classes, in_channels, strides=strides)


def conv_weight_count(model: nn.Module) -> int:
    """The number of Conv2d weights (what gets hardened)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
