"""
Simulation of a compiled design: stream images through its RTL (Verilator) back to back,
loading NPU weights through the write port before or during the stream, and compare every
output with the golden model, each image with the NPU weights current when it entered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashiflex.design_dir import Design, atomic_file, open_design, parse_ir
from hashiflex.errors import InputError, ToolchainError
from hashiflex.loading import load_images
from hashiflex.npu_weights import (
    check_npu_weights,
    integer_weights,
    load_weights,
    logits_frac,
    npu_write_sequence,
    padded_weights,
)
from hashiflex.packing import pack_beats, split_fields
from hashiflex.progress import QUIET, Progress


@dataclass
class SimulationResult:
    logits: np.ndarray  # (N, classes) int64, from the RTL
    classes: np.ndarray  # (N,) int64, from the RTL
    out_cycles: np.ndarray  # cycle of each out_valid
    cycles_per_image: float  # measured: median spacing of outputs
    latency_cycles: int  # measured: first pixel of image 0 accepted -> its out_valid
    stalls: int  # cycles with in_valid && !in_ready
    compared: int = 0  # outputs compared with the golden model (0 without --check)
    mismatches: int = 0
    golden_logits: np.ndarray | None = None
    golden_classes: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


def build_simulator(design: Design, progress: Progress = QUIET):
    from hashiflex.backends import verilator

    ports = [verilator.Port(p["name"], p["width"], p["dir"]) for p in design.manifest["ports"]]
    sv_files = [design.path / f for f in design.manifest["files"]["sv"]]
    try:
        with progress.step("building the Verilator model (cached after the first time)"):
            return verilator.build(sv_files, design.manifest["top"], ports, _build_dir(design))
    except verilator.SimulatorNotFound as error:
        raise ToolchainError(str(error))
    except verilator.BuildError as error:
        raise ToolchainError(f"Verilator failed to build '{design.path}': {str(error).splitlines()[0]}")


def _build_dir(design: Design) -> Path:
    """
    Where the simulator of `design` is built: its own obj_dir, or, for a design directory
    this user cannot write (shared, read-only), a directory in the user's cache.
    """
    import hashlib

    from hashiflex.backends.verilator import cache_root

    if os.access(design.path, os.W_OK):
        return design.path / "obj_dir"
    where = hashlib.sha256(str(design.path.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "designs" / where


def simulate(
    design_dir: Path | str,
    inputs: Path | str | np.ndarray,
    *,
    weights: Path | str | dict | None = None,
    check: bool = False,
    out: Path | str | None = None,
    writes_mid_stream: list[tuple[int, dict]] | None = None,
    progress: Progress = QUIET,
) -> SimulationResult:
    """
    Stream images through the RTL back to back and collect every output. With `weights`,
    the NPU is loaded through its write port (and swapped in) before the first image. With
    `check`, every output is compared with the golden model.

    `writes_mid_stream` is for reprogramming tests: [(k, weights)] loads `weights` and
    swaps once at least k pixels have been accepted; the golden model then uses, for each
    image, the weights current when its first pixel entered.
    """
    from hashiflex.backends import verilator
    from hashiflex.golden.semantics import Format, quantize_input
    from hashiflex.passes.to_hw.rates import cycles_per_image

    design = open_design(design_dir)
    m = design.manifest
    shape = tuple(m["input_shape"])
    images = inputs if isinstance(inputs, np.ndarray) else load_images(inputs, "inputs", shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise InputError(f"inputs have shape {list(images.shape)}; the design takes Nx{'x'.join(map(str, shape))}")
    if np.isnan(images).any():
        raise InputError("inputs hold NaN values")
    fmt = Format(m["input_format"]["bits"], m["input_format"]["signed"], m["input_format"]["frac"])
    x_int = quantize_input(images, fmt)
    module = parse_ir(design.file("po2"))
    writes: list[tuple[int, int, int]] = []
    swaps: list[int] = []
    schedule: list[tuple[int, dict]] = []  # (first image index, weights) for the golden model
    npu_given = None
    if weights is not None:
        npu = integer_weights(weights) if isinstance(weights, dict) else load_weights(weights)
        npu_given = npu
        check_npu_weights(module, npu)
        writes += [(-1, a, d) for a, d in npu_write_sequence(m, npu)]
        swaps.append(-1)
        schedule.append((0, padded_weights(m, npu)))
    lanes = m.get("pixels_per_cycle", 1)  # input pixels per beat
    # beats, as the harness counts (P = k*W: k whole rows per beat)
    pixels_per_image = cycles_per_image(shape[1], shape[2], lanes)
    for k, npu in writes_mid_stream or []:
        npu = integer_weights(npu)
        check_npu_weights(module, npu)
        writes += [(k, a, d) for a, d in npu_write_sequence(m, npu)]
        swaps.append(k)
        # the swap pulse comes after the writes, one per cycle; the image it applies to is
        # the first whose first pixel had not been accepted when the pulse was seen, which
        # the simulation reports back (see below)
        schedule.append((None, padded_weights(m, npu)))
    simulator = build_simulator(design, progress)
    pixels = pack_beats(x_int, fmt.bits, lanes)
    what = "pixels" if lanes == 1 else f"beats of {lanes} pixels"
    with progress.step(f"simulating {len(images)} images ({len(pixels)} {what})"):
        try:
            outputs = simulator.run(pixels, writes=writes, swaps=swaps, drain_outputs=len(images))
        except verilator.SimulationError as error:
            raise ToolchainError(str(error).splitlines()[0])
    outputs = outputs[: len(images)]
    if len(outputs) < len(images):
        raise ToolchainError(f"the RTL produced {len(outputs)} outputs for {len(images)} images")
    names = [p["name"] for p in m["ports"] if p["dir"] == "out" and p["name"] not in ("in_ready", "out_valid")]
    cls_i, log_i = names.index("out_class"), names.index("out_logits")
    classes = np.array([o[1][cls_i] for o in outputs], dtype=np.int64)
    logits = np.array(
        [split_fields(o[1][log_i], m["classes"], m["logit_bits"]) for o in outputs], dtype=np.int64
    )
    out_cycles = np.array([o[0] for o in outputs], dtype=np.int64)
    pre_cycles = sum(1 for w in writes if w[0] < 0) + sum(1 for s in swaps if s < 0)
    spacing = float(np.median(np.diff(out_cycles))) if len(out_cycles) > 1 else float("nan")
    result = SimulationResult(
        logits=logits,
        classes=classes,
        out_cycles=out_cycles,
        cycles_per_image=spacing,
        latency_cycles=int(out_cycles[0] - pre_cycles),
        stalls=simulator.stats.stalls,
    )
    if check:
        with progress.step("golden model"):
            gold_logits, gold_classes = golden_with_schedule(
                module, x_int, schedule, swap_images=_swap_images(simulator, writes_mid_stream, pixels_per_image)
            )
        bad = np.any(gold_logits != logits, axis=1) | (gold_classes != classes)
        result.compared = len(images)
        result.mismatches = int(bad.sum())
        result.golden_logits, result.golden_classes = gold_logits, gold_classes
        message = (
            f"compared {result.compared} outputs (logits and class) with the golden model: "
            f"{result.compared - result.mismatches} equal, {result.mismatches} differ"
        )
        print(message)
        if result.mismatches:
            first = int(np.flatnonzero(bad)[0])
            print(f"first difference: image {first}: RTL class {classes[first]} logits {logits[first].tolist()}, "
                  f"golden class {gold_classes[first]} logits {gold_logits[first].tolist()}")
    if out is not None:
        with atomic_file(out, binary=True) as stream:
            np.savez(stream, logits=logits, classes=classes, out_cycles=out_cycles,
                     logits_frac=logits_frac(module, npu_given))
        progress.say(f"wrote {out}")
    progress.say(
        f"{len(images)} images: {spacing:g} cycles/image measured "
        f"(report: {design.report['cycles_per_image']}), latency {result.latency_cycles} cycles, "
        f"{result.stalls} stall cycles"
    )
    return result


def _swap_images(simulator, writes_mid_stream, pixels_per_image: int) -> list[int]:
    """
    For each mid-stream reload, the first image classified with it. The swap pulse is
    issued once k pixels were accepted and all of the reload's writes are done; it applies
    to every image whose first pixel comes after it. The harness reports the accepted
    pixel count at each swap pulse.
    """
    if not writes_mid_stream:
        return []
    accepted_at_swaps = simulator.swap_accepted_counts()
    return [-(-count // pixels_per_image) for count in accepted_at_swaps[-len(writes_mid_stream):]]


def golden_with_schedule(module, x_int: np.ndarray, schedule: list, swap_images: list[int]):
    """Golden logits/classes when the NPU weights change at given images."""
    from hashiflex.golden import model as golden_model
    from hashiflex.golden.semantics import argmax_lowest

    # (first image, weights) segments; the design's own weights until the first reload
    mid = iter(swap_images)
    segments = [(0, None)] + [
        (first if first is not None else next(mid), npu) for first, npu in schedule
    ]
    pieces = []
    for i, (begin, npu) in enumerate(segments):
        end = min(segments[i + 1][0] if i + 1 < len(segments) else len(x_int), len(x_int))
        if end <= begin:
            continue
        w = None if npu is None else npu["weights"]
        b = None if npu is None else npu["bias"]
        try:
            pieces.append(golden_model.run_int(module, x_int[begin:end], w, b))
        except golden_model.GoldenError as error:
            raise InputError(f"golden model: {error}")
    logits = np.concatenate(pieces)
    return logits, argmax_lowest(logits)
