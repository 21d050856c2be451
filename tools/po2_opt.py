"""
`po2-opt`: the opt driver of HaShiFlex, in the style of `mlir-opt` and `xdsl-opt`.

It is xDSL's own `xDSLOptMain` with the po2 dialect, the hardware dialects (hw, comb, seq)
and the project's passes registered, so `-p`, `--split-input-file`, `--verify-diagnostics`,
`-o` and `-t` behave exactly as in `xdsl-opt`. On bad input it prints the diagnostic (with
its source location) and exits non-zero, never with a Python traceback.
"""

from __future__ import annotations

import sys
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError
from xdsl.xdsl_opt_main import xDSLOptMain

from hashiflex.passes import all_passes
from hashiflex.tools.registry import register_dialects, targets


class Po2OptMain(xDSLOptMain):
    version_format = "po2-opt (HaShiFlex) built on xdsl {xdsl_version}"

    def register_all_dialects(self) -> None:
        register_dialects(self.ctx)

    def register_all_passes(self) -> None:
        for name, factory in all_passes().items():
            self.register_pass(name, factory)

    def register_all_targets(self) -> None:
        super().register_all_targets()
        self.available_targets.update(targets())


def main(argv: list[str] | None = None) -> None:
    try:
        Po2OptMain(description="HaShiFlex modular optimiser for po2/hw IR", args=argv).run()
    except (ParseError, DiagnosticException) as error:
        print(str(error).rstrip(), file=sys.stderr)
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


if __name__ == "__main__":
    main()
