"""
Formal equivalence of two compiled designs of the same network with Yosys (issue 10 part 3):
in the tests, the `po2-cse`-optimised layer against the naive one (`--no-cse`).

What is proven. Both designs are the SystemVerilog `emit_sv_string` writes (a top
`main_top` with ports clk, rst, in_valid, in_data, in_ready, out_valid, out_data). po2-cse
moves adders and so pipeline registers: the two designs may differ in latency. Each top
is wrapped (`_wrapper_sv`) so that

* the design with the smaller latency gets a delay line of the difference on out_valid and
  out_data (a plain shift register: the two wrapped designs then have the same latency),
* the wrapper's outputs are out_valid and `out_valid ? out_data : 0`: what a consumer
  sees. Between valid outputs the pipelines carry different intermediate values
  (different registers hold different partial sums), which no consumer reads.

The two wrappers go into `miter -equiv` (one shared input vector, `trigger` = some output
differs), and `sat -tempinduct -prove trigger 0 -set-init-zero` proves trigger stays 0 in
every cycle of every input sequence (clock, reset, in_valid and in_data free in every
cycle), by temporal induction: base case from the all-zero reset state (the
data registers have no reset; zero is one of their possible power-up values, and every
valid output only depends on data accepted after out_valid's delay line was cleared),
induction step of up to `max_steps` cycles. Induction is complete here because the
designs are feed-forward pipelines (no state except input holds and the valid delay
line), so once the step length passes the latency, the induction step holds. A result
"proven" is thus an unbounded proof; "failed" comes with Yosys's counterexample in the log.

Yosys: pyosys (or `yosys` on PATH) in a child process, like `hashiflex synth`
(hashiflex/synth.py `find_yosys`).

Measured (benchmarks/bench_equivalence.py, benchmarks/results/equivalence.json; pyosys
0.70, shared 2-core machine at load ~29): a random 6x6 1x1 layer with 4-bit inputs
(30 adders naive, 29 with po2-cse, same latency) is proven equal in 14.6 s (2.3 s on a
quiet machine) and its one-weight mutant fails in 17.2 s. SAT on adder trees grows fast
with the layer: an 8x8 layer whose po2-cse version is one cycle longer (43 vs 39 adders)
did not finish in 500 s, while its mutant failed in 39 s. Larger layers are checked by
simulation (golden model, po2 interpreter, Verilator), not by this proof.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TOP = "main_top"


@dataclass
class EquivalenceResult:
    """The outcome of one `prove_equivalent` run."""

    proven: bool
    seconds: float
    latency_gold: int
    latency_gate: int
    log: str


def _port_width(sv: str, module: str, port: str) -> int:
    """Width of `port` in `module`'s header (1 for a plain `wire`)."""
    header = re.search(rf"module {module} \((.*?)\);", sv, re.S)
    if header is None:
        raise ValueError(f"equivalence: no module {module} in the SystemVerilog")
    found = re.search(rf"(?:input|output)\s+wire\s+(?:\[(\d+):0\]\s+)?{port}\b", header.group(1))
    if found is None:
        raise ValueError(f"equivalence: module {module} has no port {port}")
    return int(found.group(1)) + 1 if found.group(1) else 1


def _prefixed(sv: str, prefix: str) -> str:
    """`sv` with every module renamed `prefix + name`, in its header and its instances."""
    names = re.findall(r"^module (\w+)", sv, re.M)
    if not names:
        raise ValueError("equivalence: no module in the SystemVerilog")
    pattern = "|".join(map(re.escape, names))
    sv = re.sub(rf"^module ({pattern})\b", lambda m: f"module {prefix}{m.group(1)}", sv, flags=re.M)
    return re.sub(rf"^(\s+)({pattern})(\s+\w+\s*\()", lambda m: m.group(1) + prefix + m.group(2) + m.group(3),
                  sv, flags=re.M)


def _wrapper_sv(name: str, inner: str, in_width: int, out_width: int, delay: int) -> str:
    """`name`: `inner` (the renamed top), out_valid/out_data delayed by `delay` cycles, data masked by valid."""
    lines = [
        f"module {name} (input wire clk, input wire rst, input wire in_valid,",
        f"  input wire [{in_width - 1}:0] in_data, output wire out_valid,",
        f"  output wire [{out_width - 1}:0] out_data);",
        "  wire v0;",
        f"  wire [{out_width - 1}:0] d0;",
        f"  {inner} u (.clk(clk), .rst(rst), .in_valid(in_valid), .in_data(in_data),",
        "    .in_ready(), .out_valid(v0), .out_data(d0));",
    ]
    for i in range(1, delay + 1):
        lines += [f"  reg v{i}; reg [{out_width - 1}:0] d{i};",
                  f"  always @(posedge clk) begin v{i} <= rst ? 1'b0 : v{i - 1}; d{i} <= d{i - 1}; end"]
    lines += [f"  assign out_valid = v{delay};",
              f"  assign out_data = v{delay} ? d{delay} : {out_width}'d0;",
              "endmodule", ""]
    return "\n".join(lines)


def prove_equivalent(gold_sv: str, gold_latency: int, gate_sv: str, gate_latency: int,
                     *, max_steps: int | None = None, timeout: float = 600.0) -> EquivalenceResult:
    """
    Prove that two designs (SystemVerilog text with a `main_top`, and their latencies in
    cycles) give the same valid outputs for every input sequence (see the module
    docstring). `max_steps`: the longest induction step tried (default: the larger
    latency plus 2).
    """
    from hashiflex.synth import find_yosys

    in_width = _port_width(gold_sv, TOP, "in_data")
    out_width = _port_width(gold_sv, TOP, "out_data")
    if (_port_width(gate_sv, TOP, "in_data"), _port_width(gate_sv, TOP, "out_data")) != (in_width, out_width):
        raise ValueError("equivalence: the two designs' in_data/out_data widths differ")
    latency = max(gold_latency, gate_latency)
    steps = max_steps if max_steps is not None else latency + 2
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hashiflex_equiv_") as tmp:
        work = Path(tmp)
        (work / "gold.sv").write_text(_prefixed(gold_sv, "gold_"))
        (work / "gate.sv").write_text(_prefixed(gate_sv, "gate_"))
        (work / "wrap.sv").write_text(
            _wrapper_sv("wrap_gold", "gold_" + TOP, in_width, out_width, latency - gold_latency)
            + _wrapper_sv("wrap_gate", "gate_" + TOP, in_width, out_width, latency - gate_latency))
        script = "\n".join([
            "read_verilog -sv gold.sv gate.sv wrap.sv",
            "hierarchy -check",
            "proc", "opt_clean",
            "miter -equiv -flatten -make_outputs wrap_gold wrap_gate miter",
            "hierarchy -top miter", "opt -fast",
            f"sat -verify -tempinduct -prove trigger 0 -set-init-zero -maxsteps {steps} miter",
        ]) + "\n"
        (work / "equiv.ys").write_text(script)
        yosys = find_yosys()
        run = subprocess.run([*yosys.command, "equiv.ys"], cwd=work, capture_output=True,
                             text=True, timeout=timeout)
    log = run.stdout + run.stderr
    proven = run.returncode == 0 and "SUCCESS!" in log
    return EquivalenceResult(proven, time.perf_counter() - start, gold_latency, gate_latency, log)


def compiled_sv(module, *, cse: bool, **options) -> tuple[str, int, int]:
    """
    A po2 network module (changed in place) lowered to hw with or without po2-cse, as
    SystemVerilog text, its pipeline latency (cycles from an accepted pixel to its valid
    output: the top's `pipeline_stages`) and its adders.
    """
    from hashiflex.api import lower_to_hw
    from hashiflex.backends.sv_emitter import emit_sv_string
    from hashiflex.passes.to_hw import design_report

    lower_to_hw(module, cse=cse, **options)
    report = design_report(module)
    return (emit_sv_string(module), int(report["top"]["pipeline_stages"]),
            int(report["totals"]["adders"]))
