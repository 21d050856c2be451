"""
`hashiflex compile --jobs N` and `--emit-hw-ir` (issue 12): the convs lowered and emitted by
worker processes give byte-identical SystemVerilog, hw IR and report to one process; the hw
IR is written only when asked for, and a design without it still works (its manifest
does not list it, the estimate in report.json is the same).
"""

from __future__ import annotations

import json

import pytest
from conftest import NETS_FILE

import nets
from hashiflex import api
from hashiflex.errors import DesignError

NET = "dw_residual"  # convs, a depthwise conv and a residual add: every kind of job


@pytest.fixture(scope="module")
def serial_and_parallel(tmp_path_factory, designs):
    """One process without hw IR, two workers with it, and the session's design (one
    process, a small net, with hw IR: conftest.DesignCache)."""
    root = tmp_path_factory.mktemp("jobs")
    spec, calib = f"{NETS_FILE}:{NET}", nets.calibration(NET)
    serial = api.compile(spec, root / "serial", calib=calib, jobs=1)
    parallel = api.compile(spec, root / "parallel", calib=calib, jobs=2, emit_hw_ir=True)
    serial_hw = designs.zoo(NET)
    assert serial_hw.file("hw").is_file()
    return serial, parallel, serial_hw


def test_two_jobs_write_the_same_files_as_one(serial_and_parallel):
    serial, parallel, serial_hw = serial_and_parallel
    sv = sorted(p.name for p in (serial.path / "rtl").iterdir())
    assert sv and sv == sorted(p.name for p in (parallel.path / "rtl").iterdir())
    for name in sv:
        assert (serial.path / "rtl" / name).read_bytes() == \
            (parallel.path / "rtl" / name).read_bytes(), name
    assert (serial.path / "report.json").read_bytes() == (parallel.path / "report.json").read_bytes()
    assert serial_hw.file("hw").read_bytes() == parallel.file("hw").read_bytes()
    # no leftovers of the workers' hw IR parts
    assert sorted(p.name for p in parallel.path.iterdir() if p.name.startswith(".")) == \
        [".hashiflex-design"]


def test_hw_ir_only_with_emit_hw_ir(serial_and_parallel):
    serial, parallel, _ = serial_and_parallel
    assert not (serial.path / "model.hw.mlir").exists()
    assert "hw" not in serial.manifest["files"]
    with pytest.raises(DesignError, match="--emit-hw-ir"):
        serial.file("hw")
    text = parallel.file("hw").read_text()
    assert parallel.manifest["files"]["hw"] == "model.hw.mlir"
    assert text.startswith("builtin.module {") and text.count("hw.module @") == \
        len(parallel.manifest["files"]["sv"])
    # the estimate reads the features compile counted, not the hw IR: the same numbers
    assert json.loads((serial.path / "report.json").read_text())["synth"] == \
        json.loads((parallel.path / "report.json").read_text())["synth"]
    # ... and those are what synth's scan of the hw IR counts
    from hashiflex.synth import module_features

    counted = {r["module"]: r["features"] for r in serial.report["synth"]["modules"]}
    assert counted == module_features(parallel.path)
    api.open_design(serial.path)  # a design without hw IR opens


def test_jobs_out_of_range_is_one_line(tmp_path):
    from hashiflex.errors import InputError

    with pytest.raises(InputError, match="--jobs must be in 1..4096, got 0"):
        api.compile(f"{NETS_FILE}:{NET}", tmp_path / "d", jobs=0)


def test_cli_flags_reach_compile():
    from hashiflex.tools.hashiflex_cli import build_parser

    args = build_parser().parse_args(["compile", "tiny_cnn", "--out", "d"])
    assert args.jobs is None and not args.emit_hw_ir  # default: the cores, no hw IR
    args = build_parser().parse_args(["compile", "tiny_cnn", "--out", "d", "--jobs", "3",
                                      "--emit-hw-ir"])
    assert args.jobs == 3 and args.emit_hw_ir
