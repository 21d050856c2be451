"""Example models and their registry.

``EXAMPLES`` maps a name to an :class:`ExampleSpec` (factory, input shape, checkpoint);
``load_example(name)`` builds the float model and loads trained weights when the
checkpoint exists (``python -m hashiflex.examples.train_digits`` makes them), and
``load_quantized(name)`` rebuilds the QAT result as a
:class:`~hashiflex.frontend.quant.QuantizedModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from hashiflex.examples.mobilenetv2 import mobilenetv2
from hashiflex.examples.small_net import small_net
from hashiflex.examples.tiny_cnn import tiny_cnn

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

# the digits variant of MobileNetV2 (see train_digits.py for the choice)
DIGITS_SIZE = 16
DIGITS_MOBILENET_WIDTH = 0.25


@dataclass(frozen=True)
class ExampleSpec:
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]  # C, H, W
    checkpoint: Path | None = None  # float state_dict
    qat_checkpoint: Path | None = None  # Po2FakeQuantModel state_dict (snapped weights)
    quant_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


EXAMPLES: dict[str, ExampleSpec] = {
    "tiny_cnn": ExampleSpec(
        factory=partial(tiny_cnn, num_classes=10, in_channels=1),
        input_shape=(1, DIGITS_SIZE, DIGITS_SIZE),
        checkpoint=CHECKPOINT_DIR / "tiny_cnn_fp32.pt",
        qat_checkpoint=CHECKPOINT_DIR / "tiny_cnn_qat.pt",
        description="tiny CNN (5K conv weights) trained on scikit-learn digits at 16x16",
    ),
    "mobilenetv2_digits": ExampleSpec(
        factory=partial(mobilenetv2, width_mult=DIGITS_MOBILENET_WIDTH,
                        input_size=DIGITS_SIZE, num_classes=10, in_channels=1),
        input_shape=(1, DIGITS_SIZE, DIGITS_SIZE),
        checkpoint=CHECKPOINT_DIR / "mobilenetv2_digits_fp32.pt",
        qat_checkpoint=CHECKPOINT_DIR / "mobilenetv2_digits_qat.pt",
        description="MobileNetV2 width 0.25 (CIFAR-style) trained on digits at 16x16",
    ),
    "mobilenetv2": ExampleSpec(
        factory=partial(mobilenetv2, width_mult=1.0, input_size=32, num_classes=10,
                        in_channels=3),
        input_shape=(3, 32, 32),
        description="MobileNetV2 width 1.0, 32x32x3, 10 classes (untrained; 2.19M conv "
                    "weights, the scale benchmark)",
    ),
    "small_net": ExampleSpec(
        factory=small_net,
        input_shape=(1, 8, 8),
        description="one 3x3 conv on 8x8, 10 classes (untrained): NPU stress tests, "
                    "fast experiments",
    ),
}


def load_example(name: str) -> nn.Module:
    """The float model of an example in eval mode, with trained weights if available."""
    if name not in EXAMPLES:
        raise KeyError(f"unknown example '{name}' (known: {', '.join(EXAMPLES)})")
    spec = EXAMPLES[name]
    torch.manual_seed(0)  # untrained examples are deterministic too
    model = spec.factory()
    if spec.checkpoint is not None and spec.checkpoint.exists():
        model.load_state_dict(torch.load(spec.checkpoint, map_location="cpu",
                                         weights_only=True))
    return model.eval()


def load_quantized(name: str, calib: torch.Tensor | None = None):
    """The example's QAT result as a QuantizedModel (needs the QAT checkpoint)."""
    from hashiflex.frontend.quant import QuantizedModel, QuantOptions, build_fake_quant

    spec = EXAMPLES[name]
    if spec.qat_checkpoint is None or not spec.qat_checkpoint.exists():
        raise FileNotFoundError(f"no QAT checkpoint for '{name}' (run "
                                "python -m hashiflex.examples.train_digits)")
    example = torch.zeros((1, *spec.input_shape)) if calib is None else calib
    fq = build_fake_quant(load_example(name), example, QuantOptions(**spec.quant_options))
    state = torch.load(spec.qat_checkpoint, map_location="cpu", weights_only=True)
    fq.load_state_dict({k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                        for k, v in state.items()})
    fq.set_quantize(True).eval()
    return QuantizedModel(fq)
