"""
torchvision's own model definitions at 32x32, as a user would bring them (issue 13).

torchvision 0.28.0 matches torch 2.13.0, but its compiled ops (`torchvision._C`) do not load
against the CPU torch build; its model definitions are pure Python and work once
`torchvision._meta_registrations` (which registers meta kernels for those ops) is stubbed in
`sys.modules` before the import. That stub lives here, in the tests only.

Every factory returns a float model in eval mode with seeded random weights (torchvision's
own initialisation) and randomised BatchNorm running statistics (so folding is exercised),
10 classes, and an `input_shape` attribute (what `hashiflex compile path:factory` reads).
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn

sys.modules.setdefault("torchvision._meta_registrations",
                       types.ModuleType("torchvision._meta_registrations"))

from torchvision import models  # noqa: E402

INPUT_SHAPE = (3, 32, 32)


def _prepare(make, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = make()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    model.input_shape = INPUT_SHAPE
    return model.eval()


def mobilenet_v2_035() -> nn.Module:
    return _prepare(lambda: models.mobilenet_v2(width_mult=0.35, num_classes=10), 1)


def mobilenet_v2_05() -> nn.Module:
    return _prepare(lambda: models.mobilenet_v2(width_mult=0.5, num_classes=10), 2)


def mnasnet0_5() -> nn.Module:
    return _prepare(lambda: models.mnasnet0_5(num_classes=10), 3)


def shufflenet_v2_x0_5() -> nn.Module:
    return _prepare(lambda: models.shufflenet_v2_x0_5(num_classes=10), 4)


def shufflenet_v2_x0_5_no_maxpool() -> nn.Module:
    """shufflenet_v2_x0_5 with its stem max pool replaced by Identity: every other op
    (channel split, concatenation of unequal-latency branches, channel shuffle) as
    torchvision writes it."""
    model = shufflenet_v2_x0_5()
    model.maxpool = nn.Identity()
    return model


def mobilenet_v3_small() -> nn.Module:
    return _prepare(lambda: models.mobilenet_v3_small(num_classes=10), 5)
