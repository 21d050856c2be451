"""
No silent wrong numbers (issue 14): the golden model and the po2 interpreter refuse IR whose
exact arithmetic leaves int64 (it used to wrap); NPU weights are integers, exactly (0.7 is
not 0, uint64 2^64-1 not -1, complex refused); `logits_frac` follows loaded weights; every
numeric option is range-checked (`--clock-mhz nan` wrote invalid JSON) and report.json
records the NPU lanes built, not a number the lowering clamped.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import NETS_FILE, cli

import nets
from hashiflex import api
from hashiflex.design_dir import parse_ir
from hashiflex.errors import InputError
from hashiflex.golden import model as golden_model
from hashiflex.interpreters.po2 import run_po2
from hashiflex.npu_weights import integer_array, load_weights, npu_op


SMALL = "pointwise_only"


@pytest.fixture(scope="module")
def small_design(designs):
    return designs.zoo(SMALL)


def requant_ir(tmp_path, out_type: str) -> "Path":  # noqa: F821
    path = tmp_path / "wide.mlir"
    path.write_text(f"""builtin.module {{
  func.func @wide(%0: !po2.act<1x1x1, s32, 0>) -> !po2.act<1x1x1, {out_type}> {{
    %1 = po2.requant "q" %0 act "none" : !po2.act<1x1x1, s32, 0> -> !po2.act<1x1x1, {out_type}>
    func.return %1 : !po2.act<1x1x1, {out_type}>
  }}
}}
""")
    return path


@pytest.mark.parametrize("out_type, needle", [
    ("s64, 40", "2^71"),  # verifies; x * 2^40 of an s32 used to wrap silently
    ("s64, 100", "2^131"),  # used to trace back (OverflowError)
    ("u64, 0", "does not fit int64"),
])
def test_golden_and_interpreter_refuse_what_int64_cannot_hold(tmp_path, capsys, out_type, needle):
    ir = requant_ir(tmp_path, out_type)
    module = parse_ir(ir)
    x = np.full((1, 1, 1, 1), (1 << 31) - 1, np.int64)
    with pytest.raises(golden_model.GoldenError, match=needle.replace("^", r"\^")):
        golden_model.run_int(module, x)
    with pytest.raises(ValueError, match="int64"):
        run_po2(module, x)
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.ones((1, 1, 1, 1), np.float32))
    out = tmp_path / "y.npz"
    code, err = cli(capsys, "golden", ir, "--inputs", inputs, "--out", out)
    assert code == 2 and "int64" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_golden_still_computes_a_wide_but_safe_requant(tmp_path):
    module = parse_ir(requant_ir(tmp_path, "s64, 20"))
    x = np.array([(1 << 31) - 1, -(1 << 31)], np.int64).reshape(2, 1, 1, 1)
    assert golden_model.run_int(module, x).ravel().tolist() == [((1 << 31) - 1) << 20, -(1 << 51)]


@pytest.mark.parametrize("values, needle", [
    (np.array([0.7]), "0.7"),
    (np.array([2**64 - 1], np.uint64), "beyond int64"),
    (np.array([1 + 2j]), "complex"),
    (np.array([np.nan]), "NaN"),
    (np.array([True]), "bool"),
    (np.array([1e300]), "beyond int64"),
])
def test_npu_weights_must_be_exact_integers(values, needle):
    with pytest.raises(InputError, match=needle):
        integer_array(values, "weights")


def test_integral_floats_and_unsigned_are_accepted_exactly():
    assert integer_array(np.array([3.0, -2.0]), "w").tolist() == [3, -2]
    assert integer_array(np.array([7], np.uint64), "w").dtype == np.int64


def _weights_file(tmp_path, design, **arrays):
    params = np.load(design.file("params"))
    content = {"weights": params["npu_weights"], "bias": params["npu_bias"], **arrays}
    path = tmp_path / "w.npz"
    np.savez(path, **content)
    return path


def test_fractional_weights_file_is_refused_not_truncated(tmp_path, small_design):
    params = np.load(small_design.file("params"))
    path = _weights_file(tmp_path, small_design, weights=params["npu_weights"] + 0.7)
    with pytest.raises(InputError, match="not an integer"):
        load_weights(path)
    shape = small_design.manifest["input_shape"]
    with pytest.raises(InputError, match="not an integer"):
        api.program(small_design.path, {"weights": params["npu_weights"] + 0.7,
                                        "bias": params["npu_bias"]}, tmp_path / "load.txt")
    with pytest.raises(InputError, match="not an integer"):
        api.simulate(small_design.path, np.zeros((1, *shape), np.float32),
                     weights={"weights": params["npu_weights"] + 0.5, "bias": params["npu_bias"]})
    assert not (tmp_path / "load.txt").exists()


@pytest.mark.parametrize("what", ["npy_not_npz", "truncated", "text"])
def test_unreadable_weights_files_are_one_line(tmp_path, small_design, what):
    path = _weights_file(tmp_path, small_design)
    if what == "npy_not_npz":
        np.save(tmp_path / "w.npy", np.zeros(3))
        path = tmp_path / "w.npy"
    elif what == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_text("weights")
    with pytest.raises(InputError, match=str(path.name)):
        load_weights(path)


def test_logits_frac_follows_the_weights(tmp_path, small_design):
    """`golden --weights` used to write the design's logits_frac, not the weights'."""
    module = parse_ir(small_design.file("po2"))
    npu = npu_op(module)
    feature_frac = npu.input.type.fmt.frac
    design_weight_frac = npu.weight_frac
    weights = _weights_file(tmp_path, small_design, weight_frac=np.int64(design_weight_frac - 2),
                            feature_frac=np.int64(feature_frac))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, *small_design.manifest["input_shape"]), np.float32))
    out = tmp_path / "y.npz"
    api.golden_command(small_design.file("po2"), x, out, weights=weights)
    assert int(np.load(out)["logits_frac"]) == feature_frac + design_weight_frac - 2
    api.golden_command(small_design.file("po2"), x, out)
    assert int(np.load(out)["logits_frac"]) == small_design.manifest["logits_frac"]
    wrong = _weights_file(tmp_path, small_design, weight_frac=np.int64(3),
                          feature_frac=np.int64(feature_frac + 1))
    with pytest.raises(InputError, match="trained on features"):
        api.golden_command(small_design.file("po2"), x, out, weights=wrong)


@pytest.mark.parametrize("option, value", [
    ("clock_mhz", float("nan")), ("clock_mhz", float("inf")), ("clock_mhz", -1.0),
    ("npu_lanes", -1), ("npu_lanes", 10**9), ("levels_per_stage", 0), ("levels_per_stage", 10**6),
])
def test_compile_numeric_options_are_range_checked(tmp_path, option, value):
    with pytest.raises(InputError, match=option.replace("_", "-")):
        api.compile(f"{NETS_FILE}:{SMALL}", tmp_path / "d", **{option: value})
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, needle", [
    (["finetune", "D", "--data", "x.npy", "--labels", "y.npy", "--out", "w.npz", "--epochs", "0"],
     "--epochs"),
    (["finetune", "D", "--data", "x.npy", "--labels", "y.npy", "--out", "w.npz", "--seed", "-1"],
     "--seed"),
    (["demo", "--images", "-3"], "--images"),
    (["import", "tiny_cnn", "--out", "m.mlir", "--input-shape", "1,100000,100000"], "too large"),
    (["compile", "tiny_cnn", "--out", "d", "--clock-mhz", "nan"], "--clock-mhz"),
])
def test_cli_numeric_options_are_range_checked(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_report_records_the_npu_lanes_built(tmp_path):
    """`--npu-lanes 1000000` used to be recorded though the hardware clamps it to N*K."""
    design = api.compile(f"{NETS_FILE}:{SMALL}", tmp_path / "d", npu_lanes=1_000_000,
                         calib=nets.calibration(SMALL))
    report = json.loads((design.path / "report.json").read_text())
    n, k = design.manifest["classes"], design.manifest["features"]
    assert report["npu_lanes"] == n * k
    assert report["npu_lanes_requested"] == 1_000_000
    assert report["npu_cycles_per_image"] == 1
