"""`hashiflex compile` on a channel op it cannot compile: one line naming the node, exit 1,
nothing written (issue 13's bad input; the frontend cases are in test/frontend/
test_channels.py)."""

from __future__ import annotations

from conftest import NETS_FILE
from test_cli import assert_one_line_error, hashiflex, no_leftovers


def test_cat_along_height_is_one_line_naming_it(tmp_path):
    out = tmp_path / "design"
    result = hashiflex("compile", f"{NETS_FILE}:bad_cat_dim", "--out", out)
    assert_one_line_error(result, "'cat'", "torch.cat along dim 2")
    assert not out.exists() and no_leftovers(tmp_path) == []
