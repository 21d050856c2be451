"""
An xDSL interpreter for the po2 dialect, both levels, bit-exact with docs/semantics.md.

Why: it is the rung of the verification ladder between the numpy golden model and the RTL.
It executes the IR itself, so it checks what the passes produced, not what they were meant
to produce: a po2-unroll, po2-canonicalize or po2-infer-widths bug shows up as a mismatch
between interpreting the layer-level IR and interpreting the unrolled IR.

Values are numpy int64 arrays with a leading batch axis, so one run handles a whole batch:

* an activation tensor `!po2.act<CxHxW, ...>` is an (N, C, H, W) array, a vector (N, K);
* inside a `po2.unrolled_conv2d`, a scalar value is an (N, OH, OW) array: its value at
  every output position of every image. The region is executed once per op run, with each
  block argument bound to the array of its window element (zero where the window hangs over
  the padding), and the scalar ops act elementwise. Unrolled IR thus runs at numpy speed.

Every rule of arithmetic (rounding, saturation, clamps, pooling constants, weight decoding)
is a call into `hashiflex.golden.semantics`; nothing here re-implements one. Each scalar op
checks that its results fit its declared type and each layer op that its results fit its
format: a cheap check that the widths the passes chose are really sufficient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import IntegerType, ModuleOp
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.interpreters.func import FuncFunctions
from xdsl.ir import Operation

from hashiflex.dialects import po2
from hashiflex.golden import semantics
from hashiflex.golden.semantics import (
    decode_weights,
    requantize,
    round_shift,
    saturate,
)


# ---------------------------------------------------------------------------
# Helpers (named, so that each is tested once)
# ---------------------------------------------------------------------------


def check_fits(op: Operation, value: np.ndarray, lo: int, hi: int, what: str) -> np.ndarray:
    """Fail loudly when a computed value leaves the range its type or format declares."""
    if value.size and (value.min() < lo or value.max() > hi):
        layer = op.properties.get("layer")
        where = f" '{layer.data}'" if layer is not None else ""
        raise AssertionError(
            f"{op.name}{where}: {what} takes values in [{value.min()}, {value.max()}], "
            f"outside its declared range [{lo}, {hi}]: the IR's widths are wrong"
        )
    return value


def _check_scalar(op: Operation, value: Any) -> np.ndarray:
    # Ops on 0-d arrays (constants) give numpy or Python scalars: keep values int64 arrays.
    value = np.asarray(value, dtype=np.int64)
    typ = op.results[0].type
    assert isinstance(typ, IntegerType)
    lo, hi = po2.int_type_range(typ)
    return check_fits(op, value, lo, hi, f"result of type {typ}")


def _check_act(op: Operation, value: np.ndarray) -> np.ndarray:
    typ = op.results[0].type
    assert isinstance(typ, po2.ActType)
    return check_fits(op, value, typ.fmt.lo, typ.fmt.hi, f"result of format {typ.fmt}")


def pad_input(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Zero-pad (N, C, H, W) by (top, left, bottom, right)."""
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def window_views(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads, out_hw
) -> np.ndarray:
    """
    The conv windows of (N, C, H, W) as (N, C, KH, KW, OH, OW): element [n, c, kh, kw, oy, ox]
    is x[n, c, oy*sh - top + kh, ox*sw - left + kw], zero outside the image.
    """
    xp = pad_input(x, pads)
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    n, c = x.shape[:2]
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
    return cols


def requantize_channels(acc: np.ndarray, shifts, fmt, act: str) -> np.ndarray:
    """Requantise (N, C, ...) with one shift per channel (grouped by equal shifts)."""
    out = np.empty_like(acc)
    shifts = np.asarray(shifts)
    for shift in np.unique(shifts):
        sel = shifts == shift
        out[:, sel] = requantize(acc[:, sel], int(shift), fmt, act)
    return out


def conv2d_accumulate(
    x: np.ndarray, weights: np.ndarray, bias, kernel, stride, pads, groups: int, out_hw
) -> np.ndarray:
    """The exact accumulators (N, Cout, OH, OW) of a grouped conv with integer weights."""
    n, cin = x.shape[:2]
    cout = weights.shape[0]
    cols = window_views(x, kernel, stride, pads, out_hw)  # (N, Cin, KH, KW, OH, OW)
    oh, ow = out_hw
    cols = cols.reshape(n, groups, (cin // groups) * kernel[0] * kernel[1], oh * ow)
    w = weights.reshape(groups, cout // groups, -1)  # (G, Cout_g, Cin_g*KH*KW)
    acc = np.matmul(w[None], cols)  # (N, G, Cout_g, OH*OW), exact in int64
    acc = acc.reshape(n, cout, oh, ow)
    return acc + np.asarray(bias, dtype=np.int64)[None, :, None, None]


# ---------------------------------------------------------------------------
# The interpreter functions
# ---------------------------------------------------------------------------


@register_impls
class Po2Functions(InterpreterFunctions):
    # -- layer level -------------------------------------------------------

    @impl(po2.Conv2dOp)
    def run_conv2d(self, interpreter: Interpreter, op: po2.Conv2dOp, args: PythonValues):
        out_t = op.output.type
        assert isinstance(out_t, po2.ActType)
        acc = conv2d_accumulate(
            args[0],
            decode_weights(op.weight_codes),
            op.bias,
            op.kernel,
            op.stride,
            op.padding,
            op.groups,
            out_t.dims[1:],
        )
        y = requantize_channels(acc, op.shift, out_t.fmt, op.act)
        return (_check_act(op, y),)

    @impl(po2.ResidualAddOp)
    def run_residual_add(self, interpreter: Interpreter, op: po2.ResidualAddOp, args: PythonValues):
        a_t, b_t, y_t = op.lhs.type, op.rhs.type, op.output.type
        assert isinstance(a_t, po2.ActType) and isinstance(b_t, po2.ActType)
        assert isinstance(y_t, po2.ActType)
        frac = max(a_t.fmt.frac, b_t.fmt.frac)
        # Alignment is a left shift (round_shift by a non-positive amount is exact).
        s = round_shift(args[0], a_t.fmt.frac - frac) + round_shift(args[1], b_t.fmt.frac - frac)
        y = requantize(s, frac - y_t.fmt.frac, y_t.fmt, op.act)
        return (_check_act(op, y),)

    @impl(po2.RequantOp)
    def run_requant(self, interpreter: Interpreter, op: po2.RequantOp, args: PythonValues):
        x_t, y_t = op.input.type, op.output.type
        assert isinstance(x_t, po2.ActType) and isinstance(y_t, po2.ActType)
        y = requantize(args[0], x_t.fmt.frac - y_t.fmt.frac, y_t.fmt, op.act)
        return (_check_act(op, y),)

    @impl(po2.AvgPoolOp)
    def run_avgpool(self, interpreter: Interpreter, op: po2.AvgPoolOp, args: PythonValues):
        x_t, y_t = op.input.type, op.output.type
        assert isinstance(x_t, po2.ActType) and isinstance(y_t, po2.ActType)
        s = args[0].sum(axis=(2, 3), keepdims=True)
        mult, shift = op.multiplier, op.shift
        y = requantize(s * mult, shift + x_t.fmt.frac - y_t.fmt.frac, y_t.fmt, "none")
        return (_check_act(op, y),)

    @impl(po2.MaxPool2dOp)
    def run_maxpool2d(self, interpreter: Interpreter, op: po2.MaxPool2dOp, args: PythonValues):
        x_t, y_t = op.input.type, op.output.type
        assert isinstance(x_t, po2.ActType) and isinstance(y_t, po2.ActType)
        y = semantics.maxpool2d(args[0], op.kernel, op.stride, op.padding, y_t.dims[1:], x_t.fmt)
        return (_check_act(op, y),)

    @impl(po2.AvgPool2dOp)
    def run_avgpool2d(self, interpreter: Interpreter, op: po2.AvgPool2dOp, args: PythonValues):
        x_t, y_t = op.input.type, op.output.type
        assert isinstance(x_t, po2.ActType) and isinstance(y_t, po2.ActType)
        shift = op.shift + x_t.fmt.frac - y_t.fmt.frac
        y = semantics.avgpool2d(args[0], op.kernel, op.stride, op.padding, y_t.dims[1:],
                                shift, y_t.fmt)
        return (_check_act(op, y),)

    @impl(po2.LeakyReluOp)
    def run_leaky_relu(self, interpreter: Interpreter, op: po2.LeakyReluOp, args: PythonValues):
        x_t, y_t = op.input.type, op.output.type
        assert isinstance(x_t, po2.ActType) and isinstance(y_t, po2.ActType)
        y = semantics.leaky_relu(args[0], x_t.fmt.frac - y_t.fmt.frac, op.slope_shift, y_t.fmt)
        return (_check_act(op, y),)

    @impl(po2.ClampOp)
    def run_clamp(self, interpreter: Interpreter, op: po2.ClampOp, args: PythonValues):
        x_t, y_t = op.input.type, op.output.type
        assert isinstance(x_t, po2.ActType) and isinstance(y_t, po2.ActType)
        y = semantics.clamp(args[0], x_t.fmt.frac - y_t.fmt.frac, op.lo, op.hi)
        return (_check_act(op, y),)

    @impl(po2.FlattenOp)
    def run_flatten(self, interpreter: Interpreter, op: po2.FlattenOp, args: PythonValues):
        x = args[0]
        return (x.reshape(x.shape[0], -1),)

    @impl(po2.ConcatOp)
    def run_concat(self, interpreter: Interpreter, op: po2.ConcatOp, args: PythonValues):
        y_t = op.output.type
        assert isinstance(y_t, po2.ActType)
        parts = []
        for x, v in zip(args, (op.lhs, op.rhs)):
            assert isinstance(v.type, po2.ActType)
            parts.append(requantize(x, v.type.fmt.frac - y_t.fmt.frac, y_t.fmt, "none"))
        return (_check_act(op, np.concatenate(parts, axis=1)),)

    @impl(po2.SelectChannelsOp)
    def run_select_channels(self, interpreter: Interpreter, op: po2.SelectChannelsOp,
                            args: PythonValues):
        return (args[0][:, list(op.channels)],)

    @impl(po2.NpuLinearOp)
    def run_npu_linear(self, interpreter: Interpreter, op: po2.NpuLinearOp, args: PythonValues):
        weights = op.weight_matrix
        bias = np.asarray(op.bias, dtype=np.int64)
        logits = args[0] @ weights.T + bias[None, :]
        return (_check_act(op, logits),)

    # -- unrolled level ----------------------------------------------------

    @impl(po2.UnrolledConv2dOp)
    def run_unrolled_conv2d(
        self, interpreter: Interpreter, op: po2.UnrolledConv2dOp, args: PythonValues
    ):
        out_t = op.output.type
        assert isinstance(out_t, po2.ActType)
        x = args[0]
        n, cin = x.shape[:2]
        (kh, kw), (oh, ow) = op.kernel, out_t.dims[1:]
        cols = window_views(x, op.kernel, op.stride, op.padding, (oh, ow))
        # Block argument order is (input channel, kernel row, kernel column).
        window = [cols[:, c, i, j] for c in range(cin) for i in range(kh) for j in range(kw)]
        outputs = interpreter.run_ssacfg_region(op.body, tuple(window), op.layer)
        y = np.stack([np.broadcast_to(v, (n, oh, ow)) for v in outputs], axis=1)
        return (_check_act(op, y.astype(np.int64)),)

    @impl(po2.ConstOp)
    def run_const(self, interpreter: Interpreter, op: po2.ConstOp, args: PythonValues):
        # A 0-d array broadcasts against the (N, OH, OW) values.
        return (_check_scalar(op, np.array(op.value, dtype=np.int64)),)

    @impl(po2.ShlOp)
    def run_shl(self, interpreter: Interpreter, op: po2.ShlOp, args: PythonValues):
        return (_check_scalar(op, round_shift(args[0], -op.amount)),)

    @impl(po2.AddOp)
    def run_add(self, interpreter: Interpreter, op: po2.AddOp, args: PythonValues):
        return (_check_scalar(op, args[0] + args[1]),)

    @impl(po2.SubOp)
    def run_sub(self, interpreter: Interpreter, op: po2.SubOp, args: PythonValues):
        return (_check_scalar(op, args[0] - args[1]),)

    @impl(po2.NegOp)
    def run_neg(self, interpreter: Interpreter, op: po2.NegOp, args: PythonValues):
        return (_check_scalar(op, -args[0]),)

    @impl(po2.SumOp)
    def run_sum(self, interpreter: Interpreter, op: po2.SumOp, args: PythonValues):
        total = args[0]
        for value in args[1:]:
            total = total + value
        return (_check_scalar(op, total),)

    @impl(po2.RescaleOp)
    def run_rescale(self, interpreter: Interpreter, op: po2.RescaleOp, args: PythonValues):
        y = saturate(round_shift(args[0], op.shift), op.lo, op.hi)
        return (_check_scalar(op, y),)

    @impl_terminator(po2.YieldOp)
    def run_yield(
        self, interpreter: Interpreter, op: po2.YieldOp, args: PythonValues
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()


def make_interpreter(module: ModuleOp) -> Interpreter:
    """An interpreter for `module` knowing func and po2."""
    interpreter = Interpreter(module)
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(Po2Functions())
    return interpreter


def check_int64_range(fn) -> None:
    """
    Values are int64: refuse (ValueError) a function whose layers could leave it (the golden
    model's static bound, hashiflex.golden.model.check_int64) or whose scalar ops are typed
    wider than 63 bits, instead of wrapping silently.
    """
    from hashiflex.golden.model import GoldenError, check_int64

    try:
        check_int64(fn)
    except GoldenError as error:
        raise ValueError(str(error)) from None
    for op in fn.walk():
        for result in op.results:
            if isinstance(result.type, IntegerType) and result.type.width.data > 63:
                raise ValueError(
                    f"'{op.name}' yields {result.type}, wider than the int64 the interpreter "
                    "computes in"
                )


def run_po2(module: ModuleOp, x_int: np.ndarray, func_name: str | None = None) -> np.ndarray:
    """
    Run the po2 function of `module` on a batch of integer images (N, C, H, W) in the input
    format; returns its first result (the logits (N, classes) for a whole network), int64.
    The batch is processed at once: every value carries the batch axis.
    """
    fn = po2.network_func(module, func_name)
    check_int64_range(fn)
    x = np.asarray(x_int, dtype=np.int64)
    in_t = fn.function_type.inputs.data[0]
    if isinstance(in_t, po2.ActType):
        if x.shape[1:] != in_t.dims:
            raise ValueError(f"input of shape {x.shape[1:]} but @{fn.sym_name.data} takes {in_t}")
        check_fits(fn, x, in_t.fmt.lo, in_t.fmt.hi, f"the input (format {in_t.fmt})")
    results: Any = make_interpreter(module).call_op(fn, (x,))
    return np.asarray(results[0], dtype=np.int64)
