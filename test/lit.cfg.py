# lit configuration of HaShiFlex's FileCheck tests (test/<pass or dialect>/*.mlir).
# Run with `lit -v test/`, or through pytest (test/test_lit.py).

import os
import shutil
import sys

import lit.formats

config.name = "HaShiFlex"
# lit's internal shell (pipes, `not`, `2>&1`): lit 23 refuses ShTest(True), the external
# shell, unless forced, and the internal one behaves the same on every machine.
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
# pytest's folders (any folder without .mlir files) and helpers are not lit tests.
config.excludes = ["__pycache__", "lit.cfg.py", "conftest.py"] + [
    entry.name
    for entry in os.scandir(config.test_source_root)
    if entry.is_dir()
    and not any(f.endswith(".mlir") for _, _, files in os.walk(entry.path) for f in files)
]


def tool(name: str) -> str:
    """The executable installed next to this Python (the venv), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(beside):
        return beside
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"lit: cannot find '{name}' next to {sys.executable} or on PATH")
    return found


config.substitutions.append(("%PYTHON", sys.executable))
config.substitutions.append(("po2-opt", tool("po2-opt")))
config.substitutions.append(("po2-run", tool("po2-run")))
config.substitutions.append(("filecheck", tool("filecheck")))
# Keep the environment's PATH so that `not` and the tools resolve as in a shell.
config.environment["PATH"] = os.pathsep.join(
    [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
)
