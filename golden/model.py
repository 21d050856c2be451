"""
The golden model: executes layer-level po2 IR on integers, exactly as docs/semantics.md
says, with numpy int64 arrays vectorised over a batch of images.

It is deliberately written from the semantics, not from the hardware or the torch model,
so that it can judge both. Everything numeric goes through `golden.semantics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.dialects.func import FuncOp, ReturnOp
from xdsl.ir import Operation, SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import (
    Format,
    argmax_lowest,
    clamp,
    decode_weights,
    leaky_relu,
    maxpool2d,

    quantize_input,
    requantize,
)
from hashiflex.golden import semantics


class GoldenError(Exception):
    """The IR cannot be executed by the golden model (names the op and the problem)."""


@dataclass
class GoldenResult:
    logits: np.ndarray  # (N, classes) int64
    classes: np.ndarray  # (N,) int64
    logits_frac: int


def find_network(module: ModuleOp) -> FuncOp:
    try:
        return po2.network_func(module)
    except ValueError as error:
        raise GoldenError(str(error)) from None


def input_type(module: ModuleOp) -> po2.ActType:
    func = find_network(module)
    if len(func.args) != 1 or not isinstance(func.args[0].type, po2.ActType):
        raise GoldenError(f"@{func.sym_name.data} must take one !po2.act image argument")
    return func.args[0].type


def conv2d(x: np.ndarray, op: po2.Conv2dOp) -> np.ndarray:
    """(N, Cin, H, W) int64 -> (N, Cout, OH, OW): exact accumulation, then requantise.

    Per kernel tap, one batched matmul over all groups at once (a depthwise conv of 960
    channels is one broadcast multiply, not 960 small ones)."""
    weights = decode_weights(op.weight_codes)  # (Cout, Cin/g, KH, KW)
    out_t = op.output.type
    assert isinstance(out_t, po2.ActType)
    (kh, kw), (sh, sw), (top, left, bottom, right) = op.kernel, op.stride, op.padding
    g = op.groups
    n = x.shape[0]
    cout, oh, ow = out_t.dims
    cin_g = weights.shape[1]
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    wg = weights.reshape(g, cout // g, cin_g, kh, kw)
    acc = np.zeros((g, cout // g, n * oh * ow), dtype=np.int64)
    for dy in range(kh):
        for dx in range(kw):
            tap = padded[:, :, dy : dy + sh * (oh - 1) + 1 : sh, dx : dx + sw * (ow - 1) + 1 : sw]
            # (n, cin, oh, ow) -> (g, cin_g, n*oh*ow); exact in int64
            tap = tap.reshape(n, g, cin_g, oh * ow).transpose(1, 2, 0, 3).reshape(g, cin_g, -1)
            if cin_g == 1:
                acc += wg[:, :, 0, dy, dx][:, :, None] * tap
            else:
                acc += np.matmul(wg[:, :, :, dy, dx], tap)
    acc = acc.reshape(cout, n, oh, ow).transpose(1, 0, 2, 3)
    acc = acc + np.asarray(op.bias, dtype=np.int64)[None, :, None, None]
    shifts = np.asarray(op.shift, dtype=np.int64)
    y = np.empty_like(acc)
    for shift in np.unique(shifts):  # channels sharing a shift requantise together
        channels = shifts == shift
        y[:, channels] = requantize(acc[:, channels], int(shift), out_t.fmt, op.act)
    return y


def residual_add(a: np.ndarray, b: np.ndarray, op: po2.ResidualAddOp) -> np.ndarray:
    fa, fb = _fmt(op.lhs).frac, _fmt(op.rhs).frac
    out = _fmt(op.output)
    common = max(fa, fb)
    total = a * (1 << (common - fa)) + b * (1 << (common - fb))
    return requantize(total, common - out.frac, out, op.act)


def requant(x: np.ndarray, op: po2.RequantOp) -> np.ndarray:
    return requantize(x, _fmt(op.input).frac - _fmt(op.output).frac, _fmt(op.output), op.act)


def avgpool(x: np.ndarray, op: po2.AvgPoolOp) -> np.ndarray:
    total = x.sum(axis=(2, 3), keepdims=True)
    shift = op.shift + _fmt(op.input).frac - _fmt(op.output).frac
    return requantize(total * op.multiplier, shift, _fmt(op.output), "none")


def maxpool(x: np.ndarray, op: po2.MaxPool2dOp) -> np.ndarray:
    return maxpool2d(x, op.kernel, op.stride, op.padding, op.output.type.dims[1:],
                     _fmt(op.input))


def windowed_avgpool(x: np.ndarray, op: po2.AvgPool2dOp) -> np.ndarray:
    shift = op.shift + _fmt(op.input).frac - _fmt(op.output).frac
    return semantics.avgpool2d(x, op.kernel, op.stride, op.padding, op.output.type.dims[1:],
                               shift, _fmt(op.output))


def leaky(x: np.ndarray, op: po2.LeakyReluOp) -> np.ndarray:
    return leaky_relu(x, _fmt(op.input).frac - _fmt(op.output).frac, op.slope_shift,
                      _fmt(op.output))


def hardtanh(x: np.ndarray, op: po2.ClampOp) -> np.ndarray:
    return clamp(x, _fmt(op.input).frac - _fmt(op.output).frac, op.lo, op.hi)
def concat(a: np.ndarray, b: np.ndarray, op: po2.ConcatOp) -> np.ndarray:
    """Each operand requantised into the result format, then joined along channels."""
    out = _fmt(op.output)
    return np.concatenate([requantize(a, _fmt(op.lhs).frac - out.frac, out),
                           requantize(b, _fmt(op.rhs).frac - out.frac, out)], axis=1)


def npu_linear(x: np.ndarray, op: po2.NpuLinearOp, weights=None, bias=None) -> np.ndarray:
    w = op.weight_matrix if weights is None else np.asarray(weights, dtype=np.int64)
    b = np.asarray(op.bias if bias is None else bias, dtype=np.int64)
    return x @ w.T + b[None, :]


def _fmt(value: SSAValue) -> Format:
    assert isinstance(value.type, po2.ActType)
    return value.type.fmt


# Every intermediate value must stay below this magnitude: int64 holds 2^63 - 1, and the
# bounds below are computed in floating point, so a factor of two is kept as a margin.
INT64_SAFE = float(1 << 62)


def _act_bound(value: SSAValue, where: str) -> float:
    """The largest magnitude a value of activation type can hold (it is saturated to it)."""
    fmt = value.type.fmt
    if fmt.bits > 64 or (fmt.bits == 64 and not fmt.signed):
        raise GoldenError(f"{where}: format {fmt} does not fit int64, which the golden model computes in")
    return float(max(abs(fmt.lo), abs(fmt.hi)))


def _shifted_bound(bound: float, shift: int) -> float:
    """The largest intermediate of round_shift(v, shift) for |v| <= bound."""
    if shift > 0:
        return bound + 2.0 ** (shift - 1)
    return bound * 2.0 ** (-shift)


def check_int64(module: ModuleOp | FuncOp, npu_weights=None, npu_bias=None) -> None:
    """
    Refuse, before computing anything, a network whose exact arithmetic could leave int64
    (IR that verifies may still ask for it: a requantisation to a 64-bit type, a shift of
    60, a weight exponent of 70): the golden model would wrap silently. The bound of each
    op follows from its operand types (values are saturated to their formats) and its
    constants. Raises GoldenError naming the layer.
    """
    func = module if isinstance(module, FuncOp) else find_network(module)
    for op in func.body.block.ops:
        where = f"layer '{op.layer}'" if isinstance(op, po2.LayerOp) else f"'{op.name}'"
        for result in op.results:
            if isinstance(result.type, po2.ActType):
                _act_bound(result, where)
        match op:
            case po2.Conv2dOp():
                x_max = _act_bound(op.input, where)
                codes = np.abs(np.asarray(op.weight_codes, dtype=np.float64))
                mags = np.where(codes == 0, 0.0, np.exp2(np.maximum(codes - 1, 0)))
                w_sum = mags.reshape(mags.shape[0], -1).sum(axis=1)
                bias = np.abs(np.asarray(op.bias, dtype=np.float64))
                shifts = op.shift
                worst = max([float(mags.max(initial=0.0))] + [
                    _shifted_bound(x_max * w + b, int(r)) for w, b, r in zip(w_sum, bias, shifts)
                ])
            case po2.ResidualAddOp():
                fa, fb, fo = _fmt(op.lhs).frac, _fmt(op.rhs).frac, _fmt(op.output).frac
                common = max(fa, fb)
                total = (_act_bound(op.lhs, where) * 2.0 ** (common - fa)
                         + _act_bound(op.rhs, where) * 2.0 ** (common - fb))
                worst = _shifted_bound(total, common - fo)
            case po2.ConcatOp():
                fo = _fmt(op.output).frac
                worst = max(_shifted_bound(_act_bound(v, where), _fmt(v).frac - fo)
                            for v in (op.lhs, op.rhs))
            case po2.RequantOp():
                worst = _shifted_bound(_act_bound(op.input, where),
                                       _fmt(op.input).frac - _fmt(op.output).frac)
            case po2.AvgPoolOp():
                _, h, w = op.input.type.dims
                total = h * w * _act_bound(op.input, where) * abs(op.multiplier)
                worst = _shifted_bound(total, op.shift + _fmt(op.input).frac
                                       - _fmt(op.output).frac)
            case po2.MaxPool2dOp():
                worst = _act_bound(op.input, where)
            case po2.AvgPool2dOp():
                kh, kw = op.kernel
                total = kh * kw * _act_bound(op.input, where) * abs(op.multiplier)
                worst = _shifted_bound(total, op.shift + _fmt(op.input).frac
                                       - _fmt(op.output).frac)
            case po2.LeakyReluOp() | po2.ClampOp():
                worst = _shifted_bound(_act_bound(op.input, where), _fmt(op.input).frac
                                       - _fmt(op.output).frac
                                       + getattr(op, "slope_shift", 0))
            case po2.NpuLinearOp():
                k = op.weight_matrix.shape[1]
                w_max = 2.0 ** (op.weight_bits - 1)
                b_max = 2.0 ** (op.bias_bits - 1)
                if npu_weights is not None:
                    w_max = max(w_max, float(np.abs(np.asarray(npu_weights, dtype=np.float64)).max(initial=0)))
                if npu_bias is not None:
                    b_max = max(b_max, float(np.abs(np.asarray(npu_bias, dtype=np.float64)).max(initial=0)))
                worst = k * _act_bound(op.input, where) * w_max + b_max
            case _:
                continue
        if not worst < INT64_SAFE:
            raise GoldenError(
                f"{where}: its exact arithmetic reaches about 2^{np.log2(worst):.0f}, beyond "
                "the int64 the golden model computes in (refused rather than wrapped)"
            )


def run_int(
    module: ModuleOp,
    x_int: np.ndarray,
    npu_weights: np.ndarray | None = None,
    npu_bias: np.ndarray | None = None,
    capture: Callable[[Operation, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Run the network on integer images (N, C, H, W); returns the integer logits."""
    func = find_network(module)
    in_t = input_type(module)
    x_int = np.asarray(x_int, dtype=np.int64)
    if x_int.ndim != 4 or x_int.shape[1:] != in_t.dims:
        raise GoldenError(f"inputs have shape {list(x_int.shape)}, the network takes Nx{'x'.join(map(str, in_t.dims))}")
    check_int64(module, npu_weights, npu_bias)
    fmt = in_t.fmt
    if x_int.min(initial=fmt.lo) < fmt.lo or x_int.max(initial=fmt.hi) > fmt.hi:
        raise GoldenError(f"integer inputs fall outside the input format {fmt}")
    values: dict[SSAValue, np.ndarray] = {func.args[0]: x_int}
    result = None
    for op in func.body.block.ops:
        args = [values[o] for o in op.operands]
        match op:
            case po2.Conv2dOp():
                out = conv2d(args[0], op)
            case po2.ResidualAddOp():
                out = residual_add(args[0], args[1], op)
            case po2.RequantOp():
                out = requant(args[0], op)
            case po2.AvgPoolOp():
                out = avgpool(args[0], op)
            case po2.FlattenOp():
                out = args[0].reshape(args[0].shape[0], -1)
            case po2.MaxPool2dOp():
                out = maxpool(args[0], op)
            case po2.AvgPool2dOp():
                out = windowed_avgpool(args[0], op)
            case po2.LeakyReluOp():
                out = leaky(args[0], op)
            case po2.ClampOp():
                out = hardtanh(args[0], op)
            case po2.ConcatOp():
                out = concat(args[0], args[1], op)
            case po2.SelectChannelsOp():
                out = args[0][:, list(op.channels)]
            case po2.NpuLinearOp():
                out = npu_linear(args[0], op, npu_weights, npu_bias)
            case ReturnOp():
                result = args[0]
                break
            case _:
                layer = op.properties.get("layer")
                raise GoldenError(
                    f"the golden model runs layer-level po2 IR; '{op.name}'"
                    f"{f' ({layer})' if layer else ''} is not a layer-level op"
                )
        if capture is not None:
            capture(op, out)
        values[op.results[0]] = out
    if result is None:
        raise GoldenError("the network has no func.return")
    return result


def run(
    module: ModuleOp,
    x_float: np.ndarray,
    npu_weights: np.ndarray | None = None,
    npu_bias: np.ndarray | None = None,
) -> GoldenResult:
    """Quantise float images by the network's input format, run, and classify."""
    in_t = input_type(module)
    x_int = quantize_input(x_float, in_t.fmt)
    logits = run_int(module, x_int, npu_weights, npu_bias)
    ret_t = find_network(module).function_type.outputs.data[0]
    frac = ret_t.fmt.frac if isinstance(ret_t, po2.ActType) else 0
    return GoldenResult(logits, argmax_lowest(logits), frac)
