"""The example models, the digits data and the registry (and its checkpoints, if trained)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from hashiflex.examples import EXAMPLES, load_example, load_quantized
from hashiflex.examples.digits import load_digits_split
from hashiflex.examples.mobilenetv2 import _make_divisible, conv_weight_count, mobilenetv2
from hashiflex.examples.tiny_cnn import tiny_cnn
from hashiflex.dialects import po2
from hashiflex.frontend.quant import quantize_ptq


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_digits_split():
    x_train, y_train, x_test, y_test = load_digits_split(16, 0)
    assert x_train.shape == (1437, 1, 16, 16) and x_test.shape == (360, 1, 16, 16)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) >= 0 and float(x_train.max()) <= 1
    # stratified: every class has 35 or 36 (or 37) test images
    counts = torch.bincount(y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    again = load_digits_split(16, 0)
    assert torch.equal(again[0], x_train) and torch.equal(again[3], y_test)
    x8 = load_digits_split(8, 0)[0]
    assert x8.shape == (1437, 1, 8, 8)


def test_tiny_cnn_shape_and_size():
    model = tiny_cnn()
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 10)
    assert conv_weight_count(model) == 5080
    kinds = {type(m) for m in model.modules()}
    assert {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool2d, nn.Flatten,
            nn.Linear} <= kinds
    assert any(isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1
               for m in model.modules())


def test_make_divisible_matches_torchvision():
    assert [_make_divisible(c * 0.25) for c in (32, 16, 24, 64, 96, 160, 320)] == \
        [8, 8, 8, 16, 24, 40, 80]
    assert [_make_divisible(c * 0.35) for c in (32, 24, 96)] == [16, 8, 32]
    assert _make_divisible(1280 * 1.4) == 1792


@pytest.mark.parametrize("width, count", [(1.0, 2_189_760), (0.25, 227_456)])
def test_mobilenetv2_conv_weights(width, count):
    model = mobilenetv2(width, 32, 10, 3)
    assert conv_weight_count(model) == count
    assert model.classifier[-1].in_features == 1280


def test_mobilenetv2_ends_at_4x4():
    model = mobilenetv2(0.25, 32, 10, 3).eval()
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 1280, 4, 4)
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    blocks = [m for m in model.modules() if type(m).__name__ == "InvertedResidual"]
    assert len(blocks) == 17


def test_mobilenetv2_imagenet_strides_end_at_1x1_with_the_same_weights():
    model = mobilenetv2(0.25, 32, 10, 3, strides="imagenet").eval()
    assert conv_weight_count(model) == 227_456
    assert model.features[0][0].stride == (2, 2)
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 1280, 1, 1)
    with pytest.raises(ValueError, match="input_size 48 is not a multiple of 32"):
        mobilenetv2(0.25, 48, 10, 3, strides="imagenet")
    with pytest.raises(ValueError, match="strides must be one of"):
        mobilenetv2(0.25, 32, 10, 3, strides="cifar10")


def test_registry():
    assert set(EXAMPLES) == {"tiny_cnn", "mobilenetv2_digits", "mobilenetv2", "small_net"}
    for name, spec in EXAMPLES.items():
        model = load_example(name)
        assert not model.training
        if name != "mobilenetv2":  # the big one: shape only, no forward
            with torch.no_grad():
                assert model(torch.rand(1, *spec.input_shape)).shape == (1, 10)
    with pytest.raises(KeyError, match="unknown example"):
        load_example("resnet")


@pytest.mark.parametrize("name", ["tiny_cnn", "mobilenetv2_digits"])
def test_trained_checkpoints(name):
    spec = EXAMPLES[name]
    if not (spec.checkpoint.exists() and spec.qat_checkpoint.exists()):
        pytest.skip("run python -m hashiflex.examples.train_digits")
    _, _, x_test, y_test = load_digits_split(16, 0)
    model = load_example(name)
    with torch.no_grad():
        fp32 = float((model(x_test).argmax(1) == y_test).float().mean())
    assert fp32 > 0.95
    q = load_quantized(name)
    x, y = x_test[:120], y_test[:120].numpy()  # a subset keeps the integer run short
    pred = q.predict(x)
    assert float((pred == y).mean()) > 0.93
    assert all(np.abs(op.weight_codes).max() <= 8 for op in q.layers
               if isinstance(op, po2.Conv2dOp))


def test_mobilenetv2_full_width_quantises_fast():
    model = load_example("mobilenetv2")
    start = time.time()
    # the default (adaptive-rounding) PTQ; benchmarks/bench_import.py measures it with 64 images
    q = quantize_ptq(model, torch.randn(16, 3, 32, 32))
    elapsed = time.time() - start
    assert sum(op.weight_codes.size for op in q.layers if isinstance(op, po2.Conv2dOp)) == 2_189_760
    assert elapsed < 60
