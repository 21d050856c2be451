"""
A design directory is data, not code (issue 14): design.json and report.json are checked
against their schema before anything is generated from them; a port name holding C++
(`std::system(...)` used to run in the harness) is refused, as is a file path leaving the
directory, a width or shape beyond bounds, and malformed JSON of any shape: one line, no
traceback. (The SystemVerilog of a design is code: docs/architecture.md, "Trust".)
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hashiflex import api
from hashiflex.backends.verilator import HarnessConfig, Port, harness_cpp
from hashiflex.errors import DesignError
from hashiflex.tools import hashiflex_cli

SMALL = "pointwise_only"
EVIL = 'clk; std::system("touch PWNED"); int x'


@pytest.fixture(scope="module")
def small_design(designs):
    return designs.zoo(SMALL)


@pytest.fixture
def copy(tmp_path, small_design):
    path = tmp_path / "design"
    shutil.copytree(small_design.path, path, ignore=shutil.ignore_patterns("obj_dir"))
    return path


def edit(path, name: str, change) -> None:
    data = json.loads((path / name).read_text())
    change(data)
    (path / name).write_text(json.dumps(data))


def test_a_port_name_holding_code_is_refused(tmp_path, copy, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    edit(copy, "design.json", lambda m: m["ports"][0].update(name=EVIL))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, *json.loads((copy / "design.json").read_text())["input_shape"]),
                        np.float32))
    with pytest.raises(SystemExit) as exit_info:
        hashiflex_cli.main(["-q", "simulate", str(copy), "--inputs", str(x)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "port name must be an identifier" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "PWNED").exists() and not (copy / "obj_dir").exists()


def test_the_harness_generator_refuses_non_identifiers():
    ports = [Port("clk", 1, "in"), Port("in_valid", 1, "in"), Port("in_data", 8, "in"),
             Port("out_valid", 1, "out")]
    harness_cpp("top", ports, HarnessConfig())  # fine
    with pytest.raises(ValueError, match="not a C identifier"):
        harness_cpp("top", [*ports, Port(EVIL, 1, "out")], HarnessConfig())
    with pytest.raises(ValueError, match="not a C identifier"):
        harness_cpp("top(); system(0)", ports, HarnessConfig())


BAD_MANIFESTS = {
    "top code": (lambda m: m.update(top="t; system(0)"), "top must be an identifier"),
    "name": (lambda m: m.update(name=7), "name must be an identifier"),
    "width huge": (lambda m: m["ports"][3].update(width=10**12), "width"),
    "width text": (lambda m: m["ports"][3].update(width="8"), "width"),
    "dir": (lambda m: m["ports"][3].update(dir="inout"), "dir"),
    "duplicate port": (lambda m: m["ports"].append(dict(m["ports"][0])), "twice"),
    "missing port": (lambda m: m.update(ports=[p for p in m["ports"] if p["name"] != "out_class"]),
                     "out_class"),
    "input shape huge": (lambda m: m.update(input_shape=[3, 10**9, 10**9]), "input_shape"),
    "input shape short": (lambda m: m.update(input_shape=[3, 7]), "input_shape"),
    "bits": (lambda m: m["input_format"].update(bits=1000), "input_format"),
    "classes": (lambda m: m.update(classes=-1), "classes"),
    "logit bits": (lambda m: m.update(logit_bits=True), "logit_bits"),
    "sv outside": (lambda m: m["files"].update(sv=["rtl/../../etc/passwd.sv"]), "files.sv"),
    "absolute": (lambda m: m["files"].update(po2="/etc/passwd"), "files.po2"),
    "files list": (lambda m: m.update(files=[]), "files"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_malformed_manifests_are_one_design_error(copy, case):
    change, needle = BAD_MANIFESTS[case]
    edit(copy, "design.json", change)
    with pytest.raises(DesignError, match=needle):
        api.open_design(copy)


@pytest.mark.parametrize("text", ["[]", "7", "null", '"design"', "{", "\xff"])
def test_design_json_of_any_shape_is_one_design_error(copy, text):
    (copy / "design.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(DesignError):
        api.open_design(copy)


@pytest.mark.parametrize("text, needle", [
    ("[]", "not a JSON object"), ("{", "corrupt"),
    ('{"cycles_per_image": NaN}', "cycles_per_image"),
])
def test_malformed_report_is_one_design_error(copy, text, needle):
    (copy / "report.json").write_text(text)
    with pytest.raises(DesignError, match=needle):
        api.open_design(copy)


def test_report_figures_must_be_numbers(copy):
    edit(copy, "report.json", lambda r: r.update(images_per_second="fast"))
    with pytest.raises(DesignError, match="images_per_second"):
        api.open_design(copy)
