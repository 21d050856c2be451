"""
`po2.concat` and `po2.select_channels` lowered (passes/to_hw/channels.py) and streamed
through the top in the hw simulator against the golden model, at 1 and several pixels per
cycle, with random input gaps: a concatenation of a stream with itself delayed by two convs
(unequal latencies: the FIFO depths come from the timing analysis), then a channel shuffle
and a split piece as the network's result (wiring in the top).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from hashiflex.dialects import po2
from hashiflex.golden import model as golden
from hashiflex.golden.semantics import Format
from hashiflex.passes.to_hw import design_report
from po2_testlib import residual_block
from test_pixels_per_cycle import _lower, _sim, _stream_beats, _unpack
from test_po2_to_hw import _images, _network


@pytest.mark.parametrize("p", [1, 2, 4])
def test_concat_shuffle_split_stream(p):
    in_fmt = Format(8, False, 4)
    rng = np.random.default_rng(5)
    shape = (2, 5, 6)

    def build(block):
        x = block.args[0]
        c1, c2, _, _ = residual_block(x, rng, Format(6, False, 1))  # 2 convs: late branch
        cat = po2.ConcatOp("cat", x, c2.output, po2.ActType((4, 5, 6), Format(7, True, 2)))
        shuffle = po2.SelectChannelsOp("shuffle", cat.output, [0, 2, 1, 3])
        piece = po2.SelectChannelsOp("piece", shuffle.output, [1, 2, 3])
        block.add_ops([c1, c2, cat, shuffle, piece])
        return piece.output

    module = _network(build, po2.ActType(shape, in_fmt))
    images = _images(rng, shape, in_fmt, 3)
    want = golden.run_int(module, images)
    out_fmt = Format(7, True, 2)
    _lower(module, pixels_per_cycle=p)
    report = design_report(module)
    (cat,) = [layer for layer in report["layers"] if layer["kind"] == "concat"]
    assert cat["fifo_depths"][0] > cat["fifo_depths"][1]  # the skip operand waits
    beats = 5 * -(-6 // p)
    words = _stream_beats(_sim(module, "net_top"), images, in_fmt, p, 3 * beats,
                          random.Random(p))
    got = _unpack(words, 3, 5, 6, p, 3, out_fmt)
    assert np.array_equal(got, want)
