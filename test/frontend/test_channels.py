"""
torch.cat / torch.chunk / torch.split along channels and channel shuffles (issue 13): the
forms torch code writes them in, bit-exact down the ladder (fake-quant float64 ==
golden on the exported po2 IR == po2 interpreter), and one-line errors naming the node for what
is not a channel concatenation, split or permutation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashiflex.dialects import po2
from hashiflex.frontend import quant
from hashiflex.frontend.quant import UnsupportedModelError
from hashiflex.golden import model as golden
from hashiflex.interpreters.po2 import run_po2


def _shuffle_view(x, g):
    n, c, h, w = x.size()
    return x.view(n, g, c // g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


def _shuffle_reshape(x, g):  # reshape, torch.transpose, flatten(1, 2)
    n, c, h, w = x.shape
    return torch.transpose(x.reshape(n, g, c // g, h, w), 1, 2).flatten(1, 2)


class Forms(nn.Module):
    """3x7x5: three-way cat (one branch deeper), reshape/flatten shuffle g=3, torch.chunk,
    split by an int size, cat of pieces in another order."""

    def __init__(self, shuffle):
        super().__init__()
        self.shuffle = shuffle
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b1 = nn.Conv2d(3, 4, 1)
        self.b2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(7, 7, 1)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b2(F.relu(self.b1(x)))), x], 1)  # 11
        y = self.shuffle(torch.cat((y, x), 1), 2)  # 14 channels
        p, q = torch.chunk(y, 2, 1)  # 7 + 7
        r, s = q.split(4, dim=1)  # 4 + 3
        z = torch.cat([s, r], dim=1)  # 7
        return self.fc(F.relu(self.c(z) + p).mean((2, 3)))


@pytest.mark.parametrize("shuffle", [_shuffle_view, _shuffle_reshape])
def test_forms_bit_exact(shuffle):
    torch.manual_seed(0)
    model = Forms(shuffle).eval()
    calib = torch.rand(16, 3, 7, 5)
    images = torch.cat([torch.rand(4, 3, 7, 5) * 1.25, torch.full((1, 3, 7, 5), 9.0)])
    q = quant.quantize_ptq(model, calib, ptq="nearest")
    kinds = [op.name for op in q.layers]
    assert kinds.count("po2.concat") == 4 and kinds.count("po2.select_channels") == 3
    module = q.module
    x_int = q.quantize_input(images)
    logits = q.run_int(images)
    np.testing.assert_array_equal(golden.run_int(module, x_int), logits)
    np.testing.assert_array_equal(run_po2(module, x_int), logits)
    fq = q.fake_quant.double().eval()
    with torch.no_grad():
        np.testing.assert_array_equal(fq(images.double()).numpy() * 2.0 ** q.logits_frac,
                                      logits.astype(np.float64))
        fq.float().set_quantize(False)
        torch.testing.assert_close(fq(images), model(images), rtol=1e-4, atol=1e-4)


def test_shuffle_permutation_and_composed_chunk():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            a, b = _shuffle_view(self.conv(x), 3).chunk(2, dim=1)
            return self.fc(b.mean((2, 3)))

    q = quant.quantize_ptq(Net().eval(), torch.rand(4, 1, 3, 3), ptq="nearest")
    (select,) = [op for op in q.layers if isinstance(op, po2.SelectChannelsOp)]
    # view (3, 2) -> transpose -> (2, 3): order 0 2 4 1 3 5; the second chunk: 1 3 5
    assert select.channels == (1, 3, 5) and select.input.owner.layer == "conv"


def _bad(forward, channels=6):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, channels, 1)
            self.fc = nn.Linear(channels, 2)

        def forward(self, x):
            return self.fc(forward(self.conv(x)).mean((2, 3))[:, :channels])

    return Net().eval()


@pytest.mark.parametrize("forward, fragment", [
    (lambda y: torch.cat([y, y], dim=2), r"'cat'.*torch.cat along dim 2 \(only along channels"),
    (lambda y: torch.cat([y, y]), r"'cat'.*torch.cat along dim 0"),
    (lambda y: torch.cat(torch.split(y, [2, 3], dim=1), 1),
     r"'split'.*split sizes \[2, 3\] do not add up to the 6 channels"),
    (lambda y: torch.cat(y.chunk(2, dim=3), 1), r"'chunk'.*along dim 3"),
    (lambda y: y.view(y.size(0), 2, 3, 4, 4).transpose(1, 3).reshape(y.size(0), 6, 4, 4),
     r"'transpose'.*not a permutation of channels"),
    (lambda y: y.view(y.size(0), 2, 3, 4, 4).transpose(1, 2).reshape(y.size(0), 3, 8, 4),
     r"'reshape'.*\[1, 3, 2, 4, 4\] -> \[1, 3, 8, 4\] is not a permutation of channels"),
    (lambda y: y.view(y.size(0), 6, 2, 2, 4).transpose(1, 2).reshape(y.size(0), 6, 4, 4),
     r"'view'.*is not a permutation of channels"),
])
def test_bad_channel_ops_one_line_naming_the_node(forward, fragment):
    with pytest.raises(UnsupportedModelError, match=fragment) as err:
        quant.quantize_ptq(_bad(forward), torch.rand(2, 1, 4, 4), ptq="nearest")
    assert "\n" not in str(err.value)
