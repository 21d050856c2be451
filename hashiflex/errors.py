"""
The errors the flow reports to users (one line each, naming the thing and the rule), and
the one top-level handler every console script runs under (`run_entry_point`).
"""


class HashiflexError(Exception):
    """Base of every user-facing error; the CLI prints it as one line and exits 2."""


class InputError(HashiflexError):
    """A file, shape or option the user gave is wrong."""


class ModelError(HashiflexError):
    """The model cannot be compiled (unsupported op, shapes that do not chain...)."""


class DesignError(HashiflexError):
    """A design directory is missing, incomplete or not a compiled design."""


class ToolchainError(HashiflexError):
    """The simulator toolchain is missing or failed."""


class CheckFailed(HashiflexError):
    """RTL and golden model disagree."""


# -- the top level of every console script ----------------------------------------------

DEBUG_FLAG = "--debug"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def split_debug_flag(argv: list[str] | None) -> tuple[list[str], bool]:
    """argv without `--debug` (anywhere before a `--`), and whether it was there."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = DEBUG_FLAG in argv[:end]
    return [a for i, a in enumerate(argv) if i >= end or a != DEBUG_FLAG], debug


def run_entry_point(prog: str, body, debug: bool = False) -> "NoReturn":  # noqa: F821
    """
    The one top-level handler of every console script (`hashiflex`, `po2-opt`, ...): runs
    `body()` (which returns the exit code) and exits. A `HashiflexError` is one line, exit 2;
    an OS error (a file that cannot be read or written) one line naming the file, exit 2;
    running out of memory one line, exit 2; Ctrl-C exit 130 and SIGTERM exit 143, both after
    the cleanup handlers ran; any other exception is a bug: one line and a hint to rerun
    with --debug, which shows the Python trace instead (exit 3).
    """
    import signal
    import sys

    def terminate(signum, frame):
        raise Terminated()

    # SIGTERM (kill, a CI timeout) cleans up as Ctrl-C does: temporary files and
    # directories are removed by the handlers the exception passes through
    previous = signal.getsignal(signal.SIGTERM)
    installed = False
    if previous in (signal.SIG_DFL, None):
        try:
            signal.signal(signal.SIGTERM, terminate)
            installed = True
        except ValueError:  # not the main thread (called from a test's thread)
            pass
    try:
        code = _run_guarded(prog, body, debug)
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(code)


def _run_guarded(prog: str, body, debug: bool) -> int:
    import sys
    import traceback

    try:
        return body()
    except HashiflexError as error:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        sys.exit(143)
    except SystemExit:
        raise
    except OSError as error:
        if debug:
            traceback.print_exc()
        what = f"'{error.filename}': " if error.filename else ""
        print(f"{prog}: error: {what}{error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: out of memory (is an input or a size option too large?)",
              file=sys.stderr)
        sys.exit(2)
    except RecursionError:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: input nested too deeply", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if debug:
            traceback.print_exc()
        message = " ".join(str(error).split())[:300]
        print(f"{prog}: internal error: {type(error).__name__}: {message} "
              f"(rerun with {DEBUG_FLAG} for the Python trace)", file=sys.stderr)
        sys.exit(3)
