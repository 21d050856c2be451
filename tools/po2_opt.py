"""
`po2-opt`: the opt driver of HaShiFlex, in the style of `mlir-opt` and `xdsl-opt`.

It is xDSL's own `xDSLOptMain` with the po2 dialect, the hardware dialects (hw, comb, seq)
and the project's passes registered, so `-p`, `--split-input-file`, `--verify-diagnostics`,
`-o` and `-t` behave exactly as in `xdsl-opt`. On bad input it prints the diagnostic (with
its source location) and exits non-zero, never with a Python traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.exceptions import (
    ArgSpecParseError,
    DiagnosticException,
    ParseError,
    VerifyException,
)
from xdsl.utils.lexer import Span
from xdsl.xdsl_opt_main import xDSLOptMain

from hashiflex.passes import all_passes, hardening_pipeline_spec
from hashiflex.tools.registry import register_dialects, targets


class LocatingParser(Parser):
    """xDSL's parser, remembering where each op starts so verifier errors can point there."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.op_spans: dict[Operation, Span] = {}

    def parse_optional_operation(self) -> Operation | None:
        start = self._current_token.span
        op = super().parse_optional_operation()
        if op is not None:
            self.op_spans[op] = start
        return op


def verify_with_locations(module: ModuleOp, spans: dict[Operation, Span]) -> None:
    """
    Verify every op on its own and report the innermost failing one at its source
    location (xDSL's own verifier only prints the generic IR around the failure).
    """
    failing: list[tuple[Operation, VerifyException]] = []
    for op in module.walk():
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as error:
            failing.append((op, error))
    if not failing:
        return
    failing_ops = {op for op, _ in failing}

    def has_failing_descendant(op: Operation) -> bool:
        return any(inner in failing_ops for inner in op.walk() if inner is not op)

    op, error = next((f for f in failing if not has_failing_descendant(f[0])), failing[0])
    message = str(error).removeprefix("Operation does not verify: ")
    if op in spans:
        raise VerifyException(spans[op].print_with_context(f"error: {message}").rstrip())
    raise VerifyException(f"error: {message}")


class Po2OptMain(xDSLOptMain):
    version_format = "po2-opt (HaShiFlex) built on xdsl {xdsl_version}"

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        # The description shows the hardening pipeline on a line of its own, unwrapped.
        arg_parser.formatter_class = argparse.RawDescriptionHelpFormatter
        super().register_all_arguments(arg_parser)

    def register_all_dialects(self) -> None:
        register_dialects(self.ctx)

    def register_all_frontends(self) -> None:
        super().register_all_frontends()

        def parse_mlir(io: IO[bytes]) -> ModuleOp:
            parser = LocatingParser(
                self.ctx, io.read().decode(), self.get_input_name()
            )
            module = parser.parse_module(not self.args.no_implicit_module)
            if not self.args.disable_verify:
                verify_with_locations(module, parser.op_spans)
            return module

        self.available_frontends["mlir"] = parse_mlir

    def prepare_output(self) -> IO[str]:
        """
        `-o FILE` is written atomically: to a temporary file beside it, moved into place only
        when every chunk was parsed, transformed and printed (`run`). A parse error leaves
        FILE as it was (xDSL's own driver empties it first); `-o` may name the input file.
        """
        self._partial_output = None
        if self.args.output_file is None:
            return sys.stdout
        target = Path(self.args.output_file)
        if target.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(target))
        try:
            fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        except OSError as error:  # name the file asked for, not the temporary one
            raise type(error)(error.errno, error.strerror, str(target)) from None
        self._partial_output = Path(partial)
        return os.fdopen(fd, "w")

    def run(self):
        try:
            super().run()
        except BaseException:
            if getattr(self, "_partial_output", None) is not None:
                self._partial_output.unlink(missing_ok=True)
            raise
        if self._partial_output is not None:
            os.chmod(self._partial_output, 0o644)
            os.replace(self._partial_output, self.args.output_file)

    def register_all_passes(self) -> None:
        for name, factory in all_passes().items():
            self.register_pass(name, factory)

    def register_all_targets(self) -> None:
        super().register_all_targets()
        self.available_targets.update(targets())


def main(argv: list[str] | None = None) -> None:
    from hashiflex.errors import run_entry_point, split_debug_flag

    argv, debug = split_debug_flag(argv)
    run_entry_point("po2-opt", lambda: _run(argv), debug)


def _run(argv: list[str]) -> int:
    from hashiflex.backends.sv_emitter import EmitError

    try:
        description = (
            "HaShiFlex modular optimiser for po2/hw IR.\n\n"
            "The hardening pipeline (layer-level po2 IR to SystemVerilog):\n"
            f"  po2-opt in.mlir -p {hardening_pipeline_spec()} -t sv"
        )
        Po2OptMain(description=description, args=argv).run()
    except (ParseError, DiagnosticException) as error:
        print(str(error).rstrip(), file=sys.stderr)
        sys.exit(1)
    except EmitError as error:  # e.g. -t sv on IR not lowered to hw yet
        print(f"po2-opt: cannot emit SystemVerilog: {error}", file=sys.stderr)
        sys.exit(1)
    except ArgSpecParseError as error:
        print(f"po2-opt: malformed pass pipeline: {error}", file=sys.stderr)
        sys.exit(1)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"po2-opt: cannot open '{error.filename}': {error.strerror}", file=sys.stderr)
        sys.exit(1)
    except ValueError as error:
        message = str(error)
        if message.startswith("Unrecognized passes"):
            # xDSL names the unknown pass; a user also needs to know what exists.
            message += ". Available passes: " + ", ".join(sorted(all_passes()))
        print(f"po2-opt: {message}", file=sys.stderr)
        sys.exit(1)
    return 0


if __name__ == "__main__":
    main()
