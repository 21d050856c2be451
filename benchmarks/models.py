"""Model factories for the scale benchmarks (usable as `hashiflex compile benchmarks/models.py:NAME`)."""

import torch

from hashiflex.examples.mobilenetv2 import mobilenetv2

INPUT_SHAPE = (3, 32, 32)


def mobilenetv2_w025():
    """MobileNetV2 width 0.25, 32x32x3, 10 classes: 227K conv weights (untrained, seed 0)."""
    torch.manual_seed(0)
    return mobilenetv2(width_mult=0.25, input_size=32, num_classes=10, in_channels=3)


def mobilenetv2_w1():
    """MobileNetV2 width 1.0, 32x32x3, 10 classes: 2.19M conv weights (untrained, seed 0)."""
    torch.manual_seed(0)
    return mobilenetv2(width_mult=1.0, input_size=32, num_classes=10, in_channels=3)


def mobilenetv2_w025_imagenet():
    """MobileNetV2 width 0.25 with torchvision's strides (stem stride 2, total 32), 32x32x3."""
    torch.manual_seed(0)
    return mobilenetv2(width_mult=0.25, input_size=32, num_classes=10, in_channels=3,
                       strides="imagenet")


def mobilenetv2_w1_imagenet():
    """MobileNetV2 width 1.0 with torchvision's strides (stem stride 2, total 32), 32x32x3."""
    torch.manual_seed(0)
    return mobilenetv2(width_mult=1.0, input_size=32, num_classes=10, in_channels=3,
                       strides="imagenet")
