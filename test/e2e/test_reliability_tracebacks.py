"""
No command prints a Python traceback, for any input (issue 14): the inputs that used to
trace back (an .npz where an .npy is expected, .npy or truncated weights, an impossible
--out, deeply nested IR, `po2-opt -t sv` on unlowered IR) are one-line errors; anything
unexpected goes through the one top-level handler (hashiflex.errors.run_entry_point): one
line and a hint to rerun with --debug, which shows the trace. In-process runs (`main`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hashiflex import api
from hashiflex.tools import hashiflex_cli, po2_opt

SMALL = "pointwise_only"


def run_main(main, capsys, argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(map(str, argv)))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


@pytest.fixture(scope="module")
def files(tmp_path_factory, designs):
    design = designs.zoo(SMALL)
    d = tmp_path_factory.mktemp("tb")
    shape = design.manifest["input_shape"]
    np.save(d / "x.npy", np.zeros((2, *shape), np.float32))
    np.savez(d / "x.npz", a=np.zeros((2, *shape), np.float32))
    params = np.load(design.file("params"))
    np.savez(d / "w.npz", weights=params["npu_weights"], bias=params["npu_bias"])
    (d / "wtrunc.npz").write_bytes((d / "w.npz").read_bytes()[:-30])
    np.save(d / "w.npy", params["npu_weights"])
    np.save(d / "labels.npy", np.zeros(2, np.int64))
    (d / "nested.mlir").write_text("builtin.module {" * 5000 + "}" * 5000)
    shutil.copy(design.file("po2"), d / "model.mlir")
    return {"dir": d, "design": design.path, **{p.stem + p.suffix.replace(".", "_"): p
                                                for p in d.iterdir()}}


CASES = {
    "inputs npz": (["golden", "{model_mlir}", "--inputs", "{x_npz}", "--out", "{dir}/y.npz"],
                   ".npz archive"),
    "simulate inputs npz": (["simulate", "{design}", "--inputs", "{x_npz}"], ".npz archive"),
    "finetune data npz": (["finetune", "{design}", "--data", "{x_npz}", "--labels",
                           "{labels_npy}", "--out", "{dir}/w2.npz"], ".npz archive"),
    "calib npz": (["import", "tiny_cnn", "--out", "{dir}/m.mlir", "--calib", "{x_npz}"],
                  ".npz archive"),
    "weights npy": (["program", "{design}", "{w_npy}", "--out", "{dir}/load"], "not an .npz"),
    "weights truncated": (["program", "{design}", "{wtrunc_npz}", "--out", "{dir}/load"],
                          "wtrunc.npz"),
    "out impossible": (["golden", "{model_mlir}", "--inputs", "{x_npy}", "--out",
                        "/proc/no/y.npz"], "cannot write '/proc/no/y.npz'"),
    "out under a file": (["program", "{design}", "{w_npz}", "--out", "{x_npy}/load"],
                         "cannot write"),
    "nested IR": (["golden", "{nested_mlir}", "--inputs", "{x_npy}", "--out", "{dir}/y.npz"],
                  "nested too deeply"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_without_traceback(files, capsys, case):
    argv, needle = CASES[case]
    before = sorted(p.name for p in files["dir"].iterdir())
    code, err = run_main(hashiflex_cli.main, capsys, ["-q", *(a.format(**files) for a in argv)])
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    assert sorted(p.name for p in files["dir"].iterdir()) == before  # nothing written


@pytest.mark.parametrize("argv, needle", [
    (["{model_mlir}", "-t", "sv"], "cannot emit SystemVerilog"),
    (["{nested_mlir}"], "nested too deeply"),
])
def test_po2_opt_bad_input_is_one_line(files, capsys, argv, needle):
    code, err = run_main(po2_opt.main, capsys, [a.format(**files) for a in argv])
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_an_unexpected_error_is_one_line_with_a_hint(files, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(api, "program", broken)
    argv = ["-q", "program", files["design"], files["w_npz"], "--out", files["dir"] / "load"]
    code, err = run_main(hashiflex_cli.main, capsys, argv)
    assert code == 3
    assert err.strip().splitlines() == [
        "hashiflex program: internal error: ZeroDivisionError: a bug "
        "(rerun with --debug for the Python trace)"]
    code, err = run_main(hashiflex_cli.main, capsys, ["--debug", *argv])
    assert code == 3 and "Traceback" in err and "ZeroDivisionError: a bug" in err


def test_po2_opt_unexpected_error_goes_through_the_same_handler(files, capsys, monkeypatch):
    def broken(self):
        raise KeyError("a bug")

    monkeypatch.setattr(po2_opt.Po2OptMain, "run", broken)
    code, err = run_main(po2_opt.main, capsys, [files["model_mlir"]])
    assert code == 3 and err.startswith("po2-opt: internal error: KeyError") and "--debug" in err
