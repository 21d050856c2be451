"""
The rate model (pure, no IR built): how many pixels each stream carries per beat, so that
every layer keeps up with an input of P pixels per cycle (`--pixels-per-cycle P`).

A stream of `lanes` q carries, per valid beat, q consecutive pixels of one row (lane 0 the
leftmost, in the low bits; all channels of each pixel). A row of width W takes
ceil(W/q) beats; the last beat of a row carries W - (ceil(W/q)-1)*q pixels in its low lanes,
the other lanes are ignored (don't care). Positions inside a layer are counted in the
*padded* raster of width ceil(W/q)*q, so a layer never needs a division.

Lanes per layer:
- the input: P (1 <= P <= W: a beat never spans two rows; W < P <= H*W is not supported yet);
- a conv receiving p > 1 lanes with stride sh x sw has p/sw copies of its datapath sharing
  one line buffer that shifts p pixels per beat (when sw does not divide p, a lane widener
  first gathers k = sw/gcd(p, sw) beats into one of k*p lanes: k*p/sw copies). Its output rows
  come in bursts of p/sw lanes (one output row per sh input rows); when sh > 1 divides p/sw
  a row buffer re-serialises each burst into sh beats of p/(sh*sw) lanes, so its output has
  p/(sh*sw) lanes (`row_buffer_lanes`; otherwise p/sw). At p = 1 a conv is today's (one
  output every sh*sw accepted pixels at most). Windowed max/avg pooling is built on the
  conv's window (pool2d.py) and follows the same rule;
- requant, residual add, concat and select_channels: their input's lanes (both operands of
  an add or concat must agree);
- global average pooling, flatten and the NPU: one item per image, one lane.

Cycles per image = beats of the input = H * ceil(W/P): no layer produces more than one
beat per beat it accepts, except a row buffer, which is only built when its beats per image
fit in the image's cycles; so the input sets the rate (the NPU is sized for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xdsl.ir import Operation, SSAValue

from hashiflex.dialects import po2
from hashiflex.passes.to_hw.lane_widener import widening


class RateError(ValueError):
    """The requested pixels per cycle are invalid or not supported (one-line message)."""


def check_pixels_per_cycle(pixels_per_cycle, height: int, width: int) -> int:
    """P as an int in [1, W] (the cases the lowering builds), else a one-line RateError."""
    if isinstance(pixels_per_cycle, bool) or not isinstance(pixels_per_cycle, int) \
            or pixels_per_cycle < 1:
        raise RateError(f"--pixels-per-cycle must be a positive integer, got {pixels_per_cycle!r}")
    if pixels_per_cycle > height * width:
        raise RateError(f"--pixels-per-cycle {pixels_per_cycle} is larger than the input's "
                        f"{height}x{width} = {height * width} pixels")
    if pixels_per_cycle > width:
        raise RateError(f"--pixels-per-cycle {pixels_per_cycle} is larger than the input width "
                        f"{width}: beats spanning several rows are not supported yet")
    return pixels_per_cycle


def beats_per_row(width: int, lanes: int) -> int:
    return -(-width // lanes)


def cycles_per_image(height: int, width: int, pixels_per_cycle: int) -> int:
    """Input beats per image: the pipeline's initiation interval in cycles."""
    return height * beats_per_row(width, pixels_per_cycle)


def pixels_for_rate(images_per_second: float, clock_mhz: float, height: int, width: int,
                    supported=lambda p: True) -> int:
    """
    The smallest P whose cycles per image reach `images_per_second` at `clock_mhz` and
    that `supported(P)` accepts (the network's strides can follow it, `stream_rates`).
    """
    if not images_per_second > 0:
        raise RateError(f"--images-per-second must be positive, got {images_per_second!r}")
    for p in range(1, width + 1):
        if clock_mhz * 1e6 / cycles_per_image(height, width, p) >= images_per_second \
                and supported(p):
            return p
    best = clock_mhz * 1e6 / cycles_per_image(height, width, width)
    raise RateError(f"--images-per-second {images_per_second:g} needs more than one input row "
                    f"per cycle at {clock_mhz:g} MHz, or pixels per cycle the network's strides "
                    f"cannot follow yet (at most {best:.4g} images/s with {width} pixels per "
                    f"cycle)")


def row_buffer_lanes(lanes: int, sh: int, out_height: int, out_width: int,
                     frame_beats: int) -> int:
    """
    The output lanes of a conv whose datapath copies produce `lanes` pixels per beat but
    only one output row per `sh` input rows: lanes/sh when a row buffer can re-serialise
    each burst (lanes a multiple of sh, and the serialised rows, out_height * ceil(out_width
    / (lanes/sh)) beats, fit in the image's `frame_beats` cycles), else `lanes` (conv.py,
    `RowBuffer`).
    """
    if sh < 2 or lanes < sh or lanes % sh:
        return lanes
    reduced = lanes // sh
    if out_height * beats_per_row(out_width, reduced) > frame_beats:
        return lanes
    return reduced


@dataclass(frozen=True)
class Rates:
    """Lanes of every stream of a layer-level func (keyed by its values)."""

    pixels_per_cycle: int
    cycles_per_image: int
    lanes: dict[SSAValue, int]


def _spatial(value: SSAValue) -> tuple[int, int]:
    dims = value.type.dims  # type: ignore[attr-defined]
    return (dims[1], dims[2]) if len(dims) == 3 else (1, 1)


def supports(image: SSAValue, ops: Iterable[Operation], pixels_per_cycle: int) -> bool:
    """Whether every layer can take the lanes `pixels_per_cycle` gives it."""
    try:
        stream_rates(image, ops, pixels_per_cycle)
    except RateError:
        return False
    return True


def stream_rates(image: SSAValue, ops: Iterable[Operation], pixels_per_cycle: int) -> Rates:
    """
    The lanes of every stream, from the input's P through the layers in order; a layer
    that cannot take its input's lanes yet raises a one-line RateError naming it.
    """
    h, w = _spatial(image)
    p = check_pixels_per_cycle(pixels_per_cycle, h, w)
    lanes: dict[SSAValue, int] = {image: p}
    for op in ops:
        if not op.results:
            continue
        layer = op.properties.get("layer")
        lname = layer.data if layer is not None else op.name  # type: ignore[attr-defined]
        q_in = lanes.get(op.operands[0], 1) if op.operands else 1
        if isinstance(op, (po2.Conv2dOp, po2.UnrolledConv2dOp, po2.MaxPool2dOp,
                           po2.AvgPool2dOp)):  # windowed pooling: a conv's window (pool2d.py)
            sh, sw = op.stride
            # sw not dividing the lanes: k beats widened into one (lane_widener.py)
            q_out = q_in * widening(q_in, sw) // sw if q_in > 1 else 1
            oh, ow = _spatial(op.results[0])
            q_out = row_buffer_lanes(q_out, sh, oh, ow, cycles_per_image(h, w, p))
        elif isinstance(op, (po2.ResidualAddOp, po2.ConcatOp)):
            q_b = lanes.get(op.rhs, 1)
            if q_b != q_in:
                raise RateError(f"layer '{lname}': the operands of the {op.name} arrive "
                                f"with {q_in} and {q_b} pixels per cycle; not supported yet")
            q_out = q_in
        elif isinstance(op, (po2.AvgPoolOp, po2.NpuLinearOp)):
            q_out = 1
        else:  # requant, flatten
            q_out = q_in
        lanes[op.results[0]] = q_out
    return Rates(p, cycles_per_image(h, w, p), lanes)
