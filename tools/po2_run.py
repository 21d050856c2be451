"""
`po2-run`: run hw IR cycle by cycle in Python, without Verilator (the `xdsl-run` of
`po2-opt`'s hardware output).

    po2-opt net.mlir -p po2-unroll,po2-to-hw | po2-run --top net_top --stimulus stim.txt
    po2-run design.mlir --stimulus - --when out_valid < stim.txt

It reads hw / comb / seq IR (a file, or standard input), simulates one hw.module
(`--top`; by default the only module that no other instantiates) with
`hashiflex.interpreters.hw.HwSimulator`, and prints the outputs of every cycle.

Stimulus, one line per clock cycle:

    # a comment; blank lines are skipped
    rst=1                     set input ports, then run one cycle
    rst=0 in_valid=1 in_data=0x2a
    *5                        five more cycles, inputs unchanged
    in_valid=0 *3             set, then run three cycles

Inputs keep their value until set again (all start at 0); clock ports are implicit. A value
is decimal or 0x/0b-prefixed, and may be negative (two's complement of the port's width).

Output, one line per cycle: the cycle number (from 0) and every output port as
`name=value` in port order (decimal, or hex with `--hex`). `--when PORT` prints only the
cycles where that output is nonzero (a valid strobe); `--outputs a,b` picks the ports.
Registers start at zero (`--init random:SEED` fills them with random bits instead).
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import TextIO

from xdsl.parser import Parser
from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException

from hashiflex.interpreters.hw import HwSimulationError, HwSimulator
from hashiflex.tools.registry import make_context


class StimulusError(Exception):
    """A line of the stimulus cannot be applied."""


def parse_value(text: str) -> int:
    """A stimulus value: decimal, 0x hex or 0b binary, optionally negative."""
    try:
        return int(text, 0)
    except ValueError:
        raise StimulusError(f"'{text}' is not an integer") from None


def parse_stimulus(lines: TextIO, simulator: HwSimulator) -> list[tuple[dict[str, int], int]]:
    """(input values, cycles to run with them) for each stimulus line, all checked up front."""
    ports = {port.name: port.width for port in simulator.input_ports if not port.is_clock}
    inputs = dict.fromkeys(ports, 0)
    steps = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        repeat = 1
        try:
            for field in fields:
                if field.startswith("*"):
                    repeat = parse_value(field[1:])
                    if repeat < 1:
                        raise StimulusError(f"'{field}': a repeat count is at least 1")
                    continue
                name, equals, text = field.partition("=")
                if not equals:
                    raise StimulusError(f"'{field}' is neither PORT=VALUE nor *COUNT")
                if name not in ports:
                    raise StimulusError(
                        f"no input port '{name}' on '{simulator.top}' (inputs: "
                        + ", ".join(ports)
                        + ")"
                    )
                value, width = parse_value(text), ports[name]
                if not -(1 << (width - 1)) <= value < (1 << width):
                    raise StimulusError(f"{name}={text} does not fit the port's {width} bits")
                inputs[name] = value
        except StimulusError as error:
            raise StimulusError(f"stimulus line {number}: {error}") from None
        steps.append((dict(inputs), repeat))
    return steps


def _format(value: int, hex_output: bool) -> str:
    return f"{value:#x}" if hex_output else str(value)


def run(args: argparse.Namespace) -> None:
    initial: int | random.Random = 0
    if args.init != "zero":
        kind, _, seed = args.init.partition(":")
        if kind != "random":
            raise StimulusError(f"--init '{args.init}': expected zero or random[:SEED]")
        initial = random.Random(parse_value(seed) if seed else 0)
    ir_source = sys.stdin if args.input == "-" else open(args.input)
    with ir_source:
        text = ir_source.read()
    module = Parser(make_context(), text, args.input).parse_module()
    module.verify()
    simulator = HwSimulator(module, args.top, initial)
    outputs = [port.name for port in simulator.output_ports]
    shown = outputs if args.outputs is None else args.outputs.split(",")
    for name in shown + ([args.when] if args.when else []):
        if name not in outputs:
            raise StimulusError(
                f"no output port '{name}' on '{simulator.top}' (outputs: {', '.join(outputs)})"
            )
    stimulus = sys.stdin if args.stimulus == "-" else open(args.stimulus)
    with stimulus:
        steps = parse_stimulus(stimulus, simulator)
    cycle = 0
    for inputs, repeat in steps:
        for _ in range(repeat):
            values = simulator.step(inputs)
            if not args.when or values[args.when]:
                fields = " ".join(f"{name}={_format(values[name], args.hex)}" for name in shown)
                print(f"{cycle} {fields}")
            cycle += 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="po2-run",
        description="Simulate an hw.module of hw/comb/seq IR cycle by cycle (no Verilator).",
    )
    parser.add_argument("input", nargs="?", default="-", help="IR file (default: stdin)")
    parser.add_argument("--top", help="the hw.module to run (default: the uninstantiated one)")
    parser.add_argument(
        "--stimulus", required=True, help="stimulus file, one line per cycle ('-': stdin)"
    )
    parser.add_argument("--when", help="print only the cycles where this output is nonzero")
    parser.add_argument("--outputs", help="comma-separated output ports to print (default: all)")
    parser.add_argument("--hex", action="store_true", help="print values in hex")
    parser.add_argument(
        "--init", default="zero", help="register contents at power-up: zero or random[:SEED]"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    from hashiflex.errors import run_entry_point, split_debug_flag

    argv, debug = split_debug_flag(argv)
    args = build_parser().parse_args(argv)
    # Known errors are one line, exit 1 (below); anything else goes to the one top-level
    # handler: one line and a hint to rerun with --debug, never a raw traceback.
    run_entry_point("po2-run", lambda: _run_reporting(args), debug)


def _run_reporting(args) -> int:
    """Run po2-run; known errors are one line and exit code 1."""
    if args.input == "-" and args.stimulus == "-":
        print("po2-run: the IR and the stimulus cannot both come from stdin", file=sys.stderr)
        return 1
    try:
        run(args)
    except (ParseError, DiagnosticException, VerifyException) as error:
        print(str(error).rstrip(), file=sys.stderr)
        return 1
    except (HwSimulationError, StimulusError) as error:
        print(f"po2-run: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"po2-run: cannot open '{error.filename}': {error.strerror}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `po2-run ... | head`
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    main()
