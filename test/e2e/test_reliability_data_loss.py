"""
Nothing the user owns is lost (issue 14): `compile --out` replaces only a design directory
(its marker) or an empty one unless --force; an output path equal to an input (or inside a
design read, or around a SPEC file) is refused; po2-opt's -o is written atomically. The
command lines run in-process here (`main(argv)`) to keep the tests fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import NETS_FILE, cli

import nets
from hashiflex import api
from hashiflex.design_dir import MARKER, check_replaceable
from hashiflex.errors import InputError
from hashiflex.tools import po2_opt

SMALL = "pointwise_only"




def one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def small_design(designs):
    return designs.zoo(SMALL)


# -- compile --out: only a design directory is replaced ------------------------------------


def test_compile_refuses_to_replace_a_users_folder(tmp_path, capsys):
    """It used to delete any existing directory (a user's source folder went with it)."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    code, err = cli(capsys, "compile", f"{NETS_FILE}:{SMALL}", "--out", folder)
    assert code == 2
    one_line(err, "not a design directory", "--force")
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_compile_replaces_its_own_design_and_an_empty_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    check_replaceable(empty)  # nothing to lose
    design = api.compile(f"{NETS_FILE}:{SMALL}", empty, calib=nets.calibration(SMALL))
    assert (design.path / MARKER).is_file()
    check_replaceable(design.path)  # its own design
    (design.path / MARKER).unlink()
    check_replaceable(design.path)  # an older design: its design.json says so
    (design.path / "design.json").write_text("{}")
    with pytest.raises(InputError, match="not a design directory"):
        check_replaceable(design.path)
    check_replaceable(design.path, force=True)


def test_force_replaces_a_folder(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "old.txt").write_text("x")
    with pytest.raises(InputError, match="--force"):
        api.compile(f"{NETS_FILE}:{SMALL}", folder, calib=nets.calibration(SMALL))
    api.compile(f"{NETS_FILE}:{SMALL}", folder, calib=nets.calibration(SMALL), force=True)
    assert not (folder / "old.txt").exists() and (folder / MARKER).is_file()


def test_a_users_dot_old_directory_survives_a_recompile(tmp_path, small_design):
    """The old design used to be moved to `.NAME.old`, deleting whatever had that name."""
    out = tmp_path / "design"
    shutil.copytree(small_design.path, out, ignore=shutil.ignore_patterns("obj_dir"))
    mine = tmp_path / ".design.old"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    api.compile(f"{NETS_FILE}:{SMALL}", out, calib=nets.calibration(SMALL))
    assert (mine / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".design.old", "design"]


# -- an output path equal to an input ------------------------------------------------------


def test_compile_out_around_the_spec_file_is_refused(tmp_path, capsys):
    folder = tmp_path / "mynet"
    folder.mkdir()
    spec = folder / "nets.py"
    shutil.copy(NETS_FILE, spec)
    code, err = cli(capsys, "compile", f"{spec}:{SMALL}", "--out", folder, "--force")
    assert code == 2
    one_line(err, "contains the input SPEC")
    assert spec.read_bytes() == NETS_FILE.read_bytes()


@pytest.mark.parametrize("command", ["golden_inputs", "import_spec", "program_weights",
                                     "simulate_design_file", "finetune_labels"])
def test_output_onto_an_input_is_refused(tmp_path, capsys, small_design, command):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, *small_design.manifest["input_shape"]), np.float32))
    weights = tmp_path / "w.npz"
    params = np.load(small_design.file("params"))
    np.savez(weights, weights=params["npu_weights"], bias=params["npu_bias"])
    spec = tmp_path / "nets.py"
    shutil.copy(NETS_FILE, spec)
    ir = small_design.file("po2")
    argv, victim = {
        "golden_inputs": (["golden", ir, "--inputs", x, "--out", x], x),
        "import_spec": (["import", f"{spec}:{SMALL}", "--out", spec], spec),
        "program_weights": (["program", small_design.path, weights, "--out", weights], weights),
        "simulate_design_file": (["simulate", small_design.path, "--inputs", x,
                                  "--out", small_design.path / "design.json"],
                                 small_design.path / "design.json"),
        "finetune_labels": (["finetune", small_design.path, "--data", x, "--labels", x,
                             "--out", x], x),
    }[command]
    before = victim.read_bytes()
    code, err = cli(capsys, *argv)
    assert code == 2
    one_line(err, "would overwrite the input")
    assert victim.read_bytes() == before


# -- po2-opt -o --------------------------------------------------------------------------


def po2opt(capsys, *argv: object) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        po2_opt.main(list(map(str, argv)))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return exit_info.value.code, err


def test_po2_opt_parse_error_keeps_the_output_file(tmp_path, capsys):
    """xDSL's driver opened -o for writing first: a parse error emptied the file."""
    bad = tmp_path / "bad.mlir"
    bad.write_text("builtin.module {\n")
    out = tmp_path / "out.mlir"
    out.write_text("precious\n")
    code, _ = po2opt(capsys, bad, "-o", out)
    assert code != 0
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mlir", "out.mlir"]


def test_po2_opt_writes_the_output_file_and_may_rewrite_its_input(tmp_path, capsys):
    good = tmp_path / "good.mlir"
    good.write_text('builtin.module {\n  "test.op"() : () -> ()\n}\n')
    out = tmp_path / "out.mlir"
    assert po2opt(capsys, good, "-o", out, "--allow-unregistered-dialect")[0] in (0, None)
    assert '"test.op"()' in out.read_text()
    assert po2opt(capsys, good, "-o", good, "--allow-unregistered-dialect")[0] in (0, None)
    assert '"test.op"()' in good.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.mlir", "out.mlir"]


def test_po2_opt_unwritable_output_is_one_line(tmp_path, capsys):
    good = tmp_path / "good.mlir"
    good.write_text("builtin.module {}\n")
    code, err = po2opt(capsys, good, "-o", tmp_path / "no" / "such" / "out.mlir")
    assert code != 0
    one_line(err, "no/such/out.mlir")
