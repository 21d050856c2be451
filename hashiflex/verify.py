"""
`hashiflex verify DIR --inputs X.npy`: every layer module of a compiled design checked on
its own in Verilator, so that a network far too large for one whole-top Verilator build
is still checked bit for bit, one module (a job) at a time, locally or on a Dask cluster.

For each layer module M (the top is wiring and is not a job):
- its stimulus is the golden model's activation at M's input, packed as M's input port
  expects (hashiflex.packing: channel 0 in the low bits, `in_data` width / (C x bits)
  pixels per beat); a residual add gets both operands, one pixel of each per beat;
- its expected output is the golden model's activation at M's output (for the NPU: the
  logits and the class), packed the same way; every output beat is compared bit for bit
  (lanes past a row's end, which the hardware leaves undefined, are masked);
- its cycles per image are measured (input beats streamed back to back, as fast as M
  accepts them, or one every k cycles for a conv whose datapath relies on its inputs
  being held that long in the network: report's `input_interval_cycles`, multicycle.py)
  and compared with the report: a layer must take exactly its input beats (times k) per
  image, no more than the pipeline's cycles per image; the NPU its
  `npu_cycles_per_image`.

M runs in a small generated wrapper top with the harness's streaming interface (en tied
high, the NPU write port idle, `in_ready` = not `stall`). A job carries everything it
needs as data (the module's SV text, the stimulus, the expected words), so a worker on
another machine needs no shared file system; its Verilator build is cached by content in
the worker's cache (hashiflex.backends.verilator.cache_root).
"""

from __future__ import annotations

import json
import re
import resource
import time
from pathlib import Path

import numpy as np

from hashiflex.errors import CheckFailed, DesignError, InputError
from hashiflex.jobs import Job, JobResult, content_key, run_jobs

WRAPPER_TOP = "hashiflex_verify_top"

_PORT = re.compile(r"^\s*(input|output)\s+(?:wire|logic)?\s*(?:\[(\d+):0\]\s*)?([A-Za-z_]\w*)\s*,?\s*$",
                   re.MULTILINE)


def module_ports(sv_text: str, module: str) -> list[tuple[str, int, str]]:
    """(name, width, "in"/"out") of `module`'s header, as our SV emitter writes it."""
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", sv_text, re.MULTILINE)
    if start is None:
        raise DesignError(f"module '{module}': its SV file does not define `module {module} (`")
    end = sv_text.find(");", start.end())
    header = sv_text[start.end():end]
    ports = [(m.group(3), int(m.group(2)) + 1 if m.group(2) else 1,
              "in" if m.group(1) == "input" else "out") for m in _PORT.finditer(header)]
    if not ports:
        raise DesignError(f"module '{module}': no ports found in its SV header")
    return ports


# -- the wrapper top (one per module job) -------------------------------------------------

_TIED_LOW = {"we", "waddr", "wdata", "swap", "swap_at"}  # the NPU write port, idle


def wrapper_sv(module: str, ports: list[tuple[str, int, str]],
               pace: int = 1) -> tuple[str, list[tuple[str, int, str]]]:
    """A top with the harness's interface around `module`; returns (SV text, top ports).
    `pace` k > 1: the top takes a beat at most every k cycles (`in_ready` low in between),
    the gap the module's input has in the network and its datapath relies on (a conv with
    held inputs: report's `input_interval_cycles`, passes/to_hw/multicycle.py)."""
    widths = {name: width for name, width, _ in ports}
    inputs = {name for name, _, d in ports if d == "in"}
    outputs = [(name, width) for name, width, d in ports if d == "out"]
    binary = {"a_valid", "a_data", "b_valid", "b_data"} <= inputs
    in_width = widths["a_data"] + widths["b_data"] if binary else widths.get("in_data")
    if in_width is None or not ({"in_valid", "a_valid"} & inputs) or "out_valid" not in widths:
        raise DesignError(f"module '{module}' has no streaming interface (in_valid/in_data, "
                          "out_valid) that the verifier can drive")
    connect = []
    for name, width, direction in ports:
        if direction == "out":
            connect.append(f"    .{name}({'dut_stall' if name == 'stall' else name})")
            continue
        match name:
            case "clk" | "rst" | "in_data":
                source = name
            case "in_valid" | "a_valid" | "b_valid":
                source = "in_valid & pace_ok" if pace > 1 else "in_valid"
            case "en":
                source = "1'b1"
            case "a_data":
                source = f"in_data[{widths['a_data'] - 1}:0]"
            case "b_data":
                source = f"in_data[{in_width - 1}:{widths['a_data']}]"
            case _ if name in _TIED_LOW:
                source = f"{width}'h0"
            case _:
                raise DesignError(f"module '{module}' has an input '{name}' the verifier does not know")
        connect.append(f"    .{name}({source})")
    top_ports = [("clk", 1, "in"), ("rst", 1, "in"), ("in_valid", 1, "in"),
                 ("in_data", in_width, "in"), ("in_ready", 1, "out")]
    top_ports += [(n, w, "out") for n, w in outputs if n != "stall"]
    decl = ",\n".join(f"  {'input ' if d == 'in' else 'output'} wire {f'[{w - 1}:0] ' if w > 1 else ''}{n}"
                      for n, w, d in top_ports)
    lines = [f"// Generated by hashiflex verify: '{module}' alone, driven by the Verilator harness.",
             f"module {WRAPPER_TOP} (", decl, ");"]
    ready = "~dut_stall" if "stall" in widths else "1'b1"
    if "stall" in widths:
        lines += ["  wire dut_stall;"]
    if pace > 1:  # cycles since the last beat taken, saturating at pace - 1
        bits = max(1, (pace - 1).bit_length())
        last = f"{bits}'d{pace - 1}"
        lines += [f"  reg [{bits - 1}:0] pace_count;",
                  f"  wire pace_ok = pace_count == {last};",
                  "  always @(posedge clk)",
                  f"    if (rst) pace_count <= {last};",
                  f"    else if (in_valid & in_ready) pace_count <= {bits}'d0;",
                  f"    else if (!pace_ok) pace_count <= pace_count + {bits}'d1;"]
        ready = f"{ready} & pace_ok"
    lines += [f"  assign in_ready = {ready};"]
    lines += [f"  {module} dut (", ",\n".join(connect), "  );", "endmodule", ""]
    return "\n".join(lines), top_ports


# -- one module (runs in a worker) ---------------------------------------------------------


def verify_module(spec: dict) -> dict:
    """Build `spec["module"]` in its wrapper, stream the stimulus, compare; a JSON-able result."""
    from hashiflex.backends import verilator

    name, sv, wrapper = spec["module"], spec["sv"], spec["wrapper"]
    key = content_key(sv, wrapper)
    workdir = verilator.cache_root() / "verify" / f"{name}-{key[:16]}"
    workdir.mkdir(parents=True, exist_ok=True)
    files = []
    for file_name, text in ((f"{name}.sv", sv), (f"{WRAPPER_TOP}.sv", wrapper)):
        path = workdir / file_name
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_name(f".{file_name}.{key[:8]}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
        files.append(path)
    ports = [verilator.Port(n, w, d) for n, w, d in spec["ports"]]
    started = time.perf_counter()
    try:
        simulator = verilator.build(files, WRAPPER_TOP, ports, workdir)
    except verilator.BuildError as error:
        raise RuntimeError(f"Verilator build failed: {str(error).strip().splitlines()[0]}") from None
    built = time.perf_counter()
    per_image = spec["out_beats_per_image"]
    images = spec["images"]
    # one image more than given (drained zeros): its first output gives the last spacing
    outputs = simulator.run(spec["stimulus"], drain_outputs=(images + 1) * per_image)
    simulated = time.perf_counter()
    out_names = [n for n, _, d in spec["ports"] if d == "out" and n not in ("in_ready", "out_valid")]
    expected, masks = spec["expected"], spec["masks"]
    differ, first = 0, None
    for index, want in enumerate(expected):
        got = outputs[index][1] if index < len(outputs) else None
        mask = masks[index % len(masks)]
        bad = got is None or any((g ^ w) & m for g, w, m in zip(got, want, mask))
        if bad:
            differ += 1
            if first is None:
                first = {"image": index // per_image, "beat": index % per_image,
                         "got": None if got is None else [hex(g) for g in got],
                         "expected": [hex(w) for w in want], "ports": out_names}
    starts = [outputs[k * per_image][0] for k in range(images + 1) if k * per_image < len(outputs)]
    cycles = float(np.median(np.diff(starts))) if len(starts) > 1 else float("nan")
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return {
        "module": name,
        "beats_compared": len(expected),
        "beats_differ": differ,
        "first_difference": first,
        "cycles_per_image": cycles,
        "build_seconds": round(built - started, 2),
        "simulate_seconds": round(simulated - built, 3),
        # of the worker process so far: its own job only with a fresh worker per job
        "peak_rss_mb": round(max(u.ru_maxrss for u in usage) / 1024, 1),  # KB on Linux
        "cpu_seconds": round(sum(u.ru_utime + u.ru_stime for u in usage), 1),
    }


# -- the plan (the client): golden activations -> one job per module -------------------------


def _lanes(port_width: int, channels: int, bits: int, module: str, port: str) -> int:
    pixel = channels * bits
    if port_width % pixel:
        raise DesignError(f"module '{module}': port {port} is {port_width} bits, not a whole "
                          f"number of {channels}-channel x {bits}-bit pixels (does its SV match the design?)")
    return port_width // pixel


def _beats(act: np.ndarray, bits: int, lanes: int, rows: int = 1) -> tuple[list[int], list[int]]:
    """An activation (N, C, H, W) as port words, and the mask of each beat of one image's row
    pattern (lanes past a row's end are don't-care); with `rows` > 1 whole rows per beat
    (lanes = rows * W) the pattern is one beat of `rows` rows, every lane live."""
    from hashiflex.packing import pack_beats, pack_fields

    if act.ndim == 2:
        act = act.reshape(*act.shape, 1, 1)
    _, channels, _, width = act.shape
    words = pack_beats(act, bits, lanes, rows)
    pixel = (1 << (channels * bits)) - 1
    if rows > 1:
        return words, [pack_fields([pixel] * lanes, channels * bits)]
    row = []
    for beat in range(-(-width // lanes)):
        live = min(lanes, width - beat * lanes)
        row.append(pack_fields([pixel] * live, channels * bits))
    return words, row


def plan(design_dir: Path | str, inputs: Path | str | np.ndarray,
         modules: list[str] | None = None) -> tuple[list[Job], dict]:
    """The jobs (one per module) and what the summary needs (expected cycles per module)."""
    from hashiflex.design_dir import open_design, parse_ir
    from hashiflex.dialects import po2
    from hashiflex.golden import model as golden_model
    from hashiflex.golden.semantics import Format, argmax_lowest, quantize_input
    from hashiflex.loading import check_images, load_images
    from hashiflex.packing import pack_fields
    from hashiflex.passes.to_hw.rates import beats_per_image, stream_rates

    design = open_design(design_dir)
    m, report = design.manifest, design.report
    shape = tuple(m["input_shape"])
    if isinstance(inputs, np.ndarray):
        images = check_images(inputs, "inputs", shape)
    else:
        images = load_images(inputs, "inputs", shape)
    if len(images) == 0:
        raise InputError("inputs hold no images")
    if np.isnan(images).any():
        raise InputError("inputs hold NaN values")
    fmt = m["input_format"]
    x_int = quantize_input(images, Format(fmt["bits"], fmt["signed"], fmt["frac"]))
    network = parse_ir(design.file("po2"))
    acts: dict = {}
    try:
        func = golden_model.find_network(network)
        acts[func.args[0]] = x_int
        golden_model.run_int(network, x_int,
                             capture=lambda op, out: acts.__setitem__(op.results[0], out))
    except golden_model.GoldenError as error:
        raise InputError(f"golden model: {error}") from None

    layer_module = {l["name"]: l["module"] for l in report["layers"] if l.get("module")}
    paces = {l["module"]: l.get("input_interval_cycles", 1) for l in report["layers"]
             if l.get("module")}
    sv_files = {Path(f).stem: design.path / f for f in m["files"]["sv"]}
    ops = [op for op in func.body.block.ops
           if isinstance(op, po2.LayerOp) and layer_module.get(op.layer) in sv_files]
    available = [layer_module[op.layer] for op in ops]
    wanted = available if not modules else modules
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InputError(f"--modules: no layer module {', '.join(unknown)} in '{design.path}' "
                         f"(modules: {', '.join(available)})")
    pipeline_cycles = report["pipeline_cycles_per_image"]
    # whole rows per beat of every stream (P = k*W, passes/to_hw/rates.py)
    rows = stream_rates(func.args[0], list(func.body.block.ops),
                        report.get("pixels_per_cycle", 1)).rows
    jobs, expectations = [], {}
    for op in ops:
        name = layer_module[op.layer]
        if name not in wanted:
            continue
        sv = sv_files[name].read_text()
        ports = module_ports(sv, name)
        widths = {n: w for n, w, _ in ports}
        pace = paces.get(name, 1)
        wrapper, top_ports = wrapper_sv(name, ports, pace)
        operands = [acts[o] for o in op.operands]
        in_types = [o.type for o in op.operands]
        in_fmt = in_types[0].fmt
        in_channels = in_types[0].dims[0]
        data_port = "a_data" if "a_data" in widths else "in_data"
        lanes_in = _lanes(widths[data_port], in_channels, in_fmt.bits, name, data_port)
        rows_in = rows.get(op.operands[0], 1)
        words = [_beats(a, t.fmt.bits, lanes_in, rows_in)[0]
                 for a, t in zip(operands, in_types)]
        if len(words) == 2:  # residual add: a in the low bits, b above it
            stimulus = [a | (b << widths["a_data"]) for a, b in zip(*words)]
        else:
            stimulus = words[0]
        out = acts[op.results[0]]
        if isinstance(op, po2.NpuLinearOp):
            out_fmt = op.output.type.fmt
            classes = argmax_lowest(out)
            expected = [[int(c), pack_fields(row, out_fmt.bits)] for c, row in zip(classes.tolist(), out.tolist())]
            names = [n for n, _, d in top_ports if d == "out" and n not in ("in_ready", "out_valid")]
            order = {"out_class": 0, "out_logits": 1}
            expected = [[e[order[n]] for n in names] for e in expected]
            masks = [[(1 << widths[n]) - 1 for n in names]]
            per_image = 1
            want_cycles, rule = report["npu_cycles_per_image"], "npu"
        else:
            out_t = op.results[0].type
            out_channels = out_t.dims[0]
            lanes_out = _lanes(widths["out_data"], out_channels, out_t.fmt.bits, name, "out_data")
            rows_out = rows.get(op.results[0], 1)
            expected_words, row_masks = _beats(out, out_t.fmt.bits, lanes_out, rows_out)
            out_h = out_t.dims[1] if len(out_t.dims) == 3 else 1
            per_image = out_h // rows_out * len(row_masks)
            expected = [[w] for w in expected_words]
            masks = [[mask] for mask in row_masks]
            h, w = in_types[0].dims[1:] if len(in_types[0].dims) == 3 else (1, 1)
            want_cycles, rule = beats_per_image(h, w, lanes_in, rows_in) * pace, "layer"
        spec = {"module": name, "sv": sv, "wrapper": wrapper, "ports": top_ports,
                "stimulus": stimulus, "expected": expected, "masks": masks,
                "out_beats_per_image": per_image, "images": len(images)}
        jobs.append(Job(name, verify_module, (spec,)))
        expectations[name] = {"layer": op.layer, "cycles_per_image": want_cycles, "rule": rule}
    return jobs, {"modules": expectations, "pipeline_cycles_per_image": pipeline_cycles,
                  "available": available, "images": len(images)}


def _cycles_ok(result: dict, want: dict, pipeline_cycles: int) -> bool:
    measured = result["cycles_per_image"]
    if want["rule"] == "npu":
        return measured == want["cycles_per_image"]
    return measured == want["cycles_per_image"] and measured <= pipeline_cycles


def _row(job: Job, want: dict, pipeline_cycles: int, finished) -> dict:
    """A module's summary row from its job's JobResult or JobFailure."""
    row = {"module": job.name, "layer": want["layer"],
           "report_cycles_per_image": want["cycles_per_image"]}
    if not isinstance(finished, JobResult):
        row.update(ok=False, error=finished.message)
        return row
    value = dict(finished.value)
    cycles_ok = _cycles_ok(value, want, pipeline_cycles)
    row.update(value, seconds=round(finished.seconds, 2), cycles_ok=cycles_ok,
               ok=value["beats_differ"] == 0 and cycles_ok)
    return row


def verify(design_dir: Path | str, inputs: Path | str | np.ndarray, *,
           modules: list[str] | None = None, jobs: int | None = None,
           scheduler: str | None = None, progress: bool = True,
           fresh_worker_per_job: bool = False, on_row=None,
           connect_timeout: float = 10.0, deadline: float | None = None) -> dict:
    """
    Verify the modules; returns {"modules": [row per module], "verified", "total", "differ"}.
    `on_row(row)` is called as each module finishes (the benchmark saves partial results).
    """
    job_list, context = plan(design_dir, inputs, modules)
    by_name = {job.name: job for job in job_list}
    pipeline_cycles = context["pipeline_cycles_per_image"]

    def finished(item) -> None:
        if on_row is not None:
            job = by_name[item.name]
            on_row(_row(job, context["modules"][job.name], pipeline_cycles, item))

    started = time.perf_counter()
    outcome = run_jobs(job_list, workers=jobs, scheduler=scheduler, label="verify",
                       progress=progress, fresh_worker_per_job=fresh_worker_per_job,
                       on_finish=finished, connect_timeout=connect_timeout, deadline=deadline)
    wall = time.perf_counter() - started
    rows = [_row(job, context["modules"][job.name], pipeline_cycles,
                 outcome.failures.get(job.name) or outcome.results[job.name]) for job in job_list]
    differ = [row["module"] for row in rows if not row["ok"]]
    return {"modules": rows, "verified": len(rows) - len(differ), "total": len(rows),
            "differ": differ, "images": context["images"], "wall_seconds": round(wall, 2),
            "pipeline_cycles_per_image": pipeline_cycles,
            "executor": "dask" if scheduler else "local"}


def module_line(row: dict) -> str:
    """One line per module for the terminal."""
    name = row["module"]
    if "error" in row:
        return f"  {name}: FAILED: {row['error']}"
    cycles = row["cycles_per_image"]
    cycles_text = f"{cycles:g} cycles/image (report: {row['report_cycles_per_image']})"
    timing = (f"build {row['build_seconds']:.1f} s, sim {row['simulate_seconds']:.2f} s, "
              f"peak {row['peak_rss_mb']:.0f} MB")
    if row["ok"]:
        return f"  {name}: bit-exact, {row['beats_compared']} output beats; {cycles_text}; {timing}"
    problems = []
    if row["beats_differ"]:
        first = row["first_difference"]
        problems.append(f"{row['beats_differ']} of {row['beats_compared']} output beats differ "
                        f"(first: image {first['image']} beat {first['beat']}: RTL {first['got']}, "
                        f"golden {first['expected']})")
    if not row["cycles_ok"]:
        problems.append(f"cycles differ: {cycles_text}")
    return f"  {name}: DIFFERS: {'; '.join(problems)}"


def main(design: Path, inputs: Path, *, modules: str | None = None, jobs: int | None = None,
         scheduler: str | None = None, out: Path | None = None, quiet: bool = False,
         connect_timeout: float = 10.0, deadline: float | None = None) -> int:
    """The CLI's `verify`: per-module lines, the summary, exit 0 only when all are bit-exact."""
    from hashiflex.design_dir import atomic_file

    wanted = [m.strip() for m in modules.split(",") if m.strip()] if modules else None
    if connect_timeout <= 0:
        raise InputError(f"--connect-timeout must be > 0, got {connect_timeout:g}")
    if deadline is not None and not deadline > 0:
        raise InputError(f"--deadline must be > 0 seconds, got {deadline:g}")
    summary = verify(design, inputs, modules=wanted, jobs=jobs, scheduler=scheduler,
                     progress=not quiet, connect_timeout=connect_timeout, deadline=deadline)
    for row in summary["modules"]:
        print(module_line(row))
    print(f"verified {summary['verified']} of {summary['total']} modules bit-exact "
          f"({summary['images']} images, {summary['wall_seconds']:.1f} s)")
    if out is not None:
        with atomic_file(out) as stream:
            json.dump(summary, stream, indent=2)
            stream.write("\n")
    if summary["differ"]:
        raise CheckFailed(f"{len(summary['differ'])} of {summary['total']} modules differ "
                          f"from the golden model: {', '.join(summary['differ'])}")
    return 0
