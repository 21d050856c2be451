"""
torchvision's model definitions (test/torchvision_nets.py) at 32x32: import with PTQ
(nearest rounding, a few calibration images), then the golden model on the imported po2 IR
must equal the torch fake-quant model (float64) bit for bit.

Fast tier: mobilenet_v2(0.35) and shufflenet_v2_x0_5 without its max pool (the shuffle,
split and concat paths) and as torchvision ships it (with its max pool); mobilenet_v2(0.5)
and mnasnet0_5 are slow.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

if importlib.util.find_spec("torchvision") is None:  # importing it needs the stub first
    pytest.skip("needs the test extra's torchvision==0.28.0 (pip install --no-deps)",
                allow_module_level=True)

import torchvision_nets as tv  # noqa: E402
from hashiflex.dialects import po2  # noqa: E402
from hashiflex.frontend import quant  # noqa: E402
from hashiflex.frontend.quant import UnsupportedModelError  # noqa: E402
from hashiflex.golden import model as golden  # noqa: E402


def _golden_equals_fake_quant(make) -> list:
    model = make()
    g = torch.Generator().manual_seed(0)
    calib = torch.rand(8, *tv.INPUT_SHAPE, generator=g)
    images = torch.cat([torch.rand(3, *tv.INPUT_SHAPE, generator=g) * 1.25,
                        torch.full((1, *tv.INPUT_SHAPE), 1e3)])
    q = quant.quantize_ptq(model, calib, ptq="nearest")
    module = q.rename(make.__name__).module
    result = golden.run(module, images.numpy())
    fq = q.fake_quant.double().eval()
    with torch.no_grad():
        logits = fq(images.double()).numpy() * 2.0 ** q.logits_frac
    np.testing.assert_array_equal(logits, result.logits.astype(np.float64))
    np.testing.assert_array_equal(q.run_int(images), result.logits)
    # the folded float model is the torch model (BN folding, shuffle, split, cat)
    fq.float().set_quantize(False)
    with torch.no_grad():
        torch.testing.assert_close(fq(images[:3]), model(images[:3]), rtol=1e-3, atol=1e-3)
    return q.layers


def test_mobilenet_v2_035():
    layers = _golden_equals_fake_quant(tv.mobilenet_v2_035)
    assert sum(isinstance(op, po2.ResidualAddOp) for op in layers) == 10  # the residual blocks


def test_shufflenet_v2_x0_5_without_maxpool():
    layers = _golden_equals_fake_quant(tv.shufflenet_v2_x0_5_no_maxpool)
    concats = [op for op in layers if isinstance(op, po2.ConcatOp)]
    selects = [op for op in layers if isinstance(op, po2.SelectChannelsOp)]
    assert len(concats) == 16  # one per InvertedResidual block
    # the shuffle before each chunk is composed into the two chunk selects (13 stride-1
    # blocks split their input); the shuffles before stages 3 and 4 and conv5 stay whole
    # permutations (wiring)
    whole = [s for s in selects if sorted(s.channels) == list(range(len(s.channels)))]
    assert len(selects) == 2 * 13 + 3 and len(whole) == 3
    for s in selects:
        assert len(set(s.channels)) == len(s.channels)


@pytest.mark.slow
def test_mobilenet_v2_05():
    _golden_equals_fake_quant(tv.mobilenet_v2_05)


@pytest.mark.slow
def test_mnasnet0_5():
    _golden_equals_fake_quant(tv.mnasnet0_5)


def test_shufflenet_v2_x0_5():
    _golden_equals_fake_quant(tv.shufflenet_v2_x0_5)


def test_mobilenet_v3_is_refused_clearly():
    """Hardswish multiplies an activation by an activation: not a shift; one clear line."""
    with pytest.raises(UnsupportedModelError, match="Hardswish") as err:
        quant.quantize_ptq(tv.mobilenet_v3_small(), torch.rand(2, *tv.INPUT_SHAPE),
                           ptq="nearest")
    assert "\n" not in str(err.value)
