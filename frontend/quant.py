"""Po2 quantisation of float PyTorch CNNs: trace, fold, calibrate, fake-quantise, export.

This is the front half of the compiler. It turns a trained float ``nn.Module`` into a
**fake-quant torch model** (:class:`Po2FakeQuantModel`): one ``Fq*`` op per po2 layer op of
docs/semantics.md, computing in float with straight-through gradients (for QAT), and, once
calibrated, exporting itself as **layer-level po2 IR**: each ``Fq*`` op's ``to_po2`` builds
its po2 op (frontend/importer.py assembles the func). The integers of the IR (weight codes,
biases, formats, bounds) come from the same functions the fake-quant forward uses
(``Fq*.quantized_params``, ``FqClamp.int_bounds``), so the two cannot drift apart; evaluated
in float64, the fake-quant model equals the golden model on the exported IR exactly:
``fake_quant(x) * 2^logits_frac == golden.run_int(module, x_int)`` bit for bit
(:meth:`QuantizedModel.run_int`).

The po2 ops and their numbers are defined in dialects/po2.py and docs/semantics.md; a
``torch.cat`` of n tensors becomes a chain of n - 1 binary ``po2.concat`` ops, and
``torch.chunk`` / ``torch.split`` pieces and channel shuffles become ``po2.select_channels``.

Quantisation rules (all choices documented here, numbers in docs/semantics.md)
-----------------------------------------------------------------------------
* **Supported torch**: Conv2d (no dilation, zero padding, any groups; a preceding
  ``nn.ZeroPad2d`` / constant-0 ``F.pad`` is merged into the conv's padding), BatchNorm2d
  directly after a conv (folded: ``w' = w*g``, ``b' = beta + (b - mu)*g``,
  ``g = gamma/sqrt(var + eps)``), ReLU / ReLU6 (modules, ``F.relu``, ``torch.relu``,
  ``F.relu6``, ``F.hardtanh(0, 6)``, ``clamp(0)``, ``clamp(0, 6)``), residual ``+``,
  global average pooling (``AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)``,
  ``x.mean((2, 3))``), flatten (``nn.Flatten``, ``torch.flatten(x, 1)``, ``view`` /
  ``reshape`` to ``(N, -1)``), Dropout / Identity (dropped), ``torch.cat`` along channels,
  ``torch.chunk`` / ``torch.split`` along channels, channel shuffle (``view`` to
  ``(N, g, C/g, H, W)``, ``transpose(1, 2)``, ``view`` / ``reshape`` / ``flatten(1, 2)`` back
  to 4-D; recognised from the shapes of a shape-propagation pass) and one final Linear.
* **Activation fusion**: a ReLU/ReLU6 whose producer (conv, add, requant) has no other user
  becomes that op's ``act``; otherwise it becomes a ``Requant``.
* **Weights** (per output channel ``o``, computed in float64): the log-domain rounding
  ``e(v) = floor(log2 v + 1/2)`` (exactly: ``frexp`` mantissa ``>= fl64(sqrt(1/2))`` rounds
  up); ``emax = e(max|w[o]|)``, ``exp_base[o] = emax - (2^exp_bits - 1)``; a weight with
  ``|w| >= 2^(exp_base - 1)`` gets ``|c| = max(e(|w|), exp_base) - exp_base + 1`` (so values
  just below the smallest level round up to it), smaller ones (and pruned ones) are 0.
  ``prune=p`` zeroes the ``floor(p * n)`` smallest-magnitude weights of each conv (a fixed
  mask, decided on the BN-folded float weights and kept through QAT). An all-zero channel
  has ``exp_base = 0`` and all codes 0.
* **PTQ rounding**: ``quantize_ptq`` first moves each conv's float weights onto the grid
  above by adaptive rounding (``ptq="adaround"``, frontend/ptq.py: exact Po2 values, a fixed
  point of the rule) and corrects its bias, then calibrates on that rounded network;
  ``ptq="nearest"`` applies the rule to the float weights directly.
* **Conv bias**: ``floor(b * 2^(Fx - exp_base[o]) + 1/2)`` (int64, no saturation).
* **Activations**: per tensor ``A(act_bits, signed, frac)``. Unsigned when the value is
  provably non-negative (after ReLU/ReLU6, an add of unsigned operands, a pool/flatten of
  an unsigned tensor, the input when all calibration inputs are ``>= 0``); signed otherwise.
  ``frac`` is the largest integer with ``max * 2^frac <= hi`` and ``min * 2^frac >= lo``
  over the calibration data, observed on the BN-folded *float* model (a tensor that is
  always 0 gets frac 0). Fracs are frozen after calibration (QAT keeps them).
* **NPU linear**: ``weight_frac`` is the largest ``f`` with
  ``floor(max|W| * 2^f + 1/2) <= 2^(weight_bits-1) - 1``; ``W_int = sat(floor(W*2^f + 1/2))``;
  ``bias_int = sat_bias_bits(floor(b * 2^(Fx + f) + 1/2))``.
* ``exp_base`` and ``weight_frac`` are functions of the current float weights, recomputed
  on every forward, so QAT may move them; the exported po2 IR uses the same functions.

Fake-quant numerics: every rounding is ``floor(v * 2^F + 1/2)`` on the exact value, then
saturation, then ``* 2^-F``. In float64 all intermediate values are dyadic rationals far
below 2^53 ulps, so conv, add, pool and linear are exact and equal the integer semantics;
in float32 (training) they are close, which is all STE needs.
"""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from xdsl.ir import Operation, SSAValue

from hashiflex.dialects import po2
from hashiflex.golden.semantics import (
    Format,
    avgpool_constants,
    clamp_bounds,
    real_bound,
    npu_weight_frac,
    quantize_input,
    quantize_npu_bias,
    quantize_npu_weights,
    type_range,
)

__all__ = [
    "UnsupportedModelError",
    "ModelShapeError",
    "QuantOptions",
    "Po2FakeQuantModel",
    "QuantizedModel",
    "build_fake_quant",
    "calibrate",
    "quantize_ptq",
    "quantize_qat",
    "po2_weight_codes",
    "po2_weight_values",
    "fold_batchnorm",
]

SUPPORTED_OPS = (
    "Conv2d (no dilation, zero padding, any groups), nn.ZeroPad2d / F.pad(constant 0) before "
    "a conv, BatchNorm2d after a conv, ReLU / ReLU6 / F.relu / torch.relu / F.relu6 / "
    "F.hardtanh(0, 6) / clamp(0[, 6]), residual add (+, torch.add, operator.add), "
    "AdaptiveAvgPool2d(1) / F.adaptive_avg_pool2d(x, 1) / x.mean((2, 3)), MaxPool2d / "
    "F.max_pool2d, AvgPool2d / F.avg_pool2d (count_include_pad), LeakyReLU (Po2 slope), "
    "Hardtanh(min, max), Flatten / torch.flatten(x, 1) / view / reshape to (N, -1), "
    "Dropout / Identity, torch.cat / torch.chunk / torch.split along channels (dim 1), "
    "channel shuffle (view to (N, g, C/g, H, W), transpose(1, 2), view back to (N, C, H, W)), "
    "a final Linear (or a final 1x1 Conv2d + global average pooling)"
)


class UnsupportedModelError(ValueError):
    """The model uses an op (or a form of it) that the Po2 flow cannot compile."""


class ModelShapeError(ValueError):
    """Shapes do not chain (or the input is not N x C x H x W)."""


@dataclass(frozen=True)
class QuantOptions:
    """Knobs of the quantiser (see the module docstring for the rules they steer)."""

    act_bits: int = 8
    exp_bits: int = 3
    weight_bits: int = 8  # NPU classifier weights
    bias_bits: int = 24  # NPU classifier bias
    prune: float = 0.0
    input_signed: bool | None = None  # None: unsigned iff all calibration inputs >= 0
    ptq: str = "adaround"  # conv weight rounding of PTQ: "adaround" or "nearest" (ptq.py)


# ----------------------------------------------------------------------------------------
# Exact float64 helpers for powers of two and Po2 weights
# ----------------------------------------------------------------------------------------

_SQRT_HALF = math.sqrt(0.5)


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """2^e for an int64 tensor, exactly, as float64 (built from the IEEE bit pattern)."""
    e = e.to(torch.int64).clamp(-1022, 1023)
    return torch.bitwise_left_shift(e + 1023, 52).view(torch.float64)


def _log2_round(v: torch.Tensor) -> torch.Tensor:
    """floor(log2 v + 1/2) for float64 v > 0, exactly: frexp, then compare the mantissa."""
    mant, expo = torch.frexp(v)
    return expo.to(torch.int64) - 1 + (mant >= _SQRT_HALF).to(torch.int64)


def po2_weight_codes(
    weight: torch.Tensor, exp_bits: int = 3, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Po2 codes (int64, weight's shape) and exp_base (int64 [O]) of a conv weight."""
    with torch.no_grad():
        mag = weight.detach().to(torch.float64).abs()
        if mask is not None:
            mag = mag * mask.to(torch.float64)
        flat = mag.reshape(mag.shape[0], -1)
        amax = flat.amax(dim=1)
        nonzero = amax > 0
        emax = _log2_round(torch.where(nonzero, amax, torch.ones_like(amax)))
        exp_base = torch.where(nonzero, emax - ((1 << exp_bits) - 1), torch.zeros_like(emax))
        e = torch.maximum(_log2_round(torch.where(flat > 0, flat, torch.ones_like(flat))),
                          exp_base[:, None])
        keep = (flat > 0) & (flat >= _pow2(exp_base - 1)[:, None])
        mags = torch.where(keep, e - exp_base[:, None] + 1, torch.zeros_like(e))
        sign = torch.sign(weight.detach()).to(torch.int64).reshape(flat.shape)
        return (sign * mags).reshape(weight.shape), exp_base


def po2_weight_values(codes: torch.Tensor, exp_base: torch.Tensor) -> torch.Tensor:
    """The float64 values sign(c) * 2^(exp_base[o] + |c| - 1) of Po2 codes (0 for c == 0)."""
    shape = [-1] + [1] * (codes.dim() - 1)
    mags = codes.abs()
    vals = _pow2(exp_base.reshape(shape) + mags - 1)
    return torch.where(mags > 0, torch.sign(codes).to(torch.float64) * vals,
                       torch.zeros_like(vals))


def _round_half_up_at(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """floor(v * scale + 1/2) in float64 (scale a power-of-two tensor)."""
    return torch.floor(v.to(torch.float64) * scale + 0.5)


def _choose_frac(lo_obs: float, hi_obs: float, bits: int, signed: bool) -> int:
    """The largest frac with hi_obs * 2^f <= hi and lo_obs * 2^f >= lo of the format."""
    lo, hi = type_range(bits, signed)
    if not (math.isfinite(lo_obs) and math.isfinite(hi_obs)):
        raise ValueError("calibration produced non-finite values")
    # negative values of an unsigned tensor are clamped away by its activation
    hi_obs, lo_obs = max(hi_obs, 0.0), min(lo_obs, 0.0) if signed else 0.0
    if hi_obs == 0 and lo_obs == 0:
        return 0

    def covers(f: int) -> bool:
        return math.ldexp(hi_obs, f) <= hi and math.ldexp(lo_obs, f) >= lo

    bound = max(hi_obs / hi, lo_obs / lo if lo < 0 else 0.0)
    f = math.floor(-math.log2(bound))
    while covers(f + 1):
        f += 1
    while not covers(f):
        f -= 1
    return f


# ----------------------------------------------------------------------------------------
# Straight-through autograd functions
# ----------------------------------------------------------------------------------------


class _ActQuant(torch.autograd.Function):
    """saturate(floor(v * 2^F + 1/2), lo, hi) * 2^-F; gradient 1 inside [lo, hi] * 2^-F."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, frac: int, lo: int, hi: int) -> torch.Tensor:
        scale, inv = math.ldexp(1.0, frac), math.ldexp(1.0, -frac)
        q = torch.floor(v * scale + 0.5).clamp_(lo, hi) * inv
        ctx.save_for_backward((v >= lo * inv) & (v <= hi * inv))
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


class _Replace(torch.autograd.Function):
    """Forward the given quantised value, backward the gradient unchanged (STE)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return q.to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def _fake_act(v: torch.Tensor, fmt: Format, act: str) -> torch.Tensor:
    lo, hi = clamp_bounds(fmt, act)
    return _ActQuant.apply(v, fmt.frac, lo, hi)


def _float_act(v: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(v)
    if act == "relu6":
        return F.relu6(v)
    return v


# ----------------------------------------------------------------------------------------
# Fake-quant ops
# ----------------------------------------------------------------------------------------


class FqOp(nn.Module):
    """One po2 op: float mode (calibration) or fake-quant mode, plus its output format."""

    kind = "op"

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...]):
        super().__init__()
        self.op_name = name
        self.inputs = tuple(inputs)
        self.shape = tuple(shape)
        self.act = "none"
        self.fmt: Format | None = None
        self.in_fmts: tuple[Format, ...] = ()
        self.quantize = False
        self.observe = False
        self.obs_lo, self.obs_hi = math.inf, -math.inf

    # the formats travel with state_dict so that a checkpoint restores a calibrated model
    def get_extra_state(self) -> dict[str, Any]:
        as_tuple = lambda f: (f.bits, f.signed, f.frac)  # noqa: E731
        return {
            "fmt": None if self.fmt is None else as_tuple(self.fmt),
            "in_fmts": [as_tuple(f) for f in self.in_fmts],
            "act": self.act,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.fmt = None if state["fmt"] is None else Format(*state["fmt"])
        self.in_fmts = tuple(Format(*f) for f in state["in_fmts"])
        self.act = state["act"]

    def _record(self, v: torch.Tensor) -> torch.Tensor:
        if self.observe:
            self.obs_lo = min(self.obs_lo, float(v.min()))
            self.obs_hi = max(self.obs_hi, float(v.max()))
        return v

    def out_signed(self) -> bool:
        """Signed unless the value is provably non-negative."""
        if self.act in ("relu", "relu6"):
            return False
        return not (self.in_fmts and all(not f.signed for f in self.in_fmts))

    def extra_repr(self) -> str:
        return f"{self.op_name!r}, inputs={self.inputs}, act={self.act}, fmt={self.fmt}"

    def result_type(self) -> po2.ActType:
        return po2.ActType(self.shape, self.fmt)

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        """The layer-level po2 op of this calibrated op, reading `operands` (the values of
        `self.inputs`); its integers come from the same functions as `forward`'s."""
        raise NotImplementedError(f"{type(self).__name__} has no po2 op")


class FqInput(FqOp):
    kind = "input"

    def __init__(self, name: str, shape: tuple[int, ...], signed: bool | None):
        super().__init__(name, (), shape)
        self.signed_option = signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(x)
        return _fake_act(x, self.fmt, "none")


def _grouped_conv_by_taps(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                          stride: tuple[int, int], groups: int) -> torch.Tensor:
    """A grouped conv (input already padded) as a sum over kernel taps.

    torch's float64 CPU conv loops over groups one by one (slow for depthwise); this is the
    same exact sum in a different order, which float64 does not notice (every partial sum
    is a dyadic rational far inside 53 bits).
    """
    n, c, h, wd = x.shape
    o, cin_g, kh, kw = w.shape
    sh, sw = stride
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    xg = x.reshape(n, groups, cin_g, h, wd)
    wg = w.reshape(groups, o // groups, cin_g, kh, kw)
    out = x.new_zeros((n, groups, o // groups, oh, ow))
    for i in range(kh):
        for j in range(kw):
            tap = xg[:, :, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            if cin_g == 1:
                out = out + tap * wg[None, :, :, 0, i, j, None, None]
            else:
                out = out + torch.einsum("ngchw,goc->ngohw", tap, wg[:, :, :, i, j])
    return out.reshape(n, o, oh, ow) + b.reshape(1, -1, 1, 1)


class FqConv2d(FqOp):
    kind = "conv"

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...],
                 weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, int],
                 padding: tuple[int, int, int, int], groups: int, exp_bits: int,
                 prune: float):
        super().__init__(name, inputs, shape)
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.groups = groups
        self.exp_bits = exp_bits
        self.register_buffer("prune_mask", _prune_mask(self.weight, prune), persistent=True)

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state["exp_bits"] = self.exp_bits
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.exp_bits = state["exp_bits"]

    def quantized_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes int64, exp_base int64 [O], bias integers as float64 [O])."""
        codes, exp_base = po2_weight_codes(self.weight, self.exp_bits, self.prune_mask)
        fx_frac = self.in_fmts[0].frac
        bias_int = _round_half_up_at(self.bias.detach(), _pow2(fx_frac - exp_base))
        return codes, exp_base, bias_int

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        top, left, bottom, right = self.padding
        if any(self.padding):
            x = F.pad(x, (left, right, top, bottom))
        if self.groups > 1 and x.dtype == torch.float64:
            return _grouped_conv_by_taps(x, w, b, self.stride, self.groups)
        return F.conv2d(x, w, b, self.stride, 0, 1, self.groups)


    def out_signed(self) -> bool:
        return self.act == "none"  # a conv's sum of signed weights can be negative

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        codes, exp_base, bias_int = self.quantized_params()
        worst = float(bias_int.abs().max()) if bias_int.numel() else 0.0
        if not worst < 2.0 ** 63:
            raise ValueError(f"its bias at the accumulator's scale reaches about "
                             f"2^{math.log2(worst):.0f}, beyond int64 (fewer --exp-bits?)")
        return po2.Conv2dOp(
            self.op_name, operands[0], self.result_type(),
            weights=codes.numpy().astype(np.int8), exp_base=exp_base.tolist(),
            bias=[int(b) for b in bias_int.tolist()], stride=self.stride,
            padding=self.padding, groups=self.groups, act=self.act, exp_bits=self.exp_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            w = self.weight * self.prune_mask if self.prune_mask is not None else self.weight
            return self._record(_float_act(self._conv(x, w, self.bias), self.act))
        codes, exp_base, bias_int = self.quantized_params()
        wq = _Replace.apply(self.weight, po2_weight_values(codes, exp_base))
        if self.prune_mask is not None:
            wq = wq * self.prune_mask  # zero gradient to pruned weights; values already 0
        bq = _Replace.apply(self.bias, bias_int * _pow2(exp_base - self.in_fmts[0].frac))
        return _fake_act(self._conv(x, wq, bq), self.fmt, self.act)


def _prune_mask(weight: torch.Tensor, prune: float) -> torch.Tensor | None:
    """A fixed 0/1 mask zeroing the floor(prune * n) smallest |w| of the layer."""
    if prune <= 0:
        return None
    if not 0 <= prune < 1:
        raise ValueError(f"prune must be in [0, 1), got {prune}")
    flat = weight.detach().abs().flatten()
    count = int(math.floor(prune * flat.numel()))
    mask = torch.ones_like(flat)
    if count:
        mask[torch.argsort(flat, stable=True)[:count]] = 0
    return mask.reshape(weight.shape)


class FqAdd(FqOp):
    kind = "add"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.ResidualAddOp(self.op_name, operands[0], operands[1], self.result_type(),
                                 self.act)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(_float_act(a + b, self.act))
        return _fake_act(a + b, self.fmt, self.act)


class FqRequant(FqOp):
    kind = "requant"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.RequantOp(self.op_name, operands[0], self.result_type(), self.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(_float_act(x, self.act))
        return _fake_act(x, self.fmt, self.act)


class FqAvgPool(FqOp):
    kind = "avgpool"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.AvgPoolOp(self.op_name, operands[0], self.result_type())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(x.mean(dim=(2, 3), keepdim=True))
        mult, shift = avgpool_constants(x.shape[2] * x.shape[3])
        # sum, times the integer constant, times 2^-shift: exact in float64
        s = x.sum(dim=(2, 3), keepdim=True) * float(mult) * math.ldexp(1.0, -shift)
        return _fake_act(s, self.fmt, "none")


def _pad_fill(x: torch.Tensor, padding: tuple[int, int, int, int], value: float) -> torch.Tensor:
    top, left, bottom, right = padding
    return F.pad(x, (left, right, top, bottom), value=value) if any(padding) else x


class FqWindowPool(FqOp):
    """Base of the windowed pooling ops: a KHxKW window, its stride and the padding
    (top, left, bottom, right; ceil_mode included)."""

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...],
                 kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int, int, int]):
        super().__init__(name, inputs, shape)
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)


class FqMaxPool2d(FqWindowPool):
    """Max pooling; padding is -inf (every window holds an image pixel); format unchanged,
    so the quantised input's values pass through exactly."""

    kind = "maxpool"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.MaxPool2dOp(self.op_name, operands[0], self.result_type(),
                               kernel=self.kernel, stride=self.stride, padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(_pad_fill(x, self.padding, -math.inf), self.kernel, self.stride)
        return self._record(y) if not self.quantize else y


class FqAvgPool2d(FqWindowPool):
    """Windowed average (count_include_pad): the exact window sum (a depthwise conv of
    ones, exact in float64) times avgpool_constants(KH*KW), then the output rounding."""

    kind = "avgpool2d"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.AvgPool2dOp(self.op_name, operands[0], self.result_type(),
                               kernel=self.kernel, stride=self.stride, padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = _pad_fill(x, self.padding, 0.0)
        if not self.quantize:
            return self._record(F.avg_pool2d(xp, self.kernel, self.stride))
        c = x.shape[1]
        ones = x.new_ones((c, 1, *self.kernel))
        s = F.conv2d(xp, ones, None, self.stride, 0, 1, c)
        mult, shift = avgpool_constants(self.kernel[0] * self.kernel[1])
        return _fake_act(s * float(mult) * math.ldexp(1.0, -shift), self.fmt, "none")


class FqLeakyRelu(FqOp):
    """LeakyReLU with slope 2^-slope_shift: exact on the grid, then the output rounding."""

    kind = "leaky_relu"

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...],
                 slope_shift: int):
        super().__init__(name, inputs, shape)
        self.slope_shift = slope_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(x, math.ldexp(1.0, -self.slope_shift))
        return self._record(y) if not self.quantize else _fake_act(y, self.fmt, "none")

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.LeakyReluOp(self.op_name, operands[0], self.result_type(), self.slope_shift)


class FqClamp(FqOp):
    """Hardtanh(min, max): round into the output format, clamp to the rounded bounds."""

    kind = "clamp"

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...],
                 min_val: float, max_val: float):
        super().__init__(name, inputs, shape)
        self.min_val, self.max_val = float(min_val), float(max_val)

    def int_bounds(self) -> tuple[int, int]:
        """[lo, hi] on the output grid, inside the format."""
        f = self.fmt
        lo = min(max(real_bound(self.min_val, f.frac), f.lo), f.hi)
        hi = max(min(real_bound(self.max_val, f.frac), f.hi), lo)
        return lo, hi

    def out_signed(self) -> bool:
        return self.min_val < 0 and super().out_signed()

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.ClampOp(self.op_name, operands[0], self.result_type(), *self.int_bounds())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(F.hardtanh(x, self.min_val, self.max_val))
        lo, hi = self.int_bounds()
        return _ActQuant.apply(x, self.fmt.frac, lo, hi)


class FqFlatten(FqOp):
    kind = "flatten"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.FlattenOp(self.op_name, operands[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(x.flatten(1))


class FqConcat(FqOp):
    """Channel concatenation of two tensors, requantised into one output format."""

    kind = "concat"

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.ConcatOp(self.op_name, operands[0], operands[1], self.result_type())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(torch.cat((a, b), dim=1))
        # each operand is on its own grid; rounding at the output frac is requantize
        return _fake_act(torch.cat((a, b), dim=1), self.fmt, "none")


class FqSelect(FqOp):
    """Output channel i = input channel channels[i] (a chunk/split piece, a shuffle)."""

    kind = "select"

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...],
                 channels: Sequence[int]):
        super().__init__(name, inputs, shape)
        self.channels = tuple(int(c) for c in channels)

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state["channels"] = list(self.channels)
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.channels = tuple(state["channels"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(x[:, list(self.channels)])

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        return po2.SelectChannelsOp(self.op_name, operands[0], self.channels)


class FqLinear(FqOp):
    kind = "linear"

    def __init__(self, name: str, inputs: Sequence[str], shape: tuple[int, ...],
                 weight: torch.Tensor, bias: torch.Tensor, weight_bits: int, bias_bits: int):
        super().__init__(name, inputs, shape)
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())
        self.weight_bits = weight_bits
        self.bias_bits = bias_bits

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state.update(weight_bits=self.weight_bits, bias_bits=self.bias_bits)
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.weight_bits, self.bias_bits = state["weight_bits"], state["bias_bits"]

    def quantized_params(self) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(weight integers float64 [N, K], weight_frac, bias integers float64 [N])."""
        with torch.no_grad():
            # golden/semantics.py's NPU rounding rule, shared with hashiflex/finetune.py
            w = self.weight.detach().to(torch.float64).numpy()
            wf = npu_weight_frac(float(np.abs(w).max(initial=0.0)), self.weight_bits)
            w_int = torch.from_numpy(quantize_npu_weights(w, wf, self.weight_bits))
            blo, bhi = type_range(self.bias_bits, True)
            b_int = torch.from_numpy(quantize_npu_bias(
                self.bias.detach().to(torch.float64).numpy(), self.in_fmts[0].frac + wf))
            return w_int, wf, b_int.clamp_(blo, bhi)

    @property
    def logits_frac(self) -> int:
        return self.in_fmts[0].frac + self.quantized_params()[1]

    def to_po2(self, operands: list[SSAValue]) -> Operation:
        w_int, wf, b_int = self.quantized_params()
        return po2.NpuLinearOp(
            self.op_name, operands[0], weights=w_int.numpy().astype(np.int64),
            bias=[int(b) for b in b_int.tolist()], weight_frac=wf,
            weight_bits=self.weight_bits, bias_bits=self.bias_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.quantize:
            return self._record(F.linear(x, self.weight, self.bias))
        w_int, wf, b_int = self.quantized_params()
        wq = _Replace.apply(self.weight, w_int * math.ldexp(1.0, -wf))
        bq = _Replace.apply(self.bias, b_int * math.ldexp(1.0, -(self.in_fmts[0].frac + wf)))
        return F.linear(x, wq, bq)


class Po2FakeQuantModel(nn.Module):
    """The traced, BN-folded model as a list of fake-quant ops run in topological order.

    ``set_quantize(False)`` gives the folded float model (used for calibration and for the
    BN-folding check); ``set_quantize(True)`` (the default after calibration) the fake-quant
    model. In float64 (``.double()``) and eval, its output times ``2^logits_frac`` equals
    the golden model on the exported po2 IR exactly.
    """

    def __init__(self, ops: Sequence[FqOp], options: QuantOptions):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.options = options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {}
        for op in self.ops:
            args = [env[name] for name in op.inputs] if op.inputs else [x]
            env[op.op_name] = op(*args)
        return env[self.ops[-1].op_name]

    def set_quantize(self, on: bool) -> "Po2FakeQuantModel":
        for op in self.ops:
            op.quantize = on
        return self

    @property
    def input_format(self) -> Format:
        return self.ops[0].fmt

    @property
    def logits_frac(self) -> int:
        return self.ops[-1].logits_frac

    def snap_(self) -> "Po2FakeQuantModel":
        """Replace float weights and biases by their quantised values (idempotent rounding).

        The exported po2 IR is unchanged; the parameters then hold exactly what the
        hardware computes, which makes compact checkpoints (bfloat16 holds any Po2 weight
        exactly) and removes any doubt about re-rounding.
        """
        with torch.no_grad():
            for op in self.ops:
                if isinstance(op, FqConv2d):
                    codes, exp_base, bias_int = op.quantized_params()
                    op.weight.copy_(po2_weight_values(codes, exp_base))
                    op.bias.copy_(bias_int * _pow2(exp_base - op.in_fmts[0].frac))
                elif isinstance(op, FqLinear):
                    w_int, wf, b_int = op.quantized_params()
                    op.weight.copy_(w_int * math.ldexp(1.0, -wf))
                    op.bias.copy_(b_int * math.ldexp(1.0, -(op.in_fmts[0].frac + wf)))
        return self


# ----------------------------------------------------------------------------------------
# Tracing: torch.fx graph -> a flat list of float ops with fusions applied
# ----------------------------------------------------------------------------------------


@dataclass
class _Op:
    """A node of the float graph before fusion."""

    kind: str  # input conv bn act add pool flatten linear pad alias meta
    name: str
    inputs: list[str]
    node: fx.Node
    module: nn.Module | None = None
    act: str = "none"
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    keepdim: bool = True
    attrs: dict[str, Any] = field(default_factory=dict)


def _describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(
        node.target, "__name__", repr(node.target))
    return f"fx node '{node.name}' (op={node.op}, target={target})"


def _unsupported(node: fx.Node, why: str = "") -> UnsupportedModelError:
    reason = f": {why}" if why else ""
    return UnsupportedModelError(
        f"unsupported {_describe(node)}{reason}. Supported: {SUPPORTED_OPS}.")


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _tensor_inputs(node: fx.Node, count: int) -> list[str]:
    args = list(node.args[:count])
    if len(args) < count:
        raise _unsupported(node, f"expected {count} tensor operand(s)")
    for a in args:
        if not isinstance(a, fx.Node):
            raise _unsupported(node, f"operand {a!r} is not a tensor (constants unsupported)")
    return [a.name for a in args]


def _clamp_act(node: fx.Node, lo: Any, hi: Any) -> str:
    """relu / relu6 for clamp/hardtanh bounds (0, None) / (0, 6), else unsupported."""
    if lo == 0 and hi is None:
        return "relu"
    if lo == 0 and hi == 6:
        return "relu6"
    raise _unsupported(node, f"clamp bounds ({lo}, {hi}) are not ReLU (0, inf) or ReLU6 (0, 6)")


def _hardtanh_op(node: fx.Node, inputs: list[str], lo: Any, hi: Any) -> _Op:
    """ReLU / ReLU6 bounds become a fusable act; any other (min, max) a po2.clamp."""
    if (lo, hi) in ((0, None), (0, 6)):
        return _Op("act", node.name, inputs, node, act=_clamp_act(node, lo, hi))
    if lo is None or hi is None or not lo < hi:
        raise _unsupported(node, f"hardtanh bounds ({lo}, {hi}) (need min < max)")
    return _Op("clamp", node.name, inputs, node, attrs={"min": float(lo), "max": float(hi)})


def _leaky_op(node: fx.Node, inputs: list[str], slope: Any) -> _Op:
    """A Po2 negative slope 2^-s (0 < slope <= 1); other slopes round to the nearest Po2 in
    the log domain, with a warning."""
    slope = float(slope)
    if not 0 < slope <= 1:
        raise _unsupported(node, f"LeakyReLU negative_slope {slope} (need 0 < slope <= 1)")
    shift = -int(_log2_round(torch.tensor([slope], dtype=torch.float64))[0])
    if math.ldexp(1.0, -shift) != slope:
        warnings.warn(f"{_describe(node)}: LeakyReLU negative_slope {slope} is not a power of "
                      f"two; rounded to 2^-{shift} = {math.ldexp(1.0, -shift)}", stacklevel=2)
    return _Op("leaky", node.name, inputs, node, attrs={"slope_shift": shift})


def _pair(node: fx.Node, value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise _unsupported(node, f"{what} {value!r} (need an int or a pair of ints)")


def _pool_geometry(node: fx.Node, kernel: Any, stride: Any, padding: Any) -> dict[str, Any]:
    kernel = _pair(node, kernel, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else _pair(node, stride, "stride")
    padding = _pair(node, padding, "padding")
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise _unsupported(node, f"padding {padding} larger than half the kernel {kernel}")
    return {"kernel": kernel, "stride": stride, "sym_pad": padding}


def _maxpool_op(node: fx.Node, inputs: list[str], kernel: Any, stride: Any, padding: Any,
                dilation: Any, ceil_mode: Any, return_indices: Any) -> _Op:
    if return_indices:
        raise _unsupported(node, "max pooling with return_indices")
    if _pair(node, dilation, "dilation") != (1, 1):
        raise _unsupported(node, f"max pooling with dilation {dilation}")
    attrs = _pool_geometry(node, kernel, stride, padding)
    return _Op("maxpool", node.name, inputs, node, attrs={**attrs, "ceil_mode": bool(ceil_mode)})


def _avgpool_op(node: fx.Node, inputs: list[str], kernel: Any, stride: Any, padding: Any,
                ceil_mode: Any, count_include_pad: Any, divisor_override: Any) -> _Op:
    if divisor_override is not None:
        raise _unsupported(node, "avg_pool2d with divisor_override")
    attrs = _pool_geometry(node, kernel, stride, padding)
    if not count_include_pad and any(attrs["sym_pad"]):
        raise _unsupported(node, "avg_pool2d with count_include_pad=False and padding (the "
                                 "divisor would vary per position)")
    return _Op("avgpool2d", node.name, inputs, node, attrs={**attrs, "ceil_mode": bool(ceil_mode)})


def _pool_padding(op: _Op, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Output size and (top, left, bottom, right) padding; ceil_mode adds bottom/right
    padding for the extra window (torch: a window must start inside the input or the
    left/top padding)."""
    (kh, kw), (sh, sw), (ph, pw) = op.attrs["kernel"], op.attrs["stride"], op.attrs["sym_pad"]

    def size(n: int, k: int, s: int, p: int) -> tuple[int, int]:
        if n + 2 * p < k:
            raise _shape_error(op, f"pooling window {k} larger than the padded input {n + 2 * p}")
        if op.attrs["ceil_mode"]:
            out = -(-(n + 2 * p - k) // s) + 1
            if (out - 1) * s >= n + p:
                out -= 1
        else:
            out = (n + 2 * p - k) // s + 1
        return out, max(0, (out - 1) * s + k - (n + 2 * p))

    oh, extra_h = size(h, kh, sh, ph)
    ow, extra_w = size(w, kw, sw, pw)
    return (oh, ow), (ph, pw, ph + extra_h, pw + extra_w)


def _mean_dims_ok(dims: Any) -> bool:
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, (tuple, list)):
        return False
    return sorted(d % 4 for d in dims) == [2, 3]


def _pad_from_torch(node: fx.Node, pad: Sequence[int]) -> tuple[int, int, int, int]:
    """F.pad / ZeroPad2d (left, right, top, bottom) -> (top, left, bottom, right)."""
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        pad = pad + (0, 0)
    if len(pad) != 4 or min(pad) < 0:
        raise _unsupported(node, f"padding {pad} (need 4 non-negative values over H and W)")
    left, right, top, bottom = pad
    return (top, left, bottom, right)


def _pad_op(node: fx.Node, inputs: list[str], pad: tuple[int, int, int, int]) -> _Op:
    """A zero pad, merged later into the conv it feeds; an empty pad is dropped."""
    if not any(pad):
        return _Op("alias", node.name, inputs, node)
    return _Op("pad", node.name, inputs, node, pad=pad)


def _classify_module(node: fx.Node, mod: nn.Module) -> _Op:
    name = node.name
    one = lambda: _tensor_inputs(node, 1)  # noqa: E731
    if isinstance(mod, nn.Conv2d):
        if mod.dilation != (1, 1):
            raise _unsupported(node, f"dilation {mod.dilation}")
        if mod.padding_mode != "zeros":
            raise _unsupported(node, f"padding_mode '{mod.padding_mode}'")
        return _Op("conv", name, one(), node, mod)
    if isinstance(mod, nn.BatchNorm2d):
        return _Op("bn", name, one(), node, mod)
    if isinstance(mod, nn.ReLU6):
        return _Op("act", name, one(), node, act="relu6")
    if isinstance(mod, nn.ReLU):
        return _Op("act", name, one(), node, act="relu")
    if isinstance(mod, nn.Hardtanh):
        return _hardtanh_op(node, one(), mod.min_val, mod.max_val)
    if isinstance(mod, nn.LeakyReLU):
        return _leaky_op(node, one(), mod.negative_slope)
    if isinstance(mod, nn.MaxPool2d):
        return _maxpool_op(node, one(), mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                           mod.ceil_mode, mod.return_indices)
    if isinstance(mod, nn.AvgPool2d):
        return _avgpool_op(node, one(), mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                           mod.count_include_pad, mod.divisor_override)
    if isinstance(mod, (nn.Hardswish, nn.Hardsigmoid)):
        raise _unsupported(node, f"{type(mod).__name__} multiplies activations by activations, "
                                 "which Po2 shift/add hardware cannot harden")
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        size = mod.output_size
        if size not in (1, (1, 1)):
            raise _unsupported(node, f"AdaptiveAvgPool2d output size {size} (only 1)")
        return _Op("pool", name, one(), node, keepdim=True)
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim not in (-1, 3):
            raise _unsupported(node, "Flatten must flatten dims 1..-1")
        return _Op("flatten", name, one(), node)
    if isinstance(mod, (nn.Dropout, nn.Dropout2d, nn.Identity)):
        return _Op("alias", name, one(), node)
    if isinstance(mod, nn.Linear):
        return _Op("linear", name, one(), node, mod)
    if isinstance(mod, nn.ZeroPad2d):
        return _pad_op(node, one(), _pad_from_torch(node, mod.padding))
    raise _unsupported(node, f"module type {type(mod).__name__}")


_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU6_FUNCS = {F.relu6}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_SHAPE_FUNCS = {getattr, operator.getitem}
_SIZE_ARITHMETIC = {operator.floordiv, operator.mul, operator.sub, operator.truediv}
_CAT_FUNCS = {torch.cat, torch.concat, torch.concatenate}
_SPLIT_TARGETS = {torch.chunk, torch.split, "chunk", "split"}


_SHAPE_META = "hashiflex_shape"


def _meta_shape(node: Any) -> tuple[int, ...] | None:
    """The shape `_propagate_shapes` recorded for a tensor node (None: unknown/not a tensor)."""
    return node.meta.get(_SHAPE_META) if isinstance(node, fx.Node) else None


def _channel_dim_ok(node: fx.Node, dim: Any, ndim: int = 4) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim % ndim == 1


def _cat_op(node: fx.Node) -> _Op:
    """torch.cat of a list of N x C x H x W tensors along dim 1."""
    tensors, dim = _arg(node, 0, "tensors"), _arg(node, 1, "dim", 0)
    if not isinstance(tensors, (list, tuple)) or not tensors \
            or not all(isinstance(t, fx.Node) for t in tensors):
        raise _unsupported(node, "torch.cat needs a list of tensors made by the model")
    shape = _meta_shape(node)
    if not _channel_dim_ok(node, dim, len(shape) if shape else 4):
        raise _unsupported(node, f"torch.cat along dim {dim} (only along channels, dim 1)")
    return _Op("cat", node.name, [t.name for t in tensors], node)


def _split_pieces(node: fx.Node) -> list[tuple[int, int]]:
    """(first channel, count) of each piece of a torch.chunk / torch.split node."""
    is_chunk = node.target in (torch.chunk, "chunk")
    what = "chunk" if is_chunk else "split"
    amount = _arg(node, 1, "chunks" if is_chunk else "split_size_or_sections")
    if amount is None and not is_chunk:
        amount = node.kwargs.get("split_size")
    dim = _arg(node, 2, "dim", 0)
    source = node.args[0] if node.args else None
    shape = _meta_shape(source)
    if not _channel_dim_ok(node, dim, len(shape) if shape else 4):
        raise _unsupported(node, f"torch.{what} along dim {dim} (only along channels, dim 1)")
    if shape is None or len(shape) != 4:
        raise _unsupported(node, f"torch.{what} of a tensor whose shape is unknown or not "
                                 "N x C x H x W")
    channels = shape[1]
    if isinstance(amount, (list, tuple)):
        sizes = [int(a) for a in amount]
        if sum(sizes) != channels or min(sizes, default=0) < 0:
            raise _unsupported(node, f"split sizes {sizes} do not add up to the {channels} "
                                     "channels")
    elif isinstance(amount, int) and amount > 0:
        size = -(-channels // amount) if is_chunk else amount
        sizes = [min(size, channels - s) for s in range(0, channels, size)]
    else:
        raise _unsupported(node, f"torch.{what} by {amount!r} (need a positive int or sizes)")
    starts = np.cumsum([0] + sizes[:-1]).tolist()
    return list(zip(starts, sizes))


def _piece_op(node: fx.Node) -> _Op:
    """`pieces[i]` of a chunk/split: a channel range of the split's input."""
    split, index = node.args[0], node.args[1]
    pieces = _split_pieces(split)
    if not isinstance(index, int) or not -len(pieces) <= index < len(pieces):
        raise _unsupported(node, f"index {index!r} into the {len(pieces)} pieces of "
                                 f"'{split.name}'")
    start, count = pieces[index]
    return _Op("select", node.name, _tensor_inputs(split, 1), node,
               attrs={"channels": tuple(range(start, start + count))})


def _channel_view_op(node: fx.Node, how: str) -> _Op:
    """A step of a channel shuffle: 4-D -> (N, g, C/g, H, W) split, swap of the two group
    dims, merge back to 4-D. Checked against the shapes `_propagate_shapes` recorded."""
    src = node.args[0] if node.args else None
    ins, out = _meta_shape(src), _meta_shape(node)
    if ins is None or out is None:
        raise _unsupported(node, "tensor shapes unknown (shape propagation failed), cannot "
                                 "check it is a channel shuffle")
    ok = {
        "split": len(ins) == 4 and len(out) == 5 and out[0] == ins[0]
                 and out[1] * out[2] == ins[1] and out[3:] == ins[2:],
        "swap": len(ins) == 5,
        "merge": len(ins) == 5 and len(out) == 4 and out[0] == ins[0]
                 and out[1] == ins[1] * ins[2] and out[2:] == ins[3:],
    }[how]
    if not ok:
        raise _unsupported(node, f"{list(ins)} -> {list(out)} is not a permutation of "
                                 "channels (a channel shuffle is view to (N, g, C/g, H, W), "
                                 "transpose(1, 2), view/reshape/flatten(1, 2) back to "
                                 "(N, C, H, W))")
    return _Op("chview", node.name, [src.name], node,
               attrs={"how": how, "in_shape": ins, "out_shape": out})


def _transpose_op(node: fx.Node) -> _Op:
    dims = (_arg(node, 1, "dim0"), _arg(node, 2, "dim1"))
    ins = _meta_shape(node.args[0] if node.args else None)
    nd = len(ins) if ins else 5
    if nd != 5 or not all(isinstance(d, int) for d in dims) or \
            sorted(d % nd for d in dims) != [1, 2]:
        raise _unsupported(node, f"transpose{dims} of a {nd}-D tensor is not a permutation of "
                                 "channels (only transpose(1, 2) of a channel-shuffle view)")
    return _channel_view_op(node, "swap")


def _view_op(node: fx.Node, m: str, shape: Any) -> _Op:
    """view/reshape: (N, -1) is a flatten; 4-D <-> 5-D channel-group views are shuffles."""
    if isinstance(shape, (tuple, list)) and len(shape) == 2:
        return _Op("flatten", node.name, _tensor_inputs(node, 1), node,
                   attrs={"reshape_to": shape[1]})
    ins, out = _meta_shape(node.args[0] if node.args else None), _meta_shape(node)
    if ins is not None and out is not None:
        if ins == out:
            return _Op("alias", node.name, _tensor_inputs(node, 1), node)
        if len(ins) == 4 and len(out) == 5:
            return _channel_view_op(node, "split")
        if len(ins) == 5:
            return _channel_view_op(node, "merge")
    raise _unsupported(node, f"{m} to {shape!r} (only (N, -1) flattening and channel "
                             "shuffles)")


def _classify_function(node: fx.Node) -> _Op:
    fn, name = node.target, node.name
    if fn in _RELU_FUNCS:
        return _Op("act", name, _tensor_inputs(node, 1), node, act="relu")
    if fn in _RELU6_FUNCS:
        return _Op("act", name, _tensor_inputs(node, 1), node, act="relu6")
    if fn is F.hardtanh:
        return _hardtanh_op(node, _tensor_inputs(node, 1), _arg(node, 1, "min_val", -1.0),
                            _arg(node, 2, "max_val", 1.0))
    if fn is F.leaky_relu:
        return _leaky_op(node, _tensor_inputs(node, 1), _arg(node, 1, "negative_slope", 0.01))
    if fn is F.max_pool2d:
        return _maxpool_op(node, _tensor_inputs(node, 1), _arg(node, 1, "kernel_size"),
                           _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                           _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False),
                           _arg(node, 6, "return_indices", False))
    if fn is F.avg_pool2d:
        return _avgpool_op(node, _tensor_inputs(node, 1), _arg(node, 1, "kernel_size"),
                           _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                           _arg(node, 4, "ceil_mode", False),
                           _arg(node, 5, "count_include_pad", True),
                           _arg(node, 6, "divisor_override"))
    if fn in (F.hardswish, F.hardsigmoid):
        raise _unsupported(node, f"{fn.__name__} multiplies activations by activations, "
                                 "which Po2 shift/add hardware cannot harden")
    if fn in (torch.clamp, torch.clip):
        act = _clamp_act(node, _arg(node, 1, "min"), _arg(node, 2, "max"))
        return _Op("act", name, _tensor_inputs(node, 1), node, act=act)
    if fn in _ADD_FUNCS:
        if _arg(node, 2, "alpha", 1) != 1:
            raise _unsupported(node, "torch.add with alpha != 1")
        return _Op("add", name, _tensor_inputs(node, 2), node)
    if fn is F.adaptive_avg_pool2d:
        if _arg(node, 1, "output_size") not in (1, (1, 1), [1, 1]):
            raise _unsupported(node, "adaptive_avg_pool2d output size must be 1")
        return _Op("pool", name, _tensor_inputs(node, 1), node, keepdim=True)
    if fn is torch.mean:
        return _mean_op(node)
    if fn is torch.flatten:
        return _flatten_op(node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
    if fn in _CAT_FUNCS:
        return _cat_op(node)
    if fn in _SPLIT_TARGETS:
        _split_pieces(node)  # checked here; its pieces are read by their getitem nodes
        return _Op("meta", name, [], node)
    if fn is operator.getitem and node.args and isinstance(node.args[0], fx.Node) \
            and node.args[0].op != "call_module" and node.args[0].target in _SPLIT_TARGETS:
        return _piece_op(node)
    if fn is torch.transpose:
        return _transpose_op(node)
    if fn in (F.dropout, F.dropout2d):
        return _Op("alias", name, _tensor_inputs(node, 1), node)
    if fn is F.pad:
        mode, value = _arg(node, 2, "mode", "constant"), _arg(node, 3, "value", None)
        if mode != "constant" or value not in (None, 0, 0.0):
            raise _unsupported(node, f"F.pad mode={mode!r} value={value!r} (only zeros)")
        return _pad_op(node, _tensor_inputs(node, 1), _pad_from_torch(node, _arg(node, 1, "pad")))
    if fn in _SHAPE_FUNCS:
        return _Op("meta", name, [], node)
    if fn in _SIZE_ARITHMETIC and not any(_meta_shape(a) for a in node.args):
        return _Op("meta", name, [], node)  # c // g on sizes (channel shuffles)
    raise _unsupported(node)


def _mean_op(node: fx.Node) -> _Op:
    dims = _arg(node, 1, "dim")
    if not _mean_dims_ok(dims):
        raise _unsupported(node, f"mean over dims {dims} (only global mean over (2, 3))")
    keepdim = bool(_arg(node, 2, "keepdim", False))
    return _Op("pool", node.name, _tensor_inputs(node, 1), node, keepdim=keepdim)


def _flatten_op(node: fx.Node, start: Any, end: Any) -> _Op:
    ins = _meta_shape(node.args[0] if node.args else None)
    if ins is not None and len(ins) == 5 and (start, end) in ((1, 2), (-4, -3)):
        return _channel_view_op(node, "merge")
    if start != 1 or end not in (-1, 3):
        raise _unsupported(node, f"flatten({start}, {end}) (only start_dim=1, end_dim=-1)")
    return _Op("flatten", node.name, _tensor_inputs(node, 1), node)


def _classify_method(node: fx.Node) -> _Op:
    m, name = node.target, node.name
    if m in ("relu", "relu_"):
        return _Op("act", name, _tensor_inputs(node, 1), node, act="relu")
    if m in ("clamp", "clamp_", "clip", "clip_"):
        act = _clamp_act(node, _arg(node, 1, "min"), _arg(node, 2, "max"))
        return _Op("act", name, _tensor_inputs(node, 1), node, act=act)
    if m in ("add", "add_"):
        if _arg(node, 2, "alpha", 1) != 1:
            raise _unsupported(node, "add with alpha != 1")
        return _Op("add", name, _tensor_inputs(node, 2), node)
    if m == "mean":
        return _mean_op(node)
    if m == "flatten":
        return _flatten_op(node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
    if m in ("view", "reshape"):
        shape = node.args[1:] if len(node.args) > 2 else _arg(node, 1, "shape")
        if isinstance(shape, (tuple, list)) and len(shape) == 1:
            shape = shape[0]
        return _view_op(node, m, shape)
    if m in ("chunk", "split"):
        _split_pieces(node)
        return _Op("meta", name, [], node)
    if m == "transpose":
        return _transpose_op(node)
    if m in ("contiguous",):
        return _Op("alias", name, _tensor_inputs(node, 1), node)
    if m in ("size", "dim"):
        return _Op("meta", name, [], node)
    raise _unsupported(node)


def _classify(gm: fx.GraphModule) -> tuple[list[_Op], str]:
    ops: list[_Op] = []
    output: str | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if any(o.kind == "input" for o in ops):
                raise _unsupported(node, "the model must have exactly one input")
            ops.append(_Op("input", node.name, [], node))
        elif node.op == "call_module":
            ops.append(_classify_module(node, gm.get_submodule(node.target)))
        elif node.op == "call_function":
            ops.append(_classify_function(node))
        elif node.op == "call_method":
            ops.append(_classify_method(node))
        elif node.op == "output":
            result = node.args[0]
            if not isinstance(result, fx.Node):
                raise _unsupported(node, "the model must return a single tensor")
            output = result.name
        else:
            raise _unsupported(node, "parameters/attributes used as tensors")
    if output is None:
        raise UnsupportedModelError("the traced model has no output")
    return ops, output


def _users(ops: Iterable[_Op]) -> dict[str, list[_Op]]:
    users: dict[str, list[_Op]] = {}
    for op in ops:
        for name in op.inputs:
            users.setdefault(name, []).append(op)
    return users


def _drop_aliases(ops: list[_Op], output: str) -> tuple[list[_Op], str]:
    """Remove Dropout/Identity/contiguous: their users read the aliased value."""
    rename: dict[str, str] = {}
    kept = []
    for op in ops:
        op.inputs = [rename.get(n, n) for n in op.inputs]
        if op.kind == "alias":
            rename[op.name] = op.inputs[0]
        else:
            kept.append(op)
    return kept, rename.get(output, output)


def _fold_into_producer(ops: list[_Op], output: str, kind: str,
                        accept: Callable[[_Op, _Op], bool],
                        merge: Callable[[_Op, _Op], None],
                        refuse: Callable[[_Op], None] | None = None) -> tuple[list[_Op], str]:
    """Merge each op of `kind` into its producer when `accept` says so (the producer must
    have it as its only user); the merged op's users then read the producer."""
    by_name = {op.name: op for op in ops}
    rename: dict[str, str] = {}
    kept = []
    users = _users(ops)
    for op in ops:
        op.inputs = [rename.get(n, n) for n in op.inputs]
        if op.kind == kind:
            producer = by_name.get(op.inputs[0])
            sole = producer is not None and len(users.get(producer.name, [])) == 1
            if sole and accept(producer, op):
                merge(producer, op)
                rename[op.name] = producer.name
                users[producer.name] = users.get(op.name, [])
                continue
            if refuse is not None:
                refuse(op)
        kept.append(op)
    return kept, rename.get(output, output)


def _fold_pads(ops: list[_Op], output: str) -> tuple[list[_Op], str]:
    """Merge zero pads into the conv they feed (the pad's only user must be a conv)."""
    users = _users(ops)
    by_name = {op.name: op for op in ops}
    kept = []
    for op in ops:
        if op.kind == "pad":
            u = users.get(op.name, [])
            if not u or any(c.kind != "conv" for c in u):
                raise _unsupported(op.node, "a zero pad must feed only Conv2d layers")
            for conv in u:
                conv.pad = tuple(a + b for a, b in zip(conv.pad, op.pad))
                conv.inputs = [op.inputs[0] if n == op.name else n for n in conv.inputs]
            continue
        kept.append(op)
    del by_name
    return kept, output


def _compose_act(first: str, second: str) -> str:
    return "relu6" if "relu6" in (first, second) else "relu"


def _merge_bn(conv: _Op, bn: _Op) -> None:
    conv.attrs["bn"] = bn.module


def _refuse_bn(bn: _Op) -> None:
    raise _unsupported(bn.node, "BatchNorm2d must directly follow a Conv2d whose output "
                                "has no other user (it is folded into the conv)")


def _fold_channel_views(ops: list[_Op], output: str) -> list[_Op]:
    """Turn each view -> transpose(1, 2) -> view chain into one channel select.

    A 5-D view is tracked as the index array (g, C/g) of its base tensor's channels; the
    transpose swaps its axes, the merge back to 4-D flattens it in C order (what
    `contiguous().view` does), giving the permutation. A 5-D view read by anything else is
    refused.
    """
    views: dict[str, tuple[str, np.ndarray]] = {}
    kept = []
    for op in ops:
        if op.kind == "chview":
            how, src = op.attrs["how"], op.inputs[0]
            if how == "split":
                base, index = src, np.arange(op.attrs["in_shape"][1])
                index = index.reshape(op.attrs["out_shape"][1:3])
            elif src not in views:
                raise _unsupported(op.node, "its 5-D operand is not a channel-group view")
            else:
                base, index = views[src]
                index = index.T if how == "swap" else index.reshape(-1)
            if how == "merge":
                kept.append(_Op("select", op.name, [base], op.node,
                                attrs={"channels": tuple(int(c) for c in index)}))
            else:
                views[op.name] = (base, index)
            continue
        for name in op.inputs:
            if name in views:
                raise _unsupported(op.node, f"reads the 5-D channel-group view '{name}'; only "
                                            "channel shuffles (view, transpose(1, 2), view "
                                            "back to N x C x H x W) are supported")
        kept.append(op)
    if output in views:
        raise UnsupportedModelError(f"the model returns the 5-D view '{output}'")
    return kept


def _compose_selects(ops: list[_Op], output: str) -> list[_Op]:
    """A select of a select reads the first one's input (indices composed); selects that
    nobody reads any more are dropped (e.g. the shuffle before a chunk)."""
    by_name = {op.name: op for op in ops}
    for op in ops:  # topological order: the producer is already composed
        src = by_name.get(op.inputs[0]) if op.inputs else None
        if op.kind == "select" and src is not None and src.kind == "select":
            inner = src.attrs["channels"]
            op.attrs["channels"] = tuple(inner[c] for c in op.attrs["channels"])
            op.inputs = [src.inputs[0]]
    while True:
        users = _users(ops)
        dead = [op for op in ops if op.kind == "select" and op.name != output
                and not users.get(op.name)]
        if not dead:
            return ops
        ops = [op for op in ops if op not in dead]


def _simplify(ops: list[_Op], output: str) -> tuple[list[_Op], str]:
    ops, output = _drop_aliases(ops, output)
    ops = [op for op in ops if op.kind != "meta"]
    ops = _compose_selects(_fold_channel_views(ops, output), output)
    ops, output = _fold_pads(ops, output)
    ops, output = _fold_into_producer(
        ops, output, "bn", lambda p, _: p.kind == "conv" and "bn" not in p.attrs,
        _merge_bn, _refuse_bn)
    ops, output = _fold_into_producer(
        ops, output, "act", lambda p, _: p.kind in ("conv", "add", "act"),
        lambda p, a: setattr(p, "act", a.act if p.act == "none" else _compose_act(p.act, a.act)))
    for op in ops:  # the remaining activations stand alone
        if op.kind == "act":
            op.kind = "requant"
    return _conv_classifier(ops, output)


def _conv_classifier(ops: list[_Op], output: str) -> tuple[list[_Op], str]:
    """
    A model ending in a 1x1 Conv2d + global average pooling (+ flatten) with no activation
    in between: mean(W x + b) = W mean(x) + b, the same linear map as pooling + Linear, so
    it becomes pool -> flatten -> Linear and the classifier runs on the NPU. A model that
    ends so but with an activation or a spatial conv is refused with the reason.
    """
    by_name = {op.name: op for op in ops}
    last = by_name.get(output)
    flatten = last if last is not None and last.kind == "flatten" else None
    pool = by_name.get(flatten.inputs[0]) if flatten is not None else last
    if pool is None or pool.kind != "pool" or (flatten is None and pool.keepdim):
        return ops, output
    conv = by_name.get(pool.inputs[0])
    if conv is None or conv.kind != "conv":
        return ops, output
    m = conv.module
    own_pad = m.padding if isinstance(m.padding, tuple) else (0, 0)
    if (tuple(m.kernel_size) != (1, 1) or tuple(m.stride) != (1, 1) or m.groups != 1
            or any(conv.pad) or any(own_pad) or conv.act != "none"
            or len(_users(ops).get(conv.name, [])) != 1):
        raise _unsupported(conv.node, "a final Conv2d + global pooling is the NPU classifier "
                                      "only when it is 1x1, stride 1, unpadded, ungrouped and "
                                      "no activation follows it (then it is a linear map)")
    w, b = fold_batchnorm(m, conv.attrs.get("bn"))
    linear = nn.Linear(m.in_channels, m.out_channels)
    with torch.no_grad():
        linear.weight.copy_(w.reshape(m.out_channels, m.in_channels))
        linear.bias.copy_(b)
    pool.inputs = list(conv.inputs)
    kept = [op for op in ops if op is not conv]
    kept.append(_Op("linear", conv.name, [output], conv.node, linear))
    return kept, conv.name


# ----------------------------------------------------------------------------------------
# Building the fake-quant model
# ----------------------------------------------------------------------------------------


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv's (weight, bias) with the eval-mode BatchNorm folded in (float64 math)."""
    w = conv.weight.detach().to(torch.float64)
    b = (conv.bias.detach().to(torch.float64) if conv.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.float64))
    if bn is None:
        return w.float(), b.float()
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModelError(
            f"BatchNorm2d without running statistics cannot be folded ({bn})")
    gamma = bn.weight.detach().to(torch.float64) if bn.weight is not None else 1.0
    beta = bn.bias.detach().to(torch.float64) if bn.bias is not None else 0.0
    g = gamma / torch.sqrt(bn.running_var.to(torch.float64) + bn.eps)
    mean = bn.running_mean.to(torch.float64)
    return (w * g.reshape(-1, 1, 1, 1)).float(), (beta + (b - mean) * g).float()


def _shape_error(op: _Op, msg: str) -> ModelShapeError:
    return ModelShapeError(f"layer '{op.name}' ({_describe(op.node)}): {msg}")


def _conv_out_shape(op: _Op, conv: nn.Conv2d, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != 3:
        raise _shape_error(op, f"Conv2d needs a C x H x W input, got {shape}")
    c, h, w = shape
    if c != conv.in_channels:
        raise _shape_error(op, f"Conv2d expects {conv.in_channels} input channels, got {c}")
    top, left, bottom, right = op.pad
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    if h + top + bottom < kh or w + left + right < kw:
        raise _shape_error(op, f"kernel {kh}x{kw} larger than padded input {h}x{w}")
    return (conv.out_channels, oh, ow)


def _conv_padding(op: _Op, conv: nn.Conv2d, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The conv's own padding (incl. 'same'/'valid') plus any merged zero pad."""
    pad = conv.padding
    kh, kw = conv.kernel_size
    if pad == "valid":
        own = (0, 0, 0, 0)
    elif pad == "same":
        th, tw = kh - 1, kw - 1  # torch puts the odd pixel at the bottom/right
        own = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = pad
        own = (ph, pw, ph, pw)
    return tuple(a + b for a, b in zip(own, op.pad))


def _build_ops(ops: list[_Op], output: str, in_shape: tuple[int, ...],
               options: QuantOptions) -> list[FqOp]:
    if ops[-1].name != output or ops[-1].kind != "linear":
        last = next(o for o in ops if o.name == output)
        raise _unsupported(last.node, "the model must end with its only nn.Linear (the NPU "
                                      "classifier) and return its output")
    shapes: dict[str, tuple[int, ...]] = {}
    fq: list[FqOp] = []
    for op in ops:
        missing = [n for n in op.inputs if n not in shapes]
        if missing:
            raise _unsupported(op.node, f"operand '{missing[0]}' is not a tensor made by a "
                                        "supported op")
        ins = [shapes[n] for n in op.inputs]
        if op.kind == "input":
            if len(in_shape) != 3:
                raise ModelShapeError(
                    f"model input must be N x C x H x W (4-D), got per-sample shape {in_shape}")
            new: FqOp = FqInput(op.name, in_shape, options.input_signed)
        elif op.kind == "conv":
            conv = op.module
            op.pad = _conv_padding(op, conv, ins[0])
            w, b = fold_batchnorm(conv, op.attrs.get("bn"))
            new = FqConv2d(op.name, op.inputs, _conv_out_shape(op, conv, ins[0]), w, b,
                           conv.stride, op.pad, conv.groups, options.exp_bits, options.prune)
        elif op.kind == "add":
            if ins[0] != ins[1]:
                raise _shape_error(op, f"residual add of shapes {ins[0]} and {ins[1]}")
            new = FqAdd(op.name, op.inputs, ins[0])
        elif op.kind == "requant":
            new = FqRequant(op.name, op.inputs, ins[0])
        elif op.kind in ("maxpool", "avgpool2d"):
            if len(ins[0]) != 3:
                raise _shape_error(op, f"pooling needs C x H x W, got {ins[0]}")
            (oh, ow), pad = _pool_padding(op, *ins[0][1:])
            cls = FqMaxPool2d if op.kind == "maxpool" else FqAvgPool2d
            if cls is FqAvgPool2d and pad[2:] != pad[:2]:
                raise _unsupported(op.node, "avg_pool2d with ceil_mode adding a window (torch "
                                            "then shrinks the divisor at the edge)")
            new = cls(op.name, op.inputs, (ins[0][0], oh, ow), op.attrs["kernel"],
                      op.attrs["stride"], pad)
        elif op.kind == "leaky":
            new = FqLeakyRelu(op.name, op.inputs, ins[0], op.attrs["slope_shift"])
        elif op.kind == "clamp":
            new = FqClamp(op.name, op.inputs, ins[0], op.attrs["min"], op.attrs["max"])
        elif op.kind == "select":
            channels = op.attrs["channels"]
            if len(ins[0]) != 3 or max(channels) >= ins[0][0]:
                raise _shape_error(op, f"channels {min(channels)}..{max(channels)} of a "
                                       f"{ins[0]} tensor")
            new = FqSelect(op.name, op.inputs, (len(channels),) + ins[0][1:], channels)
        elif op.kind == "cat":
            if any(len(s) != 3 or s[1:] != ins[0][1:] for s in ins):
                raise _shape_error(op, f"torch.cat along channels of shapes {ins} (need "
                                       "C x H x W with equal H x W)")
            if len(ins) == 1:
                _rename_input(ops, op.name, op.inputs[0])
                continue
            # n operands: a chain of binary concats, the last one keeps the fx name
            acc, acc_shape = op.inputs[0], ins[0]
            for i, (src, shape) in enumerate(zip(op.inputs[1:], ins[1:])):
                last = i == len(ins) - 2
                name = op.name if last else f"{op.name}_{i}"
                new = FqConcat(name, (acc, src), (acc_shape[0] + shape[0],) + shape[1:])
                shapes[name] = new.shape
                if not last:
                    fq.append(new)
                acc, acc_shape = name, new.shape
        elif op.kind == "pool":
            if len(ins[0]) != 3:
                raise _shape_error(op, f"global average pool needs C x H x W, got {ins[0]}")
            new = FqAvgPool(op.name, op.inputs, (ins[0][0], 1, 1))
            if not op.keepdim:  # x.mean((2, 3)): pool, then flatten to a vector
                fq.append(_finish(new, op))
                shapes[op.name] = new.shape
                new = FqFlatten(op.name + "_flatten", (op.name,), (ins[0][0],))
                shapes[new.op_name] = new.shape
                fq.append(new)
                # later ops refer to the fx name: point it at the flatten
                _rename_input(ops, op.name, new.op_name)
                continue
        elif op.kind == "flatten":
            size = int(np.prod(ins[0]))
            target = op.attrs.get("reshape_to", -1)
            if not isinstance(target, fx.Node) and target not in (-1, size):
                raise _shape_error(op, f"reshape to (N, {target}) is not a flatten of {ins[0]}")
            if len(ins[0]) == 1:  # already a vector: nothing to do
                _rename_input(ops, op.name, op.inputs[0])
                continue
            new = FqFlatten(op.name, op.inputs, (size,))
        elif op.kind == "linear":
            lin = op.module
            if len(ins[0]) != 1:
                raise _shape_error(op, f"Linear needs a flattened vector input, got {ins[0]} "
                                       "(add a flatten before the classifier)")
            if ins[0][0] != lin.in_features:
                raise _shape_error(op, f"Linear expects {lin.in_features} features, got "
                                       f"{ins[0][0]}")
            if op is not ops[-1]:
                raise _unsupported(op.node, "only one, final, Linear (the NPU classifier)")
            bias = lin.bias if lin.bias is not None else torch.zeros(lin.out_features)
            new = FqLinear(op.name, op.inputs, (lin.out_features,), lin.weight, bias,
                           options.weight_bits, options.bias_bits)
        else:  # pragma: no cover - _simplify leaves no other kinds
            raise _unsupported(op.node)
        fq.append(_finish(new, op))
        shapes[op.name] = new.shape
    return fq


def _finish(new: FqOp, op: _Op) -> FqOp:
    new.act = op.act
    return new


def _rename_input(ops: list[_Op], old: str, new: str) -> None:
    for o in ops:
        o.inputs = [new if n == old else n for n in o.inputs]


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced model once and records each tensor node's shape in its meta."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta[_SHAPE_META] = tuple(int(d) for d in result.shape)
        return result


def _propagate_shapes(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Record every node's shape (one float example through the traced model): channel
    shuffles and chunks are recognised from shapes, which their symbolic size() arguments
    hide. Best effort: a model that fails here gets its shape error from the checks later."""
    try:
        with torch.no_grad():
            _ShapeRecorder(gm).run(example[:1].float())
    except Exception:  # noqa: BLE001 - the per-op checks report the problem
        pass


def build_fake_quant(model: nn.Module, example: torch.Tensor,
                     options: QuantOptions | None = None) -> Po2FakeQuantModel:
    """Trace `model`, fold BN, fuse activations; the result is uncalibrated (float mode)."""
    options = options or QuantOptions()
    if example.dim() != 4:
        raise ModelShapeError(f"model input must be N x C x H x W (4-D), got {tuple(example.shape)}")
    was_training = model.training
    model.eval()
    try:
        gm = fx.symbolic_trace(model)
        _propagate_shapes(gm, example)  # in eval: BatchNorm statistics stay untouched
    finally:
        model.train(was_training)
    ops, output = _classify(gm)
    ops, output = _simplify(ops, output)
    return Po2FakeQuantModel(_build_ops(ops, output, tuple(example.shape[1:]), options), options)


# ----------------------------------------------------------------------------------------
# Calibration and export
# ----------------------------------------------------------------------------------------


def calibrate(fq: Po2FakeQuantModel, calib: torch.Tensor, batch_size: int = 256) -> None:
    """Observe the float (folded) model on `calib` and fix every activation format."""
    opts = fq.options
    fq.set_quantize(False)
    for op in fq.ops:
        op.observe, op.obs_lo, op.obs_hi = True, math.inf, -math.inf
    fq.eval()
    with torch.no_grad():
        for start in range(0, calib.shape[0], batch_size):
            fq(calib[start:start + batch_size].float())
    by_name = {op.op_name: op for op in fq.ops}
    for op in fq.ops:
        op.observe = False
        op.in_fmts = tuple(by_name[n].fmt for n in op.inputs)
        if isinstance(op, FqInput):
            signed = op.signed_option if op.signed_option is not None else op.obs_lo < 0
        elif isinstance(op, (FqFlatten, FqMaxPool2d, FqSelect)):
            op.fmt = op.in_fmts[0]  # the format is unchanged
            continue
        else:
            signed = op.out_signed()
        if isinstance(op, FqLinear):
            # the logits format follows from the input and weight formats
            continue
        op.fmt = Format(opts.act_bits, signed,
                        _choose_frac(op.obs_lo, op.obs_hi, opts.act_bits, signed))
    fq.set_quantize(True)


# ----------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------


@dataclass
class QuantizedModel:
    """A quantised model: the calibrated fake-quant torch model and its layer-level po2 IR.

    ``module`` (the po2 IR, frontend/importer.py) is built from ``fake_quant`` when first
    asked for; call :meth:`refresh` after changing ``fake_quant``'s parameters. Integer
    inference runs the golden model on that IR, the one executor of the number semantics.
    """

    fake_quant: Po2FakeQuantModel
    name: str = "net"
    _module: Any = field(default=None, init=False, repr=False)

    def refresh(self) -> "QuantizedModel":
        self._module = None
        return self

    def rename(self, name: str) -> "QuantizedModel":
        """Name the network (its func's symbol); an IR built under another name is dropped."""
        if name != self.name:
            self.name, self._module = name, None
        return self

    @property
    def module(self):
        """The network as a `builtin.module` holding one func of po2 layer ops."""
        if self._module is None:
            from hashiflex.frontend.importer import fake_quant_to_po2

            self._module = fake_quant_to_po2(self.fake_quant, self.name)
        return self._module

    @property
    def layers(self) -> list:
        """The po2 layer ops of :attr:`module`, in network order."""
        from hashiflex.dialects import po2

        return [op for op in po2.network_func(self.module).body.block.ops
                if isinstance(op, po2.LayerOp)]

    @property
    def input_format(self) -> Format:
        return self.fake_quant.input_format

    @property
    def logits_frac(self) -> int:
        return self.fake_quant.logits_frac

    def quantize_input(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        return quantize_input(np.asarray(x, dtype=np.float32), self.input_format)

    def run_int(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Integer logits of float inputs (quantise, then the golden model on the IR)."""
        from hashiflex.golden import model as golden_model

        return golden_model.run_int(self.module, self.quantize_input(x))

    def predict(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        return np.argmax(self.run_int(x), axis=-1)


def _options(kwargs: dict[str, Any]) -> QuantOptions:
    try:
        return QuantOptions(**kwargs)
    except TypeError as e:
        raise TypeError(f"unknown quantisation option: {e}") from None


def quantize_ptq(model: nn.Module, calib: torch.Tensor, log: Callable[[str], None] | None = None,
                 **options: Any) -> QuantizedModel:
    """Post-training Po2 quantisation: trace, fold, round the weights, calibrate, export.

    ``ptq="adaround"`` (the default) chooses each conv weight's Po2 level to keep the layer
    outputs of the rounded network close to the float ones (frontend/ptq.py) and then
    calibrates the activation formats on the rounded network; ``ptq="nearest"`` rounds each
    weight to its nearest level and calibrates on the float network.
    """
    from hashiflex.frontend.ptq import PTQ_METHODS, adaround

    opts = _options(options)
    if opts.ptq not in PTQ_METHODS:
        raise ValueError(f"unknown PTQ method '{opts.ptq}' (expected one of {PTQ_METHODS})")
    fq = build_fake_quant(model, calib, opts)
    if opts.ptq == "adaround":
        adaround(fq, calib, log=log)
    calibrate(fq, calib)
    return QuantizedModel(fq.eval())


def _batches(train: Any, batch_size: int, gen: torch.Generator) -> Iterable:
    if isinstance(train, (tuple, list)) and len(train) == 2 and isinstance(train[0], torch.Tensor):
        x, y = train
        perm = torch.randperm(x.shape[0], generator=gen)
        for s in range(0, x.shape[0], batch_size):
            idx = perm[s:s + batch_size]
            yield x[idx], y[idx]
    else:
        yield from train


def distillation_loss(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      distill: float, temperature: float) -> torch.Tensor:
    """
    The QAT loss on one batch: cross entropy of the student's logits, mixed (`distill` > 0)
    with knowledge distillation from the float teacher,
    ``(1 - distill) * CE + distill * T^2 * KL(teacher_T || student_T)``.
    """
    logits = student(x)
    loss = F.cross_entropy(logits, y)
    if distill > 0:
        with torch.no_grad():
            teacher_logits = teacher(x)
        kd = F.kl_div(F.log_softmax(logits / temperature, dim=1),
                      F.log_softmax(teacher_logits / temperature, dim=1),
                      reduction="batchmean", log_target=True) * temperature ** 2
        loss = (1 - distill) * loss + distill * kd
    return loss


def qat_step(student: nn.Module, teacher: nn.Module, opt: torch.optim.Optimizer, sched: Any,
             x: torch.Tensor, y: torch.Tensor, distill: float, temperature: float) -> float:
    """One QAT optimiser step on a batch (`distillation_loss`, then Adam and the schedule);
    returns the batch's loss."""
    loss = distillation_loss(student, teacher, x, y, distill, temperature)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


def quantize_qat(model: nn.Module, calib: torch.Tensor, train: Any, epochs: int = 5,
                 lr: float = 1e-4, batch_size: int = 64, weight_decay: float = 0.0,
                 seed: int = 0, augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 start: QuantizedModel | None = None, log: Callable[[str], None] | None = None,
                 distill: float = 0.0, temperature: float = 2.0,
                 **options: Any) -> QuantizedModel:
    """Po2 quantisation-aware training: PTQ, then fine-tune the folded weights with STE.

    `train` is ``(x, y)`` tensors or any iterable of ``(x, y)`` batches (re-iterated every
    epoch). Activation formats stay frozen; weights and biases (BN folded) train with Adam
    and a cosine learning-rate schedule. `augment(x, generator)` may transform batches.
    ``distill > 0`` mixes in knowledge distillation from the float `model`:
    ``loss = (1 - distill) * CE + distill * T^2 * KL(teacher_T || student_T)``.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    q = start if start is not None else quantize_ptq(model, calib, **options)
    fq = q.fake_quant
    params = [p for p in fq.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * sum(1 for _ in _batches(train, batch_size, torch.Generator())))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    fq.train()
    was_training = model.training
    model.eval()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for xb, yb in _batches(train, batch_size, gen):
            if augment is not None:
                xb = augment(xb, gen)
            loss = qat_step(fq, model, opt, sched, xb.float(), yb, distill, temperature)
            total, count = total + loss * len(yb), count + len(yb)
        if log:
            log(f"qat epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f}")
    fq.eval()
    model.train(was_training)
    return QuantizedModel(fq)
