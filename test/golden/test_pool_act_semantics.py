"""The integer primitives of windowed pooling, leaky ReLU and clamp against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashiflex.golden.semantics import Format, avgpool2d, clamp, leaky_relu, maxpool2d

FMT = Format(8, True, 0)


@pytest.mark.parametrize("k, s, p, ceil, hw", [(3, 2, 1, False, (7, 9)), (2, 2, 0, True, (7, 9)),
                                               (3, 2, 0, True, (8, 10)), (3, 1, 1, False, (5, 4))])
def test_maxpool2d_is_torch_with_minus_inf_padding(k, s, p, ceil, hw):
    x = np.random.default_rng(0).integers(-128, 128, (2, 3, *hw))
    ref = F.max_pool2d(torch.from_numpy(x).double(), k, s, p, ceil_mode=ceil).numpy()
    oh, ow = ref.shape[2:]
    pads = (p, p, (oh - 1) * s + k - hw[0] - p, (ow - 1) * s + k - hw[1] - p)
    np.testing.assert_array_equal(maxpool2d(x, (k, k), (s, s), pads, (oh, ow), FMT), ref)


def test_avgpool2d_po2_area_is_the_rounded_torch_mean():
    x = np.random.default_rng(1).integers(-128, 128, (2, 3, 7, 9))
    mean = F.avg_pool2d(torch.from_numpy(x).double(), 2, 2).numpy()
    y = avgpool2d(x, (2, 2), (2, 2), (0, 0, 0, 0), mean.shape[2:], 2, FMT)
    np.testing.assert_array_equal(y, np.clip(np.floor(mean + 0.5), -128, 127))


def test_avgpool2d_3x3_counts_the_zero_padding():
    x = np.full((1, 1, 3, 3), 9 * 8)
    y = avgpool2d(x, (3, 3), (1, 1), (1, 1, 1, 1), (3, 3), 20, Format(12, True, 0))
    # the corner window holds 4 pixels of 72 and 5 zeros: 288 / 9 = 32
    assert y[0, 0, 0, 0] == 32 and y[0, 0, 1, 1] == 72


def test_leaky_relu_rounds_once_and_clamp_saturates():
    x = np.array([-9, -8, -1, 0, 5, 300])
    np.testing.assert_array_equal(leaky_relu(x, 0, 2, Format(8, True, 0)), [-2, -2, 0, 0, 5, 127])
    np.testing.assert_array_equal(clamp(x, 1, -3, 100), [-3, -3, 0, 0, 3, 100])
