"""
The hardware report: each lowered `hw.module` carries its figures (adders, registers, line
buffers, latency, ...) in a `hashiflex.report` dictionary attribute, so that the report
survives printing and parsing of the hw IR; `design_report` gathers them for report.json.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, Operation

REPORT_ATTR = "hashiflex.report"


def to_attr(value) -> Attribute:
    """A report value (bool, int, str, list, dict of those) as an attribute."""
    if isinstance(value, bool):
        return IntegerAttr(int(value), i64)
    if isinstance(value, (int, np.integer)):
        return IntegerAttr(int(value), i64)
    if isinstance(value, str):
        return StringAttr(value)
    if isinstance(value, (list, tuple)):
        return ArrayAttr([to_attr(v) for v in value])
    if isinstance(value, dict):
        return DictionaryAttr({k: to_attr(v) for k, v in value.items()})
    raise TypeError(f"cannot store {value!r} in a report attribute")


def from_attr(attr: Attribute):
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, ArrayAttr):
        return [from_attr(a) for a in attr.data]
    if isinstance(attr, DictionaryAttr):
        return {k: from_attr(v) for k, v in attr.data.items()}
    return str(attr)


def module_report(op: Operation) -> dict | None:
    """The `hashiflex.report` of one hw.module (with its `module` name), else None."""
    if not isinstance(op, hw.HWModuleOp) or REPORT_ATTR not in op.attributes:
        return None
    entry = from_attr(op.attributes[REPORT_ATTR])
    entry.setdefault("module", op.sym_name.data)
    return entry


def counted_resources(module: hw.HWModuleOp) -> dict:
    """Adders, multipliers and register bits of a module, counted op by op."""
    adders = multipliers = register_bits = 0
    for op in module.body.walk():
        if isinstance(op, (comb.AddOp, comb.SubOp)):
            adders += 1
        elif isinstance(op, comb.MulOp):
            multipliers += 1
        elif isinstance(op, seq.CompRegOp):
            register_bits += op.data.type.width.data
    return {"adders": adders, "multipliers": multipliers, "register_bits": register_bits}


def design_report(module: ModuleOp) -> dict:
    """The `hashiflex.report` of every hw.module, in order, plus totals (for report.json)."""
    return design_report_of(filter(None, (module_report(op) for op in module.ops)))


def design_report_of(entries: Iterable[dict]) -> dict:
    """`design_report` from the `module_report`s of the modules, in IR order."""
    layers = []
    top = None
    for entry in entries:
        if entry.get("kind") == "top":
            top = entry
        else:
            layers.append(entry)
    totals = {key: sum(l.get(key, 0) for l in layers)
              for key in ("nonzero_weights", "adders", "register_bits", "line_buffer_bits")}
    totals["max_comb_adder_levels"] = max((l.get("comb_adder_levels", 0) for l in layers), default=0)
    return {"top": top, "layers": layers, "totals": totals}
