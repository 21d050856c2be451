"""The integer primitives of docs/semantics.md, implemented once.

Every executor of po2 IR (the golden model, the interpreter, the torch fake-quant model's
reference checks) and every lowering that must agree with them (the hardware's
requantisation, pooling constants, clamp bounds) calls these functions, so that a rule
changes in exactly one place. The functions accept Python ints or numpy int64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATIONS = ("none", "relu", "relu6")


@dataclass(frozen=True)
class Format:
    """An activation format A(bits, signed, frac): q stands for q * 2^-frac."""

    bits: int
    signed: bool
    frac: int

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits} frac {self.frac}"


def round_shift(v, r: int):
    """Round half up and shift right by r (left by -r when r < 0), exactly."""
    if r > 0:
        return (v + (1 << (r - 1))) >> r
    if r == 0:
        return v
    return v * (1 << -r) if isinstance(v, np.ndarray) else v << -r


def saturate(v, lo: int, hi: int):
    if isinstance(v, np.ndarray):
        return np.clip(v, lo, hi)
    return min(max(v, lo), hi)


def clamp_bounds(fmt: Format, act: str) -> tuple[int, int]:
    """The output range of a requantisation into fmt followed by act."""
    lo, hi = fmt.lo, fmt.hi
    if act in ("relu", "relu6"):
        lo = max(lo, 0)
    if act == "relu6":
        six = 6 << fmt.frac if fmt.frac >= 0 else 6 >> -fmt.frac
        hi = min(hi, six)
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{act}' (expected one of {ACTIVATIONS})")
    return lo, hi


def requantize(v, shift: int, fmt: Format, act: str = "none"):
    """saturate(round_shift(v, shift), clamp_bounds(fmt, act))."""
    lo, hi = clamp_bounds(fmt, act)
    return saturate(round_shift(v, shift), lo, hi)


def quantize_input(x: np.ndarray, fmt: Format) -> np.ndarray:
    """Float input to the integer grid: saturate(floor(x * 2^frac + 0.5)) in float64."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * np.float64(2.0) ** fmt.frac + 0.5)
    return np.clip(scaled, fmt.lo, fmt.hi).astype(np.int64)


def decode_weights(codes: np.ndarray) -> np.ndarray:
    """Weight codes to integers at the channel's scale: sign(c) * 2^(|c|-1), 0 for c == 0."""
    codes = np.asarray(codes, dtype=np.int64)
    mags = np.where(codes == 0, 0, np.left_shift(1, np.maximum(np.abs(codes) - 1, 0)))
    return np.sign(codes) * mags


def conv_shift(in_frac: int, out_frac: int, exp_base: int) -> int:
    """The requantisation shift of a conv output channel: Fx - Fy - exp_base."""
    return in_frac - out_frac - exp_base


def avgpool_constants(count: int) -> tuple[int, int]:
    """(multiplier, shift) such that mean(x) ~ sum(x) * multiplier / 2^shift."""
    if count <= 0:
        raise ValueError(f"average pool over {count} positions")
    if count & (count - 1) == 0:
        return 1, count.bit_length() - 1
    shift = 16 + (count - 1).bit_length()
    return ((1 << shift) + count // 2) // count, shift


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """The minimal (width, signed) integer type holding every value in [lo, hi]."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return max(hi.bit_length(), 1), False
    width = max((-lo - 1).bit_length(), max(hi, 0).bit_length()) + 1
    return width, True


def type_range(width: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (width - 1)), (1 << (width - 1)) - 1
    return 0, (1 << width) - 1


def argmax_lowest(logits: np.ndarray) -> np.ndarray:
    """The class of each row: the lowest index holding the maximum (numpy's argmax rule)."""
    return np.argmax(logits, axis=-1)


def npu_logit_bits(in_features: int, in_fmt: Format, weight_bits: int, bias_bits: int) -> int:
    """Signed width of NPU logits holding the worst case of any weights of the widths."""
    w_lo, w_hi = type_range(weight_bits, True)
    products = [w * x for w in (w_lo, w_hi) for x in (in_fmt.lo, in_fmt.hi)]
    b_lo, b_hi = type_range(bias_bits, True)
    lo = in_features * min(products) + b_lo
    hi = in_features * max(products) + b_hi
    width, _ = bits_for_range(min(lo, -1), hi)
    return width


# ----------------------------------------------------------------------------------------
# Real -> integer rounding of the NPU classifier (one rule for the frontend's fake-quant
# model and the fine-tuning flow): round half up, saturate to the signed type's full
# (asymmetric) range, as quantize_input does for activations.
# ----------------------------------------------------------------------------------------


def round_half_up(v):
    """floor(v + 1/2) in float64: the one real -> integer rounding of docs/semantics.md."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5)


def npu_weight_frac(max_abs: float, weight_bits: int) -> int:
    """The largest f with round_half_up(max_abs * 2^f) <= 2^(bits-1) - 1 (0 for max_abs 0)."""
    if max_abs <= 0 or not np.isfinite(max_abs):
        return 0
    limit = (1 << (weight_bits - 1)) - 0.5  # floor(v + 1/2) <= hi  <=>  v < hi + 1/2
    f = int(np.floor(np.log2(limit / max_abs)))
    while np.ldexp(max_abs, f + 1) < limit:
        f += 1
    while np.ldexp(max_abs, f) >= limit:
        f -= 1
    return f


def quantize_npu_weights(w, weight_frac: int, weight_bits: int) -> np.ndarray:
    """Real weights -> saturate(round_half_up(w * 2^weight_frac)) as float64 integers."""
    lo, hi = type_range(weight_bits, True)
    return np.clip(round_half_up(np.asarray(w, dtype=np.float64) * np.ldexp(1.0, weight_frac)),
                   lo, hi)


def quantize_npu_bias(b, bias_frac: int) -> np.ndarray:
    """Real bias -> round_half_up(b * 2^bias_frac), not saturated (callers check the fit)."""
    return round_half_up(np.asarray(b, dtype=np.float64) * np.ldexp(1.0, bias_frac))


# ----------------------------------------------------------------------------------------
# Windowed pooling and the element-wise activations beyond ReLU/ReLU6 (docs/semantics.md:
# MaxPool2d, AvgPool2d, LeakyReLU, Clamp). One implementation for the golden model, the
# interpreter and the frontend's integer executor.
# ----------------------------------------------------------------------------------------


def pool_windows(x: np.ndarray, kernel, stride, padding, out_hw, fill: int) -> np.ndarray:
    """
    The windows of (N, C, H, W) as (N, C, KH, KW, OH, OW): element [n, c, i, j, oy, ox] is
    x[n, c, oy*sh - top + i, ox*sw - left + j], `fill` outside the image.
    """
    (kh, kw), (sh, sw), (top, left, bottom, right), (oh, ow) = kernel, stride, padding, out_hw
    n, c, h, w = x.shape
    xp = np.full((n, c, h + top + bottom, w + left + right), fill, dtype=np.int64)
    xp[:, :, top:top + h, left:left + w] = x
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return cols


def maxpool2d(x: np.ndarray, kernel, stride, padding, out_hw, fmt: Format) -> np.ndarray:
    """Max over each window; padding is the format's minimum code (torch's -inf: every
    window holds at least one image pixel, so the pad never wins). Format unchanged."""
    return pool_windows(x, kernel, stride, padding, out_hw, fmt.lo).max(axis=(2, 3))


def avgpool2d(x: np.ndarray, kernel, stride, padding, out_hw, shift: int,
              out_fmt: Format) -> np.ndarray:
    """Windowed average with zero padding counted (torch's count_include_pad=True): the
    window's sum times avgpool_constants(KH*KW), requantised by `shift` (the constants'
    shift + Fx - Fy) into out_fmt."""
    mult, _ = avgpool_constants(kernel[0] * kernel[1])
    total = pool_windows(x, kernel, stride, padding, out_hw, 0).sum(axis=(2, 3))
    return requantize(total * mult, shift, out_fmt)


def leaky_relu(x, shift: int, slope_shift: int, fmt: Format):
    """x >= 0: requantize(x, shift); x < 0: requantize(x, shift + slope_shift) (the slope
    2^-slope_shift folded into the one rounding)."""
    return np.where(np.asarray(x) >= 0, requantize(x, shift, fmt),
                    requantize(x, shift + slope_shift, fmt))


def clamp(x, shift: int, lo: int, hi: int):
    """Hardtanh: saturate(round_shift(x, shift), lo, hi), lo/hi already inside the format."""
    return saturate(round_shift(x, shift), lo, hi)


def real_bound(value: float, frac: int) -> int:
    """A real clamp bound on the integer grid of frac: floor(v * 2^frac + 1/2) (rounding is
    monotone, so clamping the rounded value equals rounding the clamped one)."""
    return int(np.floor(np.ldexp(np.float64(value), frac) + 0.5))
