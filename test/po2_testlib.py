"""Builders shared by the pytest tests: small po2 modules made with the ops' constructors."""

from __future__ import annotations

import numpy as np
from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Region

from hashiflex.dialects import po2
from hashiflex.golden.semantics import Format, conv_shift, requantize


def conv_out_hw(h, w, kernel, stride, pads):
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    return (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1


def conv_module(
    in_shape,
    in_fmt: Format,
    out_fmt: Format,
    codes: np.ndarray,
    *,
    exp_base,
    bias,
    stride=(1, 1),
    padding=(0, 0, 0, 0),
    groups=1,
    act="none",
    exp_bits=3,
) -> ModuleOp:
    """`func.func @main(%x: !po2.act<in>) -> !po2.act<out>` holding one po2.conv2d."""
    c, h, w = in_shape
    in_t = po2.ActType(in_shape, in_fmt)
    oh, ow = conv_out_hw(h, w, codes.shape[2:], stride, padding)
    out_t = po2.ActType((codes.shape[0], oh, ow), out_fmt)
    block = Block(arg_types=[in_t])
    conv = po2.Conv2dOp(
        "conv", block.args[0], out_t, weights=codes, exp_base=exp_base, bias=bias,
        stride=stride, padding=padding, groups=groups, act=act, exp_bits=exp_bits,
    )
    block.add_ops([conv, func.ReturnOp(conv.output)])
    fn = func.FuncOp("main", ([in_t], [out_t]), Region(block))
    return ModuleOp([fn])


def parse(text: str, verify: bool = True) -> ModuleOp:
    """Parse po2 IR text in the tools' context (optionally without verifying it)."""
    from xdsl.parser import Parser

    from hashiflex.tools.registry import make_context

    module = Parser(make_context(), text).parse_module()
    if verify:
        module.verify()
    return module


def apply(module: ModuleOp, *passes) -> ModuleOp:
    """Apply passes in order, verifying after each, as po2-opt does."""
    from xdsl.context import Context

    for p in passes:
        p.apply(Context(), module)
        module.verify()
    return module


def extreme_batch(rng: np.random.Generator, shape, fmt: Format, n_random: int = 3) -> np.ndarray:
    """Random images of the format plus an all-max and an all-min image."""
    rand = rng.integers(fmt.lo, fmt.hi + 1, (n_random, *shape))
    return np.concatenate(
        [rand, np.full((1, *shape), fmt.hi), np.full((1, *shape), fmt.lo)]
    ).astype(np.int64)


def ref_conv(x, codes, bias, shift, stride, pads, groups, out_fmt, act):
    """
    One image's po2.conv2d by loops over every output with Python ints, read literally
    from docs/semantics.md (only the rounding primitives are shared): the independent
    reference for the golden model and the interpreter.
    """
    cin, h, w = x.shape
    cout, cin_g, kh, kw = codes.shape
    top, left, bottom, right = pads
    oh = (h + top + bottom - kh) // stride[0] + 1
    ow = (w + left + right - kw) // stride[1] + 1
    y = np.zeros((cout, oh, ow), dtype=np.int64)
    for o in range(cout):
        g = o // (cout // groups)
        for oy in range(oh):
            for ox in range(ow):
                acc = int(bias[o])
                for i in range(cin_g):
                    for a in range(kh):
                        for b in range(kw):
                            yy, xx = oy * stride[0] - top + a, ox * stride[1] - left + b
                            c = int(codes[o, i, a, b])
                            if c == 0 or not (0 <= yy < h and 0 <= xx < w):
                                continue
                            v = int(x[g * cin_g + i, yy, xx])
                            acc += v * (1 << (abs(c) - 1)) * (1 if c > 0 else -1)
                y[o, oy, ox] = requantize(acc, int(shift[o]), out_fmt, act)
    return y


def residual_block(x, rng: np.random.Generator, rq_fmt: Format,
                   shape: tuple[int, int, int] = (2, 5, 6)) -> list:
    """
    The 2x5x6 block (or 2xHxW, `shape`) several lowering tests share: conv 3x3 (padded) ->
    conv 1x1, added to the skip `x`, ReLU, requantised to `rq_fmt`. Returns [conv1, conv2,
    add, requant].
    """
    mid_fmt = Format(8, True, 3)
    c1 = po2.Conv2dOp("b.conv1", x, po2.ActType((3, *shape[1:]), mid_fmt),
                      weights=rng.integers(-3, 4, size=(3, 2, 3, 3)).astype(np.int8),
                      exp_base=[0, 0, -1], bias=[1, 2, 3], padding=(1, 1, 1, 1))
    c2 = po2.Conv2dOp("b.conv2", c1.output, po2.ActType(shape, mid_fmt),
                      weights=rng.integers(-3, 4, size=(2, 3, 1, 1)).astype(np.int8),
                      exp_base=[1, 0], bias=[-4, 4])
    add = po2.ResidualAddOp("b.add", x, c2.output, po2.ActType(shape, Format(8, True, 2)),
                            act="relu")
    rq = po2.RequantOp("b.rq", add.output, po2.ActType(shape, rq_fmt))
    return [c1, c2, add, rq]
