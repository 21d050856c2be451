"""The dialects and targets the project's tools know, in one place."""

from __future__ import annotations

import re
from collections.abc import Callable

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.comb import Comb
from xdsl.dialects.func import Func
from xdsl.dialects.hw import HW
from xdsl.dialects.seq import Seq
from xdsl.utils.mlir_lexer import MLIRLexer

from hashiflex.backends.sv_emitter import SystemVerilogTarget
from hashiflex.dialects.po2 import Po2


# xDSL's string-literal pattern nests a `+` inside a `*`, so on an unterminated string it
# backtracks exponentially: po2-opt hung on a 33-character one (250 s; found by the fuzz
# test). The same pattern with possessive quantifiers (Python 3.11) matches exactly the same
# strings, as its two alternatives start with different characters, in linear time. Only
# the known pattern is replaced, so an xDSL that changes it keeps its own.
_XDSL_STRING_LITERAL = r'"(?:[^"\\\n\v\f]+|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"'
_LINEAR_STRING_LITERAL = r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"'
if MLIRLexer._unescaped_characters_regex.pattern == _XDSL_STRING_LITERAL:
    MLIRLexer._unescaped_characters_regex = re.compile(_LINEAR_STRING_LITERAL)


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
