"""
The rate model (pure, no IR built): how many pixels each stream carries per beat, so that
every layer keeps up with an input of P pixels per cycle (`--pixels-per-cycle P`).

A stream of `lanes` q carries, per valid beat, q consecutive pixels of one row (lane 0 the
leftmost, in the low bits; all channels of each pixel). A row of width W takes
ceil(W/q) beats; the last beat of a row carries W - (ceil(W/q)-1)*q pixels in its low lanes,
the other lanes are ignored (don't care). Positions inside a layer are counted in the
*padded* raster of width ceil(W/q)*q, so a layer never needs a division.

Beats spanning rows. A stream may instead carry `rows` k > 1 whole rows per beat (lanes =
k*W, pixel (row r*k + i, column x) in lane i*W + x: the raster cut into beats of k*W
pixels, no padding); an image is H/k beats. The input does when P > W: P must then be a
multiple k*W of the width with k dividing H (`check_pixels_per_cycle`). A conv receiving k
rows per beat with stride sh x sw needs sh to divide k and k/sh to divide its output height
OH: its output carries k/sh whole output rows per beat (k/sh*OW lanes, one datapath copy
each, every input beat gives at most one output beat), so the MobileNetV2 stem (3x3 s2 at
32x32, P = 64 = 2 rows) produces one whole 16-wide row per cycle and every later layer runs
at P <= W as usual. Element-wise layers, residual adds and concats keep the rows; global
pooling sums them; windowed pooling refuses them (one-line RateError naming the layer).

Lanes per layer:
- the input: P (1 <= P <= W: P consecutive pixels of one row; W < P = k*W <= H*W: k rows);
- a conv receiving p > 1 lanes of one row with stride sh x sw has p/sw copies of its datapath sharing
  one line buffer that shifts p pixels per beat (when sw does not divide p, a lane widener
  first gathers k = sw/gcd(p, sw) beats into one of k*p lanes: k*p/sw copies). Its output rows
  come in bursts of p/sw lanes (one output row per sh input rows); when sh > 1 divides p/sw
  a row buffer re-serialises each burst into sh beats of p/(sh*sw) lanes, so its output has
  p/(sh*sw) lanes (`row_buffer_lanes`; otherwise p/sw). At p = 1 a conv is today's (one
  output every sh*sw accepted pixels at most). Windowed max/avg pooling is built on the
  conv's window (pool2d.py) and follows the same rule (at most one row per beat);
- requant, residual add, concat and select_channels: their input's lanes and rows (both
  operands of an add or concat must agree);
- global average pooling, flatten and the NPU: one item per image, one lane.

Cycles per image = beats of the input = H * ceil(W/P) (H/k for k rows per beat): no layer
produces more than one beat per beat it accepts, except a row buffer, which is only built
when its beats per image fit in the image's cycles; so the input sets the rate (the NPU is
sized for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from xdsl.ir import Operation, SSAValue

from hashiflex.dialects import po2
from hashiflex.passes.to_hw.lane_widener import widening


class RateError(ValueError):
    """The requested pixels per cycle are invalid or not supported (one-line message)."""


def check_pixels_per_cycle(pixels_per_cycle, height: int, width: int) -> int:
    """
    P as an int in [1, W], or a multiple k*W of the width with k dividing H (k rows per
    beat), the cases the lowering builds; else a one-line RateError naming the rule.
    """
    if isinstance(pixels_per_cycle, bool) or not isinstance(pixels_per_cycle, int) \
            or pixels_per_cycle < 1:
        raise RateError(f"--pixels-per-cycle must be a positive integer, got {pixels_per_cycle!r}")
    if pixels_per_cycle > height * width:
        raise RateError(f"--pixels-per-cycle {pixels_per_cycle} is larger than the input's "
                        f"{height}x{width} = {height * width} pixels")
    if pixels_per_cycle > width and pixels_per_cycle % width:
        raise RateError(f"--pixels-per-cycle {pixels_per_cycle} is larger than the input width "
                        f"{width} but not a multiple of it: a beat spanning rows carries whole "
                        f"rows (P = k*{width})")
    if pixels_per_cycle > width and height % (pixels_per_cycle // width):
        raise RateError(f"--pixels-per-cycle {pixels_per_cycle} = {pixels_per_cycle // width} "
                        f"rows of {width} per beat: the rows per beat must divide the input "
                        f"height {height}")
    return pixels_per_cycle


def input_rows(width: int, pixels_per_cycle: int) -> int:
    """Rows per beat of the input stream: P/W when P > W (whole rows), else 1."""
    return pixels_per_cycle // width if pixels_per_cycle > width else 1


def beats_per_row(width: int, lanes: int) -> int:
    return -(-width // lanes)


def beats_per_image(height: int, width: int, lanes: int, rows: int = 1) -> int:
    """Beats of one image on a stream of `lanes` pixels per beat (`rows` whole rows each
    when > 1, else ceil(W/lanes) beats per row)."""
    return height // rows if rows > 1 else height * beats_per_row(width, lanes)


def cycles_per_image(height: int, width: int, pixels_per_cycle: int) -> int:
    """Input beats per image: the pipeline's initiation interval in cycles."""
    return beats_per_image(height, width, pixels_per_cycle, input_rows(width, pixels_per_cycle))


def candidate_pixels(height: int, width: int) -> list[int]:
    """The P `check_pixels_per_cycle` accepts, in increasing order: 1..W, then k*W for the
    k dividing H."""
    return list(range(1, width + 1)) + [k * width for k in range(2, height + 1)
                                        if height % k == 0]


def pixels_for_rate(images_per_second: float, clock_mhz: float, height: int, width: int,
                    supported=lambda p: True) -> int:
    """
    The smallest P whose cycles per image reach `images_per_second` at `clock_mhz` and
    that `supported(P)` accepts (the network's strides can follow it, `stream_rates`).
    """
    if not images_per_second > 0:
        raise RateError(f"--images-per-second must be positive, got {images_per_second!r}")
    best = None
    for p in candidate_pixels(height, width):
        if not supported(p):
            continue
        rate = clock_mhz * 1e6 / cycles_per_image(height, width, p)
        if rate >= images_per_second:
            return p
        best = (p, rate)
    reach = f"at most {best[1]:.4g} images/s with P = {best[0]}" if best else "no P supported"
    raise RateError(f"--images-per-second {images_per_second:g} is more than the network "
                    f"reaches at {clock_mhz:g} MHz ({reach}: a beat carries at most the whole "
                    f"image, and the strides must follow the rows per beat)")


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
    """Lanes of every stream of a layer-level func (keyed by its values), and the whole
    rows per beat of the streams whose beats span rows (absent: one row or part of one)."""

    pixels_per_cycle: int
    cycles_per_image: int
    lanes: dict[SSAValue, int]
    rows: dict[SSAValue, int] = field(default_factory=dict)


def conv_rows(layer: str, rows: int, sh: int, out_height: int) -> int:
    """Output rows per beat of a conv receiving `rows` > 1 whole rows per beat with vertical
    stride `sh` (the module docstring's rule), else a one-line RateError naming the layer."""
    if rows % sh:
        raise RateError(f"layer '{layer}': {rows} input rows per beat into vertical stride "
                        f"{sh}: the rows per beat must be a multiple of the stride")
    out = rows // sh
    if out_height % out:
        raise RateError(f"layer '{layer}': {out} output rows per beat must divide its output "
                        f"height {out_height}")
    return out


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
    rows: dict[SSAValue, int] = {image: input_rows(w, p)}
    for op in ops:
        if not op.results:
            continue
        layer = op.properties.get("layer")
        lname = layer.data if layer is not None else op.name  # type: ignore[attr-defined]
        q_in = lanes.get(op.operands[0], 1) if op.operands else 1
        k_in = rows.get(op.operands[0], 1) if op.operands else 1
        k_out = 1
        if k_in > 1 and isinstance(op, (po2.MaxPool2dOp, po2.AvgPool2dOp)):
            raise RateError(f"layer '{lname}': {k_in} rows per beat into windowed pooling "
                            f"are not supported (at most one row per beat)")
        if isinstance(op, (po2.Conv2dOp, po2.UnrolledConv2dOp, po2.MaxPool2dOp,
                           po2.AvgPool2dOp)):  # windowed pooling: a conv's window (pool2d.py)
            sh, sw = op.stride
            oh, ow = _spatial(op.results[0])
            if k_in > 1:  # whole rows per beat: k/sh whole output rows (conv.py)
                k_out = conv_rows(lname, k_in, sh, oh)
                q_out = k_out * ow
            else:
                # sw not dividing the lanes: k beats widened into one (lane_widener.py)
                q_out = q_in * widening(q_in, sw) // sw if q_in > 1 else 1
                q_out = row_buffer_lanes(q_out, sh, oh, ow, cycles_per_image(h, w, p))
        elif isinstance(op, (po2.ResidualAddOp, po2.ConcatOp)):
            q_b, k_b = lanes.get(op.rhs, 1), rows.get(op.rhs, 1)
            if (q_b, k_b) != (q_in, k_in):
                rows_note = f" ({k_in} and {k_b} rows per beat)" if k_b != k_in else ""
                raise RateError(f"layer '{lname}': the operands of the {op.name} arrive "
                                f"with {q_in} and {q_b} pixels per cycle{rows_note}; "
                                f"not supported yet")
            q_out, k_out = q_in, k_in
        elif isinstance(op, (po2.AvgPoolOp, po2.NpuLinearOp)):
            q_out = 1
        else:  # requant, flatten
            q_out, k_out = q_in, k_in
        lanes[op.results[0]] = q_out
        if k_out > 1:
            rows[op.results[0]] = k_out
    return Rates(p, cycles_per_image(h, w, p), lanes, rows)
