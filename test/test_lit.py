"""Run the lit/FileCheck suite (test/**/*.mlir) as one pytest test, so `pytest` covers it."""

import subprocess
import sys
from pathlib import Path


def test_lit_suite():
    here = Path(__file__).parent
    proc = subprocess.run(
        # `python -m lit` has no __main__ in the lit package; its entry point is lit.main.
        [sys.executable, "-c", "from lit.main import main; main()", "-v", str(here)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"lit failed:\n{proc.stdout}\n{proc.stderr}"
