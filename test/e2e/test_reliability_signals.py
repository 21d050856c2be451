"""
SIGTERM cleans up as SIGINT does (issue 14): the one top-level handler turns it into an
exception, so the temporary directory of an atomic write is removed (a compile used to
leave `.NAME.XXXX` behind), one line is printed and the exit is 143. In-process and fast;
test_cli.py's test_killed_compile_leaves_no_design[SIGTERM] runs a real compile (slow).
"""

from __future__ import annotations

import os
import signal

import pytest

from hashiflex.design_dir import atomic_dir, atomic_file
from hashiflex.errors import run_entry_point


@pytest.mark.parametrize("writer", [atomic_dir, atomic_file])
def test_sigterm_during_a_write_leaves_nothing(tmp_path, capsys, writer):
    out = tmp_path / "out"

    def body() -> int:
        with writer(out):
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM was not delivered")
        return 0

    with pytest.raises(SystemExit) as exit_info:
        run_entry_point("hashiflex compile", body)
    assert exit_info.value.code == 143
    assert capsys.readouterr().err.strip().splitlines() == ["hashiflex compile: terminated"]
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored afterwards


def test_sigint_is_interrupted_130(tmp_path, capsys):
    def body() -> int:
        with atomic_dir(tmp_path / "out"):
            raise KeyboardInterrupt
        return 0

    with pytest.raises(SystemExit) as exit_info:
        run_entry_point("hashiflex compile", body)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "hashiflex compile: interrupted"
    assert list(tmp_path.iterdir()) == []
