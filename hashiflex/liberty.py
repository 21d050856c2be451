"""
Just enough of a Liberty (.lib) reader for `hashiflex synth`: the library's name, time unit and
corner, and for every flip-flop cell its area, clock-to-Q delay and setup time.

Why: ABC's `stime` reports the longest combinational path between register outputs/inputs
ports and register inputs/output ports; a register-to-register clock period also needs the
launching flip-flop's clock-to-Q and the capturing one's setup. Those come from the library's
own tables, read here at the middle entry of each table (a mid input slew and a mid load:
the typical case of a flip-flop driving a few gates), the worst of rise and fall.

It is not a general Liberty parser: it finds `cell (NAME) { ... }` groups by brace matching
and reads the few attributes it needs with regular expressions. A file that does not look
like a Liberty library (no `library (...)` group, no cells, no flip-flops) is an InputError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hashiflex.errors import InputError


@dataclass(frozen=True)
class FlipFlop:
    name: str
    area_um2: float
    clk_to_q_ns: float
    setup_ns: float


@dataclass(frozen=True)
class Library:
    path: str
    name: str
    corner: str
    time_unit_ns: float
    flip_flops: dict[str, FlipFlop]

    def register_overhead_ns(self, used: list[str]) -> float:
        """Clock-to-Q plus setup of the slowest flip-flop type among `used` (cell names)."""
        cells = [self.flip_flops[n] for n in used if n in self.flip_flops]
        if not cells:
            cells = list(self.flip_flops.values())
        return max(ff.clk_to_q_ns + ff.setup_ns for ff in cells)


_BRACE = re.compile(r"[{}]")
_GROUP_HEAD = re.compile(r"(\w+)\s*\(\s*\"?([^\")]*)\"?\s*\)\s*\{")


def _group_end(text: str, open_brace: int) -> int:
    """Index just past the `}` matching the `{` at `open_brace`."""
    depth = 0
    for m in _BRACE.finditer(text, open_brace):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.end()
    raise ValueError("unbalanced braces")


def _groups(text: str, kind: str) -> list[tuple[str, str]]:
    """The (name, body) of every top-level `kind (name) { ... }` group directly inside `text`."""
    out = []
    pos = 0
    pattern = re.compile(rf"\b{kind}\s*\(\s*\"?([^\")]*)\"?\s*\)\s*\{{")
    while (m := pattern.search(text, pos)) is not None:
        end = _group_end(text, m.end() - 1)
        out.append((m.group(1), text[m.end() : end - 1]))
        pos = end
    return out


def _mid_value(table: str) -> float:
    """The middle entry of a Liberty lookup table body (`values ("a,b,c", "d,e,f", ...)`)."""
    values = re.search(r"values\s*\(([^)]*)\)", table)
    if values is None:
        raise ValueError("a timing table without values")
    rows = [r for r in re.findall(r"\"([^\"]*)\"", values.group(1))]
    row = [float(v) for v in rows[len(rows) // 2].split(",")]
    return row[len(row) // 2]


def _timing_value(pin_body: str, timing_type: str, tables: tuple[str, ...]) -> float | None:
    worst = None
    for _, timing in _groups(pin_body, "timing"):
        if not re.search(rf"timing_type\s*:\s*\"?{timing_type}\"?\s*;", timing):
            continue
        for table_kind in tables:
            for _, table in _groups(timing, table_kind):
                v = _mid_value(table)
                worst = v if worst is None else max(worst, v)
    return worst


def _flip_flop(name: str, body: str, time_unit_ns: float) -> FlipFlop | None:
    if not re.search(r"\bff\s*\(", body):
        return None
    area = re.search(r"\barea\s*:\s*([0-9.eE+-]+)", body)
    clk_to_q = setup = None
    for _, pin in _groups(body, "pin"):
        if re.search(r"direction\s*:\s*\"?output", pin):
            v = _timing_value(pin, "rising_edge", ("cell_rise", "cell_fall"))
            if v is not None:
                clk_to_q = v if clk_to_q is None else max(clk_to_q, v)
        else:
            v = _timing_value(pin, "setup_rising", ("rise_constraint", "fall_constraint"))
            if v is not None:
                setup = v if setup is None else max(setup, v)
    if area is None or clk_to_q is None or setup is None:
        return None
    return FlipFlop(name, float(area.group(1)), clk_to_q * time_unit_ns, setup * time_unit_ns)


@lru_cache(maxsize=4)
def read_library(path: str) -> Library:
    """Read `path`; raise InputError (one line, naming the file) if it is not a usable library."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"liberty file {path} does not exist")
    try:
        text = p.read_text(errors="replace")
    except OSError as e:
        raise InputError(f"liberty file {path} cannot be read: {e.strerror}") from None
    head = re.search(r"\blibrary\s*\(\s*\"?([^\")]*)\"?\s*\)\s*\{", text)
    if head is None:
        raise InputError(f"liberty file {path} is malformed: no `library (NAME) {{` group")
    unit = re.search(r"time_unit\s*:\s*\"?1(ps|ns)\"?", text)
    time_unit_ns = 0.001 if unit and unit.group(1) == "ps" else 1.0
    corner = re.search(r"default_operating_conditions\s*:\s*\"?(\w+)", text)
    try:
        cells = _groups(text, "cell")
        flops = {}
        for name, body in cells:
            ff = _flip_flop(name, body, time_unit_ns)
            if ff is not None:
                flops[name] = ff
    except (ValueError, IndexError) as e:
        raise InputError(f"liberty file {path} is malformed: {e}") from None
    if not cells:
        raise InputError(f"liberty file {path} is malformed: no `cell (NAME) {{` groups")
    if not flops:
        raise InputError(f"liberty file {path} has no flip-flop cell with setup and clock-to-Q timing")
    return Library(
        path=str(p), name=head.group(1), corner=corner.group(1) if corner else "unknown",
        time_unit_ns=time_unit_ns, flip_flops=flops,
    )
