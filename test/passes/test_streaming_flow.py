"""
The streaming flow (hashiflex/flow.py) writes exactly what the whole-module path writes
(po2-unroll, po2-canonicalize, po2-infer-widths, po2-to-hw, print, emit_sv_files), and
holds no layer's IR after writing it.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from hashiflex import api
from hashiflex.backends.sv_emitter import emit_sv_files
from hashiflex.flow import lower_and_emit
from hashiflex.passes.to_hw import design_report


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow")
    whole, _ = api.import_model("tiny_cnn")
    api.lower_to_hw(whole)
    api.print_ir(whole, out / "whole.hw.mlir")
    whole_sv = emit_sv_files(whole, out / "rtl_whole")
    streamed, _ = api.import_model("tiny_cnn")
    result = lower_and_emit(streamed, out, hw_file="streamed.hw.mlir", rtl_dir="rtl_streamed")
    return out, whole, whole_sv, result


def test_hw_ir_is_byte_identical(both):
    out, _, _, _ = both
    assert (out / "streamed.hw.mlir").read_text() == (out / "whole.hw.mlir").read_text()


def test_sv_files_are_identical(both):
    _, _, whole_sv, result = both
    assert [p.name for p in result.sv_files] == [p.name for p in whole_sv]
    for a, b in zip(whole_sv, result.sv_files):
        assert a.read_text() == b.read_text(), a.name


def test_report_and_top_ports(both):
    _, whole, _, result = both
    assert result.hw_report == design_report(whole)
    top = result.hw_report["top"]["module"]
    assert result.top == top
    assert result.top_ports == api.top_ports(whole, top)
    assert result.modules == len(result.sv_files)
    assert result.hw_ops > 0 and set(result.phases) >= {"unroll", "po2-to-hw", "print-hw"}


def test_streamed_hw_ir_parses(both):
    out, _, _, _ = both
    module = api.parse_ir(out / "streamed.hw.mlir")
    assert sum(1 for _ in module.ops) == both[3].modules


def test_network_loop_keeps_no_module():
    """Each lowered module is garbage as soon as the consumer drops it."""
    from xdsl.context import Context
    from xdsl.dialects import func

    from hashiflex.passes.po2_unroll import Po2UnrollPass
    from hashiflex.passes.to_hw import NetworkLowering

    module, _ = api.import_model("tiny_cnn")
    Po2UnrollPass().apply(Context(), module)
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    net = NetworkLowering(fn)
    refs = []
    for op in net.layers():
        hw_module = net.lower(op).module
        if hw_module is None:
            continue
        refs.append(weakref.ref(hw_module))
        del hw_module
        gc.collect()
        assert all(r() is None for r in refs)
    assert len(refs) > 3
    assert net.top().sym_name.data.endswith("_top")
