"""
Names in the generated hardware, shared by the lowering, the printers and the importer.

CIRCT's convention: an op's `sv.namehint` attribute names its value in the exported
SystemVerilog. Identifiers are made from torch paths (`features.0.conv`) by replacing every
character that is illegal in SystemVerilog (and in an MLIR bare symbol) with `_`; each user
then adds its own rule for what may not start an identifier (the SV emitter also avoids
keywords).
"""

from __future__ import annotations

import re

from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Operation

NAMEHINT = "sv.namehint"

_ILLEGAL_CHARS = re.compile(r"[^A-Za-z0-9_]")


def namehint(op: Operation, name: str) -> Operation:
    """Name the value of `op` in the generated SystemVerilog (CIRCT's `sv.namehint`)."""
    op.attributes[NAMEHINT] = StringAttr(name)
    return op


def legal_chars(name: str) -> str:
    """`name` with every character outside [A-Za-z0-9_] replaced by `_`."""
    return _ILLEGAL_CHARS.sub("_", name)
