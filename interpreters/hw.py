"""
An xDSL interpreter and a cycle-accurate simulator for the hw / comb / seq IR we emit.

Why: `po2-to-hw` produces hw IR, and before this file the only ways to run it were
Verilator (needs the SystemVerilog emitter, a C++ compiler and seconds of build) or
private simulators inside the tests. This is the one Python execution of hw IR: the tests
check RTL-level behaviour with it, and `po2-run` (tools/po2_run.py) lets a `po2-opt` user
drive a module without Verilator.

Values are Python ints holding the two's complement bit pattern of their type: an `iN`
value is always in [0, 2^N). Every op is two-state (CIRCT's comb semantics on 0/1 bits).

* One expression function per op class (`@expression(comb.MuxOp)`; the ops of one shape,
  such as add/sub/mul or and/or/xor, from a small table): given the op and the Python
  expressions of its operands, it returns the expression of its result, with the op's
  static data (mask, predicate, low bit) folded in. The bit-level rules that are more than
  a mask (sign extension, concatenation order, shifts by the width or more, signed
  division) are named helpers, tested one by one.
* `HwFunctions` registers them with xDSL's interpreter (one `@impl` per op class, the
  expression compiled into a function by `kernel_of`), so `Interpreter.run_op(op, args)`
  evaluates any supported op, as xDSL's own interpreter functions do for arith.
* `HwSimulator` runs an `hw.module` cycle by cycle: it flattens the `hw.instance` tree
  into one netlist, orders the combinational ops topologically once (a combinational loop
  is an error), drops ops that reach no output or register, and pastes their expressions
  into one straight-line Python function (0.12-0.16 us per op per cycle). A cycle is:
  apply the inputs, evaluate the combinational logic, sample the outputs, then the clock
  edge updates every `seq.compreg` (synchronous reset: `reset ? reset_value : input`). A
  clock enable is a mux in front of the register in our IR (xDSL's `seq.compreg` has no
  enable operand). One clock domain; `hw.module.extern` instances cannot be simulated.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.dialects import comb, hw, seq
from xdsl.dialects.builtin import IntegerType, ModuleOp
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    impl,
    register_impls,
)
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue

__all__ = [
    "HwFunctions",
    "HwSimulationError",
    "HwSimulator",
    "Port",
    "concat_bits",
    "constant_value",
    "expression",
    "expression_of",
    "kernel_of",
    "replicate_bits",
    "run_stream",
    "shift_left",
    "shift_right_signed",
    "shift_right_unsigned",
    "signed_div",
    "signed_mod",
    "supported_ops",
    "to_signed",
    "truncate",
    "width_of",
]


class HwSimulationError(Exception):
    """The IR cannot be simulated (unsupported op, combinational loop, bad stimulus...)."""


# ---------------------------------------------------------------------------------------
# Bit-level helpers (named, so that each is tested once)
# ---------------------------------------------------------------------------------------


def width_of(typ: Attribute) -> int:
    """Bits of a value of type `typ`: iN is N wide; a `!seq.clock` is one wire."""
    if isinstance(typ, IntegerType):
        return typ.width.data
    if isinstance(typ, seq.ClockType):
        return 1
    raise HwSimulationError(f"values of type {typ} are not supported (integers and clocks only)")


def truncate(value: int, width: int) -> int:
    """The low `width` bits of `value`: wrap-around modulo 2^width (negatives included)."""
    return value & ((1 << width) - 1)


def to_signed(value: int, width: int) -> int:
    """Read a `width`-bit pattern as a two's complement number (sign extension)."""
    sign = 1 << (width - 1)
    return (value & (sign - 1)) - (value & sign)


def concat_bits(values: Sequence[int], widths: Sequence[int]) -> int:
    """comb.concat: the first operand lands in the most significant bits (as in Verilog)."""
    result = 0
    for value, width in zip(values, widths):
        result = (result << width) | value
    return result


def replicate_bits(value: int, width: int, times: int) -> int:
    """comb.replicate: `times` copies of a `width`-bit value side by side."""
    return concat_bits([value] * times, [width] * times)


def shift_left(value: int, amount: int, width: int) -> int:
    """comb.shl: a shift by `width` or more bits gives zero."""
    return (value << amount) & ((1 << width) - 1) if amount < width else 0


def shift_right_unsigned(value: int, amount: int, width: int) -> int:
    """comb.shru: a shift by `width` or more bits gives zero."""
    return value >> amount if amount < width else 0


def shift_right_signed(value: int, amount: int, width: int) -> int:
    """comb.shrs: the sign bit fills in; a shift by `width` or more bits gives all sign bits."""
    return truncate(to_signed(value, width) >> min(amount, width - 1), width)


def signed_div(lhs: int, rhs: int, width: int) -> int:
    """comb.divs on bit patterns: truncates toward zero; x / 0 = 0 (as Verilator computes)."""
    a, b = to_signed(lhs, width), to_signed(rhs, width)
    if b == 0:
        return 0
    quotient = abs(a) // abs(b)
    return truncate(-quotient if (a < 0) != (b < 0) else quotient, width)


def signed_mod(lhs: int, rhs: int, width: int) -> int:
    """comb.mods on bit patterns: the remainder takes the dividend's sign; x % 0 = 0."""
    a, b = to_signed(lhs, width), to_signed(rhs, width)
    if b == 0:
        return 0
    remainder = abs(a) % abs(b)
    return truncate(-remainder if a < 0 else remainder, width)


# ---------------------------------------------------------------------------------------
# One function per op: the op's result as a Python expression of its operands
# ---------------------------------------------------------------------------------------
#
# Each function below receives the op and the Python expressions of its operands (names of
# locals, or int literals) and returns the expression of its result, with the op's static
# data (masks, low bit, predicate) already folded in. The simulator pastes these into one
# straight-line function per design; `kernel_of` compiles a single one into a callable for
# xDSL's interpreter. One text, two uses: the interpreter and the simulator cannot drift.

OpExpression = Callable[..., str]
_EXPRESSIONS: dict[type[Operation], OpExpression] = {}

# The helpers an expression may call by name.
_HELPERS: dict[str, Any] = {
    "concat_bits": concat_bits,
    "replicate_bits": replicate_bits,
    "shift_left": shift_left,
    "shift_right_unsigned": shift_right_unsigned,
    "shift_right_signed": shift_right_signed,
    "signed_div": signed_div,
    "signed_mod": signed_mod,
    "to_signed": to_signed,
}


def expression(op_type: type[Operation]) -> Callable[[OpExpression], OpExpression]:
    """Register the function giving the result expression of `op_type`."""

    def register(function: OpExpression) -> OpExpression:
        _EXPRESSIONS[op_type] = function
        return function

    return register


def supported_ops() -> tuple[type[Operation], ...]:
    """The combinational op classes the interpreter and the simulator evaluate."""
    return tuple(_EXPRESSIONS)


def expression_of(op: Operation, operands: Sequence[str]) -> str:
    """The Python expression of `op`'s result; an unsupported op is an error naming it."""
    function = _EXPRESSIONS.get(type(op))
    if function is None:
        raise HwSimulationError(
            f"'{op.name}' cannot be simulated: supported ops are "
            + ", ".join(sorted(cls.name for cls in _EXPRESSIONS))
            + ", hw.instance, hw.output and seq.compreg"
        )
    return function(op, *operands)


def kernel_of(op: Operation) -> Callable[..., int]:
    """`op` as a function from its operand values to its result value."""
    names = [f"x{i}" for i in range(len(op.operands))]
    return eval(f"lambda {', '.join(names)}: {expression_of(op, names)}", dict(_HELPERS))


def _result_width(op: Operation) -> int:
    return width_of(op.results[0].type)


def _mask(op: Operation) -> int:
    return (1 << _result_width(op)) - 1


def constant_value(op: hw.ConstantOp) -> int:
    """The bit pattern of an hw.constant (a negative literal wraps to its width)."""
    return truncate(op.value.value.data, _result_width(op))


@expression(hw.ConstantOp)
def constant_expression(op: hw.ConstantOp) -> str:
    return str(constant_value(op))


@expression(hw.BitcastOp)
def bitcast_expression(op: hw.BitcastOp, value: str) -> str:
    if width_of(op.operands[0].type) != _result_width(op):
        raise HwSimulationError(f"hw.bitcast between different widths: {op}")
    return value


def _wrapping(operator: str) -> OpExpression:
    def wrapping_expression(op: Operation, *values: str) -> str:
        return f"({f' {operator} '.join(values)}) & {_mask(op)}"

    return wrapping_expression


def _bitwise(operator: str) -> OpExpression:
    def bitwise_expression(op: Operation, *values: str) -> str:
        return f"({f' {operator} '.join(values)})"

    return bitwise_expression


def _helper_call(helper: Callable[[int, int, int], int]) -> OpExpression:
    def call_expression(op: Operation, lhs: str, rhs: str) -> str:
        return f"{helper.__name__}({lhs}, {rhs}, {_result_width(op)})"

    return call_expression


# Arithmetic wraps around modulo 2^width; bitwise ops cannot leave their width; the rest
# are a call of the named helper that holds their rule.
for _op_type, _operator in {comb.AddOp: "+", comb.SubOp: "-", comb.MulOp: "*"}.items():
    expression(_op_type)(_wrapping(_operator))
for _op_type, _operator in {comb.AndOp: "&", comb.OrOp: "|", comb.XorOp: "^"}.items():
    expression(_op_type)(_bitwise(_operator))
for _op_type, _helper in {
    comb.DivSOp: signed_div,
    comb.ModSOp: signed_mod,
    comb.ShlOp: shift_left,
    comb.ShrUOp: shift_right_unsigned,
    comb.ShrSOp: shift_right_signed,
}.items():
    expression(_op_type)(_helper_call(_helper))


@expression(comb.DivUOp)
def divu_expression(op: comb.DivUOp, lhs: str, rhs: str) -> str:
    return f"({lhs} // {rhs} if {rhs} else 0)"  # x / 0 = 0, as Verilator computes


@expression(comb.ModUOp)
def modu_expression(op: comb.ModUOp, lhs: str, rhs: str) -> str:
    return f"({lhs} % {rhs} if {rhs} else 0)"


@expression(comb.ParityOp)
def parity_expression(op: comb.ParityOp, value: str) -> str:
    return f"({value}).bit_count() & 1"


_COMPARISONS = {
    "eq": "==", "ne": "!=", "slt": "<", "sle": "<=", "sgt": ">", "sge": ">=",
    "ult": "<", "ule": "<=", "ugt": ">", "uge": ">=",
}  # fmt: skip


@expression(comb.ICmpOp)
def icmp_expression(op: comb.ICmpOp, lhs: str, rhs: str) -> str:
    predicate = comb.ICMP_COMPARISON_OPERATIONS[op.predicate.value.data]
    if predicate.startswith("s"):  # compare as two's complement numbers
        width = width_of(op.operands[0].type)
        lhs, rhs = f"to_signed({lhs}, {width})", f"to_signed({rhs}, {width})"
    return f"(1 if {lhs} {_COMPARISONS[predicate]} {rhs} else 0)"


@expression(comb.MuxOp)
def mux_expression(op: comb.MuxOp, cond: str, if_true: str, if_false: str) -> str:
    return f"({if_true} if {cond} else {if_false})"


@expression(comb.ExtractOp)
def extract_expression(op: comb.ExtractOp, value: str) -> str:
    low_bit = op.low_bit.value.data
    return f"({value} >> {low_bit}) & {_mask(op)}" if low_bit else f"{value} & {_mask(op)}"


@expression(comb.ConcatOp)
def concat_expression(op: comb.ConcatOp, *values: str) -> str:
    # The first operand is the most significant: the last one is not shifted.
    parts, shift = [], 0
    for operand, value in reversed(list(zip(op.operands, values))):
        parts.append(f"({value} << {shift})" if shift else value)
        shift += width_of(operand.type)
    return f"({' | '.join(reversed(parts))})"


@expression(comb.ReplicateOp)
def replicate_expression(op: comb.ReplicateOp, value: str) -> str:
    width = width_of(op.operands[0].type)
    if width == 1:  # the common case: a sign or enable bit spread over a word
        return f"({_mask(op)} if {value} else 0)"
    return f"replicate_bits({value}, {width}, {_result_width(op) // width})"


# ---------------------------------------------------------------------------------------
# xDSL interpreter functions
# ---------------------------------------------------------------------------------------


def _interpreter_impl(op_type: type[Operation]):
    @impl(op_type)
    def run(
        self: InterpreterFunctions, interpreter: Interpreter, op: Operation, args: PythonValues
    ) -> PythonValues:
        return (kernel_of(op)(*args),)

    run.__name__ = f"run_{op_type.__name__}"
    return run


# One `@impl` per supported op class, built from the table of expressions so that the
# table stays the single list of what is supported.
HwFunctions = register_impls(
    type(
        "HwFunctions",
        (InterpreterFunctions,),
        {
            "__doc__": "xDSL interpreter functions of the comb ops, hw.constant and hw.bitcast "
            "(values: ints holding the bit pattern, as in `HwSimulator`).",
            **{f"run_{cls.__name__}": _interpreter_impl(cls) for cls in _EXPRESSIONS},
        },
    )
)


# ---------------------------------------------------------------------------------------
# Cycle-accurate simulation of an hw.module
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A port of the simulated module."""

    name: str
    width: int
    is_clock: bool = False


@dataclass
class _Register:
    op: seq.CompRegOp
    path: str
    data: int  # slot of the next-value input
    reset: int | None
    reset_value: int | None
    out: int
    clock: int


@dataclass
class _Netlist:
    """The flattened design: every value is a numbered slot."""

    nodes: list[tuple[Operation, str, list[int], int]]  # (op, path, operand slots, result)
    registers: list[_Register]
    inputs: list[int]  # slot of each top input port
    outputs: list[int]  # slot of each top output port
    values: list[tuple[SSAValue, str]]  # the value of each slot and its instance path
    aliases: dict[int, int]  # an instance result's slot -> the child's output slot

    def new_slot(self, value: SSAValue, path: str) -> int:
        self.values.append((value, path))
        return len(self.values) - 1

    def name(self, slot: int) -> str:
        """A readable name of a slot's value, for errors: instance path and namehint."""
        value, path = self.values[slot]
        if isinstance(value, BlockArgument):
            return f"{path}<argument {value.index}>"
        hint = value.owner.attributes.get("sv.namehint")
        label = hint.data if hint is not None else (value.name_hint or value.owner.name)
        return f"{path}{label}"

    def resolve(self, slot: int) -> int:
        if slot not in self.aliases:
            return slot
        seen = set()
        while slot in self.aliases:
            if slot in seen:
                raise HwSimulationError(
                    f"combinational loop: '{self.name(slot)}' is wired to itself "
                    "through instance ports"
                )
            seen.add(slot)
            slot = self.aliases[slot]
        return slot


def _ports(module: hw.HWModuleOp | hw.HWModuleExternOp) -> tuple[list[Port], list[Port]]:
    inputs, outputs = [], []
    for port in module.module_type.ports.data:
        is_clock = isinstance(port.type, seq.ClockType)
        entry = Port(port.port_name.data, width_of(port.type), is_clock)
        (inputs if port.dir.data.is_input_like() else outputs).append(entry)
    return inputs, outputs


def _flatten(design: Mapping[str, hw.HWModuleOp], top: str) -> _Netlist:
    """
    Inline every hw.instance: each instance gets its own slots, its input ports are the
    parent's operand slots and its results alias the child's output slots, so the schedule
    holds no copies.
    """
    net = _Netlist([], [], [], [], [], {})

    def visit(
        name: str, path: str, arg_slots: list[int] | None, stack: tuple[str, ...]
    ) -> list[int]:
        if name in stack:
            raise HwSimulationError(f"module '{name}' instantiates itself: {' -> '.join(stack)}")
        module = design.get(name)
        if module is None:
            raise HwSimulationError(f"no hw.module named '{name}' (instantiated as '{path}')")
        block = module.body.block
        slots: dict[SSAValue, int] = {}
        for arg in block.args:
            slots[arg] = (
                arg_slots[arg.index] if arg_slots is not None else net.new_slot(arg, path)
            )
        # Every result gets its slot first: in a graph region a value may be used above its
        # definition (register feedback, instance outputs).
        for op in block.ops:
            for result in op.results:
                slots[result] = net.new_slot(result, path)
        output_slots: list[int] = []
        for op in block.ops:
            if isinstance(op, hw.OutputOp):
                output_slots = [slots[v] for v in op.operands]
            elif isinstance(op, hw.InstanceOp):
                child = op.module_name.string_value()
                child_path = f"{path}{op.instance_name.data}/"
                outs = visit(child, child_path, [slots[v] for v in op.operands], (*stack, name))
                for result, child_slot in zip(op.results, outs):
                    net.aliases[slots[result]] = child_slot
            elif isinstance(op, seq.CompRegOp):
                out = slots[op.results[0]]
                net.registers.append(
                    _Register(
                        op,
                        net.name(out),
                        slots[op.input],
                        slots[op.reset] if op.reset is not None else None,
                        slots[op.reset_value] if op.reset_value is not None else None,
                        out,
                        slots[op.clk],
                    )
                )
            elif type(op) in _EXPRESSIONS:
                net.nodes.append((op, path, [slots[v] for v in op.operands], slots[op.results[0]]))
            else:
                expression_of(op, [])  # raises: the op is not supported
        return output_slots

    outputs = visit(top, "", None, ())
    net.inputs = list(range(len(design[top].body.block.args)))
    find = net.resolve
    net.outputs = [find(s) for s in outputs]
    net.nodes = [(op, path, [find(s) for s in ins], out) for op, path, ins, out in net.nodes]
    for reg in net.registers:
        reg.data = find(reg.data)
        reg.reset = find(reg.reset) if reg.reset is not None else None
        reg.reset_value = find(reg.reset_value) if reg.reset_value is not None else None
        reg.clock = find(reg.clock)
    return net


def _schedule(net: _Netlist) -> list[tuple[Operation, str, list[int], int]]:
    """The live combinational nodes in an order where every operand is computed first."""
    producer = {out: i for i, (_, _, _, out) in enumerate(net.nodes)}
    # Liveness: what reaches an output or a register.
    live: set[int] = set()
    roots = list(net.outputs)
    for reg in net.registers:
        roots += [reg.data] + [s for s in (reg.reset, reg.reset_value) if s is not None]
    stack = [producer[s] for s in roots if s in producer]
    while stack:
        index = stack.pop()
        if index in live:
            continue
        live.add(index)
        stack += [producer[s] for s in net.nodes[index][2] if s in producer]
    # Kahn's algorithm over the live nodes.
    users: dict[int, list[int]] = {}
    missing: dict[int, int] = {}
    for index in live:
        operands = {s for s in net.nodes[index][2] if s in producer}
        missing[index] = len(operands)
        for slot in operands:
            users.setdefault(slot, []).append(index)
    ready = sorted(index for index in live if missing[index] == 0)
    order = []
    while ready:
        index = ready.pop()
        order.append(index)
        for user in users.get(net.nodes[index][3], ()):
            missing[user] -= 1
            if missing[user] == 0:
                ready.append(user)
    if len(order) != len(live):
        stuck = sorted(net.name(net.nodes[i][3]) for i in live if missing[i])
        raise HwSimulationError(
            "combinational loop (a cycle not broken by a seq.compreg) through: "
            + ", ".join(stuck[:8])
            + (" ..." if len(stuck) > 8 else "")
        )
    return [net.nodes[i] for i in order]


def _top_name(design: Mapping[str, hw.HWModuleOp], instantiated: set[str]) -> str:
    roots = [name for name in design if name not in instantiated]
    if len(roots) != 1:
        raise HwSimulationError(
            "cannot tell which hw.module is the top: name one of " + ", ".join(roots or design)
        )
    return roots[0]


class HwSimulator:
    """
    A cycle-accurate simulation of one hw.module (the top) of `design`, instances included.

    `design` is a builtin.module holding hw.modules (`top` names the one to run; by default
    the only module no other instantiates) or one hw.module itself.

    `step(inputs)` applies input values (a mapping from port name to int; absent inputs are
    0, clock ports take no value), evaluates the logic, returns the outputs of this cycle
    (sampled before the edge) and then clocks every register. An input value may be
    negative (it is taken as two's complement) but must fit its port.

    `initial` sets the registers' contents at power-up (before any reset): 0, or a
    `random.Random` to fill them with random bits, which shows any reliance on
    uninitialised state. A register's `powerOn` constant takes precedence.
    """

    def __init__(
        self,
        design: ModuleOp | hw.HWModuleOp,
        top: str | None = None,
        initial: int | random.Random = 0,
    ):
        if isinstance(design, hw.HWModuleOp):  # one module: its own design, or its parent's
            top = design.sym_name.data if top is None else top
            parent = design.parent_op()
            ops = parent.body.block.ops if isinstance(parent, ModuleOp) else [design]
        else:
            ops = design.ops
        modules = {
            op.sym_name.data: op
            for op in ops
            if isinstance(op, hw.HWModuleOp | hw.HWModuleExternOp)
        }
        instantiated = {
            op.module_name.string_value()
            for module in modules.values()
            if isinstance(module, hw.HWModuleOp)
            for op in module.body.walk()
            if isinstance(op, hw.InstanceOp)
        }
        for name, module in modules.items():
            if isinstance(module, hw.HWModuleExternOp) and name in instantiated:
                raise HwSimulationError(
                    f"module '{name}' is external (hw.module.extern): it has no body to simulate"
                )
        design_modules = {n: m for n, m in modules.items() if isinstance(m, hw.HWModuleOp)}
        if not design_modules:
            raise HwSimulationError("the input holds no hw.module")
        self.top = top if top is not None else _top_name(design_modules, instantiated)
        if self.top not in design_modules:
            raise HwSimulationError(
                f"no hw.module named '{self.top}': the design has "
                + ", ".join(sorted(design_modules))
            )
        self.input_ports, self.output_ports = _ports(design_modules[self.top])
        net = _flatten(design_modules, self.top)
        schedule = _schedule(net)
        self._check_clocks(net)
        self.register_names = [reg.path for reg in net.registers]
        self.state = self._initial_state(net, initial)
        self.source, self._settle = _compile(net, schedule, self.top)
        self.ops_per_cycle = len(schedule)
        self.cycle = 0
        self._data_ports = [
            (index, port) for index, port in enumerate(self.input_ports) if not port.is_clock
        ]
        self._port_index = {port.name: index for index, port in self._data_ports}

    def _check_clocks(self, net: _Netlist) -> None:
        clocks = {net.inputs[i] for i, port in enumerate(self.input_ports) if port.is_clock}
        for reg in net.registers:
            if reg.clock not in clocks:
                raise HwSimulationError(
                    f"register '{reg.path}' is clocked by '{net.name(reg.clock)}', "
                    "not by a clock port of the top: only one clock domain is simulated"
                )
        if len({reg.clock for reg in net.registers}) > 1:
            raise HwSimulationError("registers on different clock ports: one clock domain only")

    @staticmethod
    def _initial_state(net: _Netlist, initial: int | random.Random) -> list[int]:
        state = []
        for reg in net.registers:
            width = width_of(reg.op.results[0].type)
            power_on = reg.op.power_on_value
            if power_on is not None and isinstance(power_on.owner, hw.ConstantOp):
                state.append(constant_value(power_on.owner))
            elif isinstance(initial, random.Random):
                state.append(initial.getrandbits(width))
            else:
                state.append(truncate(initial, width))
        return state

    def _input_vector(self, inputs: Mapping[str, int]) -> list[int]:
        vector = [0] * len(self.input_ports)
        for name, value in inputs.items():
            index = self._port_index.get(name)
            if index is None:
                raise HwSimulationError(
                    f"module '{self.top}' has no input port '{name}' (inputs: "
                    + ", ".join(port.name for _, port in self._data_ports)
                    + ")"
                )
            width = self.input_ports[index].width
            value = int(value)
            if not -(1 << (width - 1)) <= value < (1 << width):
                raise HwSimulationError(
                    f"value {value} does not fit input port '{name}' of {width} bits"
                )
            vector[index] = value & ((1 << width) - 1)
        return vector

    def evaluate(self, inputs: Mapping[str, int] | None = None, /, **named: int) -> dict[str, int]:
        """The outputs for these inputs in the current state, without clocking."""
        outputs, _ = self._settle(self._input_vector({**(inputs or {}), **named}), self.state)
        return dict(zip((port.name for port in self.output_ports), outputs))

    def step(self, inputs: Mapping[str, int] | None = None, /, **named: int) -> dict[str, int]:
        """One clock cycle: this cycle's outputs (before the edge), then the edge."""
        outputs, self.state = self._settle(
            self._input_vector({**(inputs or {}), **named}), self.state
        )
        self.cycle += 1
        return dict(zip((port.name for port in self.output_ports), outputs))

    def registers(self) -> dict[str, int]:
        """Every register's current content, by hierarchical name (instance/namehint)."""
        return dict(zip(self.register_names, self.state))


def _compile(
    net: _Netlist, schedule: Iterable[tuple[Operation, str, list[int], int]], top: str
) -> tuple[str, Callable[[list[int], list[int]], tuple[list[int], list[int]]]]:
    """One Python function computing (outputs, next register state) from (inputs, state)."""
    expression: dict[int, str] = {}
    lines = ["def settle(I, S):"]
    for index, slot in enumerate(net.inputs):
        expression[slot] = f"v{slot}"
        lines.append(f"    v{slot} = I[{index}]")
    for index, reg in enumerate(net.registers):
        expression[reg.out] = f"v{reg.out}"
        lines.append(f"    v{reg.out} = S[{index}]")
    for op, path, operands, out in schedule:
        try:
            text = expression_of(op, [expression[s] for s in operands])
        except HwSimulationError as error:
            raise HwSimulationError(f"in '{path or top}': {error}") from None
        if isinstance(op, hw.ConstantOp):  # a literal: pasted where it is used
            expression[out] = text
        else:
            expression[out] = f"v{out}"
            lines.append(f"    v{out} = {text}")
    outputs = ", ".join(expression[s] for s in net.outputs)
    next_state = []
    for reg in net.registers:
        data = expression[reg.data]
        if reg.reset is not None:  # synchronous: the reset wins on the edge
            data = f"({expression[reg.reset_value]} if {expression[reg.reset]} else {data})"
        next_state.append(data)
    lines.append(f"    return [{outputs}], [{', '.join(next_state)}]")
    source = "\n".join(lines) + "\n"
    env = dict(_HELPERS)
    exec(compile(source, f"<hw simulation of {top}>", "exec"), env)
    return source, env["settle"]


def run_stream(
    simulator: HwSimulator, pixels: Sequence[int], drain_outputs: int = 0, reset_cycles: int = 4
) -> list[tuple[int, list[int]]]:
    """
    Stream `pixels` through a top with our streaming interface (docs/microarchitecture.md)
    as backends/verilator.py's harness does, and return the same records as its
    `Simulator.run`: (cycle, [outputs other than out_valid / in_ready, in port order]) for
    each cycle with out_valid. `reset_cycles` of rst=1 first; then pixels back to back
    while accepted (in_ready, when the port exists), then zero pixels until
    `drain_outputs` outputs have been seen in total. Other inputs stay 0 (no NPU writes).
    """
    handshake = ("out_valid", "in_ready")
    shown = [port.name for port in simulator.output_ports if port.name not in handshake]
    for _ in range(reset_cycles):
        simulator.step(rst=1)
    records: list[tuple[int, list[int]]] = []
    cycle = next_pixel = 0
    while next_pixel < len(pixels) or len(records) < drain_outputs:
        have_pixel = next_pixel < len(pixels)
        data = pixels[next_pixel] if have_pixel else 0
        outputs = simulator.step(rst=0, in_valid=1, in_data=data)
        if outputs["out_valid"]:
            records.append((cycle, [outputs[name] for name in shown]))
        if have_pixel and outputs.get("in_ready", 1):
            next_pixel += 1
        cycle += 1
    return records
