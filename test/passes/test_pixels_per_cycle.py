"""
Several pixels per cycle (`pixels_per_cycle` P, passes/to_hw/rates.py): the rate model, and
the lowered layers streamed beat by beat through the hw simulator against the golden model,
for convs of every geometry (strides, paddings, odd widths), residual adds, requant and
pooling (global, and windowed max/avg pooling on the conv's window).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from xdsl.dialects import func

from hashiflex.dialects import po2
from hashiflex.golden import model as golden
from hashiflex.golden.semantics import Format
from hashiflex.interpreters.hw import HwSimulator
from hashiflex.packing import pack_beats, split_fields
from hashiflex.passes.po2_to_hw import Po2ToHwPass
from hashiflex.passes.po2_unroll import Po2UnrollPass
from hashiflex.passes.to_hw import design_report
from hashiflex.passes.to_hw.lane_widener import widening
from hashiflex.passes.to_hw.rates import (RateError, check_pixels_per_cycle, cycles_per_image,
                                          pixels_for_rate, stream_rates, supports)
from hashiflex.tools.registry import make_context
from po2_testlib import conv_module, residual_block
from test_po2_to_hw import CONV_CASES, _images, _network


def _lower(module, **options):
    ctx = make_context()
    Po2UnrollPass().apply(ctx, module)
    Po2ToHwPass(**options).apply(ctx, module)
    module.verify()
    return module


def _stream_beats(sim: HwSimulator, images: np.ndarray, fmt: Format, lanes: int,
                  out_beats: int, rng: random.Random, gaps: bool = True) -> list[int]:
    """Drive images beat by beat through a top (random gaps), return `out_beats` out words."""
    beats = pack_beats(images, fmt.bits, lanes)
    beats += [0] * (2 * len(beats) // len(images) + 64)  # drain with zero beats
    got: list[int] = []
    sim.step(rst=1, in_valid=0, in_data=0)
    i = 0
    while i < len(beats) and len(got) < out_beats:
        valid = 0 if gaps and rng.random() < 0.3 else 1
        out = sim.step(rst=0, in_valid=valid, in_data=beats[i])
        if out["out_valid"]:
            got.append(out["out_data"])
        i += valid
    assert len(got) == out_beats, f"{len(got)} output beats, expected {out_beats}"
    return got


def _unpack(words: list[int], n: int, oh: int, ow: int, lanes: int, ch: int,
            fmt: Format) -> np.ndarray:
    """Output beats -> (N, C, OH, OW): q pixels per beat, the lanes past OW dropped."""
    groups = -(-ow // lanes)
    fields = [split_fields(w, lanes * ch, fmt.bits, fmt.signed) for w in words]
    arr = np.array(fields).reshape(n, oh, groups * lanes, ch)[:, :, :ow, :]
    return arr.transpose(0, 3, 1, 2)


def _sim(module, top: str) -> HwSimulator:
    return HwSimulator(module, top)


# -- the rate model ----------------------------------------------------------------------------


def test_rate_model_bad_input_and_rate_choice():
    for bad in (0, -3, 2.5, True, "4"):
        with pytest.raises(RateError, match="positive integer"):
            check_pixels_per_cycle(bad, 4, 5)
    with pytest.raises(RateError, match="larger than the input's 4x5 = 20 pixels"):
        check_pixels_per_cycle(21, 4, 5)
    with pytest.raises(RateError, match="larger than the input width 5 but not a multiple"):
        check_pixels_per_cycle(6, 4, 5)
    assert cycles_per_image(32, 32, 4) == 256 and cycles_per_image(32, 32, 16) == 64
    assert cycles_per_image(5, 7, 2) == 20  # rows of 7 take 4 beats
    assert pixels_for_rate(3.9e6, 1000, 32, 32) == 4
    assert pixels_for_rate(15.6e6, 1000, 32, 32) == 16
    assert pixels_for_rate(1e3, 1000, 32, 32) == 1


def test_lanes_follow_the_strides():
    """
    Stem stride 2x2 at P=4: 2 datapath copies, whose row bursts the row buffer serialises to
    1 lane; at P=8: 4 copies -> 2 lanes; a later stride 2 -> 1; pooling -> 1.
    """
    fmt = Format(8, False, 4)
    ops = {}

    def build(block):
        x = block.args[0]
        c1 = po2.Conv2dOp("stem", x, po2.ActType((2, 4, 8), fmt),
                          weights=np.ones((2, 1, 3, 3), np.int8), exp_base=[0, 0], bias=[0, 0],
                          stride=(2, 2), padding=(1, 1, 1, 1))
        c2 = po2.Conv2dOp("down", c1.output, po2.ActType((2, 2, 4), fmt),
                          weights=np.ones((2, 2, 1, 1), np.int8), exp_base=[0, 0], bias=[0, 0],
                          stride=(2, 2))
        pool = po2.AvgPoolOp("pool", c2.output, po2.ActType((2, 1, 1), fmt))
        block.add_ops([c1, c2, pool])
        ops.update(c1=c1, c2=c2, pool=pool)
        return pool.output

    module = _network(build, po2.ActType((1, 8, 16), fmt))
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    rates = stream_rates(fn.args[0], fn.body.block.ops, 4)
    assert rates.cycles_per_image == 32
    assert [rates.lanes[ops[k].output] for k in ("c1", "c2", "pool")] == [1, 1, 1]
    rates = stream_rates(fn.args[0], fn.body.block.ops, 8)
    assert [rates.lanes[ops[k].output] for k in ("c1", "c2", "pool")] == [2, 1, 1]
    # 3 lanes into stride 2: pairs of beats widened to 6 lanes -> 3 copies, 3 output lanes
    rates = stream_rates(fn.args[0], fn.body.block.ops, 3)
    assert [rates.lanes[ops[k].output] for k in ("c1", "c2", "pool")] == [3, 3, 1]
    assert pixels_for_rate(1e9 / 48, 1000, 8, 16,
                           lambda p: supports(fn.args[0], list(fn.body.block.ops), p)) == 3


# -- convs, beat by beat -----------------------------------------------------------------------


def _conv_cases():
    for case, (in_shape, _, _, stride, _, _) in sorted(CONV_CASES.items()):
        for p in (2, 3, 4):
            if p <= in_shape[2]:  # p not a multiple of sw: the lane widener
                yield case, p


@pytest.mark.parametrize("case,p", list(_conv_cases()))
def test_conv_lanes_match_golden(case, p):
    in_shape, cout, kernel, stride, padding, groups = CONV_CASES[case]
    rng = np.random.default_rng(abs(hash((case, p))) % 1000)
    in_fmt = Format(8, case == "asym_pad", 4)
    out_fmt = Format(8, case != "1x1", 3)
    codes = rng.integers(-4, 5, size=(cout, in_shape[0] // groups, *kernel)).astype(np.int8)
    module = conv_module(in_shape, in_fmt, out_fmt, codes, exp_base=list(range(-1, cout - 1)),
                         bias=list(rng.integers(-50, 50, size=cout)), stride=stride,
                         padding=padding, groups=groups)
    conv = next(op for op in module.walk() if isinstance(op, po2.Conv2dOp))
    images = _images(rng, in_shape, in_fmt, 3)
    want = golden.conv2d(images, conv)
    _lower(module, pixels_per_cycle=p)
    q = p * widening(p, stride[1]) // stride[1]
    (layer,) = design_report(module)["layers"]
    assert layer.get("lanes", 1) == q
    if layer.get("output_lanes", q) != q:  # the row buffer serialises the row bursts
        assert stride[0] > 1 and q % stride[0] == 0
        q //= stride[0]
        assert layer["output_lanes"] == q and layer["row_buffer_depth"] >= 1
    oh, ow = want.shape[2:]
    words = _stream_beats(_sim(module, "main_top"), images, in_fmt, p, 3 * oh * -(-ow // q),
                          random.Random(p))
    got = _unpack(words, 3, oh, ow, q, cout, out_fmt)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("p", [2, 4, 5])
def test_residual_requant_avgpool_lanes(p):
    """conv -> conv + skip -> residual add -> requant -> avgpool at P lanes (width 6)."""
    in_fmt = Format(8, False, 4)
    rng = np.random.default_rng(11)
    shape = (2, 5, 6)

    def build(block):
        x = block.args[0]
        c1, c2, add, rq = residual_block(x, rng, Format(6, False, 1))
        pool = po2.AvgPoolOp("pool", rq.output, po2.ActType((2, 1, 1), Format(8, False, 3)))
        block.add_ops([c1, c2, add, rq, pool])
        return pool.output

    module = _network(build, po2.ActType(shape, in_fmt))
    images = _images(rng, shape, in_fmt, 3)
    want = golden.run_int(module, images).reshape(3, 2)
    _lower(module, pixels_per_cycle=p)
    top = design_report(module)["top"]
    assert top["cycles_per_image"] == 5 * -(-6 // p) and top["pixels_per_cycle"] == p
    words = _stream_beats(_sim(module, "net_top"), images, in_fmt, p, 3, random.Random(p))
    got = np.array([split_fields(w, 2, 8, False) for w in words])
    assert np.array_equal(got, want)


def test_partial_beats_and_dont_care_lanes():
    """
    docs/microarchitecture.md, "Several pixels per cycle": the lanes past a row's end in its
    last beat are ignored (garbage there changes nothing); there is no partial beat in the
    middle of a row: every lane of such a beat is taken as a pixel (a driver that leaves two
    lanes at zero gets that image computed with those pixels zero), and the stream stays
    aligned, so the next image is intact.
    """
    in_fmt, out_fmt = Format(8, False, 4), Format(8, True, 3)
    rng = np.random.default_rng(3)
    shape, p = (2, 5, 7), 4
    codes = rng.integers(-4, 5, size=(3, 2, 3, 3)).astype(np.int8)
    module = conv_module(shape, in_fmt, out_fmt, codes, exp_base=[0, 0, -1], bias=[3, -3, 0],
                         padding=(1, 1, 1, 1))
    conv = next(op for op in module.walk() if isinstance(op, po2.Conv2dOp))
    images = _images(rng, shape, in_fmt, 2)
    _lower(module, pixels_per_cycle=p)
    beats = pack_beats(images, in_fmt.bits, p)
    lane_bits = 2 * in_fmt.bits
    # garbage in lane 3 of every row's last beat (the row has 7 = 4 + 3 pixels)
    for row in range(2 * 5):
        beats[2 * row + 1] |= 0xABCD << (3 * lane_bits)
    # image 0, row 2, first beat: a driver "offering 2 pixels" leaves lanes 2 and 3 at zero
    beats[2 * 2] &= (1 << (2 * lane_bits)) - 1
    seen = images.copy()
    seen[0, :, 2, 2:4] = 0
    want = golden.conv2d(seen, conv)
    sim = _sim(module, "main_top")
    beats += [0] * 20
    sim.step(rst=1, in_valid=0, in_data=0)
    words = []
    for beat in beats:
        out = sim.step(rst=0, in_valid=1, in_data=beat)
        if out["out_valid"]:
            words.append(out["out_data"])
    got = _unpack(words[:2 * 5 * 2], 2, 5, 7, p, 3, out_fmt)
    assert np.array_equal(got, want)
    assert not np.array_equal(want[0], golden.conv2d(images, conv)[0])  # the zeros mattered


@pytest.mark.parametrize("p,gaps", [(4, True), (8, False), (8, True), (12, False), (6, True),
                                    (5, False), (3, True)])
def test_row_buffer_after_vertical_stride(p, gaps):
    """
    A stride-2 stem at P lanes: p/2 datapath copies whose output rows come in bursts; the
    row buffer serialises them to p/4 lanes (p=6: 3 lanes, not a multiple of 2, stay; p odd:
    the lane widener pairs beats, p copies, p lanes), a residual block and pooling follow at
    those lanes. Bit-exact with the golden model, fed
    at full rate (the row buffer's worst backlog) or with random gaps.
    """
    in_fmt = Format(8, False, 4)
    rng = np.random.default_rng(5)
    shape = (2, 10, 12)

    def build(block):
        stem = po2.Conv2dOp("stem", block.args[0], po2.ActType((2, 5, 6), Format(8, False, 3)),
                            weights=rng.integers(-3, 4, size=(2, 2, 3, 3)).astype(np.int8),
                            exp_base=[-1, 0], bias=[5, -5], stride=(2, 2),
                            padding=(1, 1, 1, 1), act="relu")
        c1, c2, add, rq = residual_block(stem.output, rng, Format(6, False, 1))
        pool = po2.AvgPoolOp("pool", rq.output, po2.ActType((2, 1, 1), Format(8, False, 3)))
        block.add_ops([stem, c1, c2, add, rq, pool])
        return pool.output

    module = _network(build, po2.ActType(shape, in_fmt))
    images = _images(rng, shape, in_fmt, 4)
    want = golden.run_int(module, images).reshape(4, 2)
    _lower(module, pixels_per_cycle=p)
    report = design_report(module)
    stem = next(layer for layer in report["layers"] if layer["layer"] == "stem")
    q = p * widening(p, 2) // 2
    assert stem["lanes"] == q
    assert stem.get("output_lanes", q) == (q // 2 if q % 2 == 0 else q)
    assert report["top"]["cycles_per_image"] == 10 * -(-12 // p)
    words = _stream_beats(_sim(module, "net_top"), images, in_fmt, p, 4, random.Random(p),
                          gaps=gaps)
    got = np.array([split_fields(w, 2, 8, False) for w in words])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("gaps", [False, True])
def test_two_row_buffers_in_a_row(gaps):
    """
    MobileNetV2's pattern at P=16: a stride-2 conv (8 copies, row buffer -> 4 lanes), then a
    stride-2 conv fed by those serialised bursts (2 copies, row buffer -> 1 lane), both row
    buffers busy every cycle of the image at full rate; bit-exact, cycles per image 8.
    """
    in_fmt, mid_fmt = Format(8, False, 4), Format(8, False, 3)
    rng = np.random.default_rng(9)
    shape = (1, 8, 16)

    def build(block):
        a = po2.Conv2dOp("a", block.args[0], po2.ActType((2, 4, 8), mid_fmt),
                         weights=rng.integers(-3, 4, size=(2, 1, 3, 3)).astype(np.int8),
                         exp_base=[-1, 0], bias=[5, -5], stride=(2, 2),
                         padding=(1, 1, 1, 1), act="relu")
        b = po2.Conv2dOp("b", a.output, po2.ActType((2, 2, 4), mid_fmt),
                         weights=rng.integers(-3, 4, size=(2, 2, 3, 3)).astype(np.int8),
                         exp_base=[-1, -1], bias=[1, 2], stride=(2, 2),
                         padding=(1, 1, 1, 1), act="relu")
        pool = po2.AvgPoolOp("pool", b.output, po2.ActType((2, 1, 1), Format(8, False, 3)))
        block.add_ops([a, b, pool])
        return pool.output

    module = _network(build, po2.ActType(shape, in_fmt))
    images = _images(rng, shape, in_fmt, 4)
    want = golden.run_int(module, images).reshape(4, 2)
    _lower(module, pixels_per_cycle=16)
    report = design_report(module)
    lanes = {layer["layer"]: (layer["lanes"], layer["output_lanes"])
             for layer in report["layers"] if layer["kind"] == "conv"}
    assert lanes == {"a": (8, 4), "b": (2, 1)} and report["top"]["cycles_per_image"] == 8
    words = _stream_beats(_sim(module, "net_top"), images, in_fmt, 16, 4, random.Random(1),
                          gaps=gaps)
    got = np.array([split_fields(w, 2, 8, False) for w in words])
    assert np.array_equal(got, want)


# -- beats of whole rows (P = k*W) -------------------------------------------------------------


def test_rate_model_whole_rows_per_beat():
    """P = k*W carries k rows per beat (k dividing H); other P > W are one-line errors."""
    assert check_pixels_per_cycle(16, 8, 8) == 16 and check_pixels_per_cycle(64, 8, 8) == 64
    with pytest.raises(RateError, match="larger than the input width 8 but not a multiple "
                                        "of it: a beat spanning rows carries whole rows"):
        check_pixels_per_cycle(12, 8, 8)
    with pytest.raises(RateError, match="3 rows of 8 per beat: the rows per beat must divide "
                                        "the input height 8"):
        check_pixels_per_cycle(24, 8, 8)
    assert cycles_per_image(32, 32, 64) == 16 and cycles_per_image(8, 8, 16) == 4
    assert pixels_for_rate(60e6, 1000, 32, 32) == 64  # 16 cycles: 62.5M images/s
    assert pixels_for_rate(1e9, 1000, 32, 32) == 1024
    with pytest.raises(RateError, match="more than the network reaches at 1000 MHz "
                                        r"\(at most 1e\+09 images/s with P = 1024"):
        pixels_for_rate(2e9, 1000, 32, 32)


def _conv_chain(specs, in_shape, fmt=Format(8, False, 3)):
    """A func of convs (name, out_shape, kernel, stride, padding, groups), each on the last."""
    ops = {}
    rng = np.random.default_rng(0)

    def build(block):
        x = block.args[0]
        for name, out_shape, kernel, stride, padding, groups in specs:
            cin = x.type.dims[0] // groups
            conv = po2.Conv2dOp(name, x, po2.ActType(out_shape, fmt),
                                weights=rng.integers(-2, 3, size=(out_shape[0], cin, *kernel)
                                                     ).astype(np.int8),
                                exp_base=[0] * out_shape[0], bias=[0] * out_shape[0],
                                stride=stride, padding=padding, groups=groups)
            block.add_op(conv)
            ops[name] = conv
            x = conv.output
        return x

    module = _network(build, po2.ActType(in_shape, fmt))
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    return fn, ops


def test_rows_per_beat_follow_the_strides():
    """
    The MobileNetV2 stem at 2 rows per beat: 3x3 s2 makes one whole output row per beat
    (OW lanes; a later stride 2 runs at P = W as usual: 4 copies, row buffer -> 2 lanes); at 4 rows per beat two output
    rows, which a stride-1 conv keeps; rows the stride does not divide are refused.
    """
    specs = [("stem", (2, 4, 8), (3, 3), (2, 2), (1, 1, 1, 1), 1),
             ("dw", (2, 4, 8), (3, 3), (1, 1), (1, 1, 1, 1), 2),
             ("down", (2, 2, 4), (3, 3), (2, 2), (1, 1, 1, 1), 1)]
    fn, ops = _conv_chain(specs, (1, 8, 16))
    rates = stream_rates(fn.args[0], fn.body.block.ops, 32)
    assert rates.cycles_per_image == 4
    assert [rates.lanes[ops[k].output] for k in ("stem", "dw", "down")] == [8, 8, 2]
    assert [rates.rows.get(ops[k].output, 1) for k in ("stem", "dw", "down")] == [1, 1, 1]
    rates = stream_rates(fn.args[0], fn.body.block.ops, 64)
    assert [rates.lanes[ops[k].output] for k in ("stem", "dw", "down")] == [16, 16, 4]
    assert [rates.rows.get(ops[k].output, 1) for k in ("stem", "dw", "down")] == [2, 2, 1]
    assert rates.cycles_per_image == 2
    assert stream_rates(fn.args[0], fn.body.block.ops, 128).rows[ops["down"].output] == 2
    fn, _ = _conv_chain([("valid", (2, 6, 14), (3, 3), (1, 1), (0, 0, 0, 0), 1)], (1, 8, 16))
    with pytest.raises(RateError, match="layer 'valid': 4 output rows per beat must divide its "
                                        "output height 6"):
        stream_rates(fn.args[0], fn.body.block.ops, 64)
    fn, _ = _conv_chain([("stem", (2, 3, 8), (3, 3), (2, 2), (1, 1, 1, 1), 1)], (1, 6, 16))
    with pytest.raises(RateError, match="layer 'stem': 3 input rows per beat into vertical "
                                        "stride 2: the rows per beat must be a multiple"):
        stream_rates(fn.args[0], fn.body.block.ops, 48)
    ops = list(fn.body.block.ops)
    assert not supports(fn.args[0], ops, 48) and supports(fn.args[0], ops, 32)
    # --images-per-second: 32 (3 cycles) is too slow, 48 refused, 96 (the whole image) taken
    assert pixels_for_rate(4e8, 1000, 6, 16, lambda p: supports(fn.args[0], ops, p)) == 96


def test_rows_per_beat_into_windowed_pooling_refused():
    fmt = Format(8, False, 3)

    def build(block):
        pool = po2.MaxPool2dOp("pool", block.args[0], po2.ActType((1, 2, 4), fmt),
                               kernel=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0))
        block.add_op(pool)
        return pool.output

    module = _network(build, po2.ActType((1, 4, 8), fmt))
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    with pytest.raises(RateError, match="layer 'pool': 2 rows per beat into windowed pooling "
                                        "are not supported"):
        stream_rates(fn.args[0], fn.body.block.ops, 16)


#: name: (in_shape, out_ch, kernel, stride, padding (t, l, b, r), groups, rows per beat)
ROWS_CASES = {
    "stem_3x3_s2_k2": ((2, 8, 8), 3, (3, 3), (2, 2), (1, 1, 1, 1), 1, 2),
    "stem_3x3_s2_k4": ((2, 8, 6), 3, (3, 3), (2, 2), (1, 1, 1, 1), 1, 4),
    "dw_3x3_s1_k2": ((3, 6, 5), 3, (3, 3), (1, 1), (1, 1, 1, 1), 3, 2),
    "asym_pad_k2": ((2, 6, 7), 2, (3, 2), (1, 2), (2, 0, 0, 1), 1, 2),
    "bottom_pad_k2": ((1, 6, 5), 2, (3, 3), (1, 1), (0, 0, 2, 2), 1, 2),
    "5x3_nopad_k2": ((1, 8, 5), 2, (5, 3), (1, 1), (0, 0, 0, 0), 1, 2),
    "whole_image": ((3, 5, 5), 3, (3, 3), (1, 1), (1, 1, 1, 1), 3, 5),
    "1x1_k2": ((3, 4, 5), 4, (1, 1), (1, 1), (0, 0, 0, 0), 1, 2),
    "1x1_s2_k2": ((2, 6, 5), 2, (1, 1), (2, 2), (0, 0, 0, 0), 1, 2),
}


@pytest.mark.parametrize("case", sorted(ROWS_CASES))
def test_conv_whole_rows_match_golden(case):
    """A conv fed k whole rows per beat (P = k*W): k/sh whole output rows per beat, one
    datapath copy per output pixel of the beat, bit-exact, random gaps, 3 images."""
    in_shape, cout, kernel, stride, padding, groups, k = ROWS_CASES[case]
    rng = np.random.default_rng(abs(hash(case)) % 1000)
    in_fmt, out_fmt = Format(8, case == "asym_pad_k2", 4), Format(8, True, 3)
    codes = rng.integers(-4, 5, size=(cout, in_shape[0] // groups, *kernel)).astype(np.int8)
    module = conv_module(in_shape, in_fmt, out_fmt, codes, exp_base=list(range(-1, cout - 1)),
                         bias=list(rng.integers(-50, 50, size=cout)), stride=stride,
                         padding=padding, groups=groups)
    conv = next(op for op in module.walk() if isinstance(op, po2.Conv2dOp))
    images = _images(rng, in_shape, in_fmt, 3)
    want = golden.conv2d(images, conv)
    p = k * in_shape[2]
    _lower(module, pixels_per_cycle=p)
    oh, ow = want.shape[2:]
    out_rows = k // stride[0]
    (layer,) = design_report(module)["layers"]
    assert layer["lanes"] == out_rows * ow and layer["input_lanes"] == p
    assert (layer["input_rows"], layer["output_rows"]) == (k, out_rows)
    assert design_report(module)["top"]["cycles_per_image"] == in_shape[1] // k
    words = _stream_beats(_sim(module, "main_top"), images, in_fmt, p, 3 * oh // out_rows,
                          random.Random(k))
    fields = [split_fields(w, out_rows * ow * cout, out_fmt.bits, out_fmt.signed)
              for w in words]
    got = np.array(fields).reshape(3, oh, ow, cout).transpose(0, 3, 1, 2)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("p,gaps", [(16, False), (16, True), (32, True), (64, False)])
def test_whole_rows_network(p, gaps):
    """
    An 8x8 net at P = 16, 32, 64 (2, 4, 8 rows per beat): a 3x3 s2 stem (one 4-wide output
    row per beat at P=16; 2 and 4 rows at 32 and 64), then a residual block (3x3, 1x1, add,
    requant) at the stem's rows per beat, global pooling summing whole rows. Bit-exact,
    cycles per image = 8/k.
    """
    in_fmt = Format(8, False, 4)
    rng = np.random.default_rng(21)
    shape = (1, 8, 8)

    def build(block):
        stem = po2.Conv2dOp("stem", block.args[0], po2.ActType((2, 4, 4), Format(8, False, 3)),
                            weights=rng.integers(-3, 4, size=(2, 1, 3, 3)).astype(np.int8),
                            exp_base=[-1, 0], bias=[5, -5], stride=(2, 2),
                            padding=(1, 1, 1, 1), act="relu")
        c1, c2, add, rq = residual_block(stem.output, rng, Format(6, False, 1), (2, 4, 4))
        pool = po2.AvgPoolOp("pool", rq.output, po2.ActType((2, 1, 1), Format(8, False, 3)))
        block.add_ops([stem, c1, c2, add, rq, pool])
        return pool.output

    module = _network(build, po2.ActType(shape, in_fmt))
    images = _images(rng, shape, in_fmt, 4)
    want = golden.run_int(module, images).reshape(4, 2)
    _lower(module, pixels_per_cycle=p)
    report = design_report(module)
    k = p // 8
    assert report["top"]["cycles_per_image"] == 8 // k
    lanes = {layer["layer"]: layer.get("lanes", 1) for layer in report["layers"]}
    assert lanes["stem"] == k // 2 * 4 and lanes["b.conv1"] == k // 2 * 4
    words = _stream_beats(_sim(module, "net_top"), images, in_fmt, p, 4, random.Random(p),
                          gaps=gaps)
    got = np.array([split_fields(w, 2, 8, False) for w in words])
    assert np.array_equal(got, want)


# -- windowed pooling, beat by beat (pool2d.py: the conv's window and lanes) -------------------

#: kind, input CxHxW, kernel, stride, padding (top, left, bottom, right; ceil_mode is extra
#: bottom/right padding): odd widths, the -inf fill of max pooling on a signed format, the
#: zero padding average pooling counts, strides 1 and 2 (at P=4 max3_s2_p1 and avg2_s2 fill
#: their frame: a row buffer; max2_s2_ceil's rows do not fit: 2 lanes out)
POOL_CASES = {
    "max2_s2_ceil": ("max", (2, 5, 7), (2, 2), (2, 2), (0, 0, 1, 1)),
    "max3_s1_p1": ("max", (2, 5, 7), (3, 3), (1, 1), (1, 1, 1, 1)),
    "max3_s2_p1": ("max", (2, 7, 9), (3, 3), (2, 2), (1, 1, 1, 1)),
    "avg3_s1_p1": ("avg", (2, 5, 7), (3, 3), (1, 1), (1, 1, 1, 1)),
    "avg2_s2": ("avg", (2, 6, 9), (2, 2), (2, 2), (0, 0, 0, 0)),
    "avg2_s1": ("avg", (2, 4, 5), (2, 2), (1, 1), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("case,p", [(case, p) for case in sorted(POOL_CASES) for p in (2, 3, 4)])
def test_windowed_pooling_lanes_match_golden(case, p):
    """
    A max/avg pooling layer at P lanes: p/sw copies of its comparator or averaging tree on
    one tap chain (P=3 into stride 2: the lane widener pairs beats), like a conv; fed with
    random gaps, every output equals the golden model's.
    """
    kind, shape, kernel, stride, padding = POOL_CASES[case]
    fmt = Format(8, kind == "max", 4)
    c, h, w = shape
    out_hw = ((h + padding[0] + padding[2] - kernel[0]) // stride[0] + 1,
              (w + padding[1] + padding[3] - kernel[1]) // stride[1] + 1)
    cls = po2.MaxPool2dOp if kind == "max" else po2.AvgPool2dOp
    ops = {}

    def build(block):
        pool = cls("pool", block.args[0], po2.ActType((c, *out_hw), fmt), kernel=kernel,
                   stride=stride, padding=padding)
        block.add_op(pool)
        ops["pool"] = pool
        return pool.output

    module = _network(build, po2.ActType(shape, fmt))
    rng = np.random.default_rng(abs(hash((case, p))) % 1000)
    images = _images(rng, shape, fmt, 3)
    pool = ops["pool"]
    want = golden.maxpool(images, pool) if kind == "max" else golden.windowed_avgpool(images, pool)
    _lower(module, pixels_per_cycle=p)
    (layer,) = design_report(module)["layers"]
    q = p * widening(p, stride[1]) // stride[1]
    assert layer["kind"] == f"{kind}pool2d" and layer.get("lanes", 1) == q
    if layer.get("output_lanes", q) != q:  # the row buffer serialises the row bursts
        q //= stride[0]
        assert stride[0] > 1 and layer["output_lanes"] == q and layer["row_buffer_depth"] >= 1
    words = _stream_beats(_sim(module, "net_top"), images, fmt, p,
                          3 * out_hw[0] * -(-out_hw[1] // q), random.Random(p))
    got = _unpack(words, 3, *out_hw, q, c, fmt)
    assert np.array_equal(got, want)
