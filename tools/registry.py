"""The dialects and targets the project's tools know, in one place."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.comb import Comb
from xdsl.dialects.func import Func
from xdsl.dialects.hw import HW
from xdsl.dialects.seq import Seq

from hashiflex.backends.sv_emitter import SystemVerilogTarget
from hashiflex.dialects.po2 import Po2


def register_dialects(ctx: Context) -> None:
    for dialect in (Builtin, Func, Arith, HW, Comb, Seq, Po2):
        if dialect.name not in ctx.registered_dialect_names:
            ctx.load_dialect(dialect)


def make_context() -> Context:
    ctx = Context()
    register_dialects(ctx)
    return ctx


def targets() -> dict[str, Callable]:
    """Output targets beyond xDSL's own: `-t sv`, our SystemVerilog backend."""
    return {"sv": lambda: SystemVerilogTarget}
