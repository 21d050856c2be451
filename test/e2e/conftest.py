"""
Shared fixtures of the end-to-end tests (test/e2e): the network zoo (nets.py), compiled
designs (each compiled once per session, in a session temp dir, and reused by every module
that needs it), simulation stimuli.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

E2E = Path(__file__).resolve().parent
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

import nets  # noqa: E402

NETS_FILE = E2E / "nets.py"


def zoo_params() -> list:
    """The zoo's names, the default tier first; the rest marked slow."""
    return [
        name if name in nets.DEFAULT else pytest.param(name, marks=pytest.mark.slow)
        for name in [*nets.DEFAULT, *[n for n in nets.ZOO if n not in nets.DEFAULT]]
    ]


class DesignCache:
    """Compile each (spec, options) once per session; hand out the Design."""

    def __init__(self, root: Path):
        self.root = root
        self.designs: dict[str, object] = {}

    def zoo(self, name: str):
        from hashiflex import api

        key = f"zoo-{name}"
        if key not in self.designs:
            self.designs[key] = api.compile(
                f"{NETS_FILE}:{name}", self.root / key, calib=nets.calibration(name),
                emit_hw_ir=True,  # the CIRCT cross-check reads it
            )
        return self.designs[key]

    def example(self, name: str):
        from hashiflex import api

        key = f"example-{name}"
        if key not in self.designs:
            self.designs[key] = api.compile(name, self.root / key, emit_hw_ir=True)
        return self.designs[key]


@pytest.fixture(scope="session")
def designs(tmp_path_factory: pytest.TempPathFactory) -> DesignCache:
    return DesignCache(tmp_path_factory.mktemp("designs"))


@pytest.fixture(scope="session")
def digits_test_images() -> tuple[np.ndarray, np.ndarray]:
    """A few dozen digits test images (16x16, the tiny CNN's size) and their labels."""
    from hashiflex.examples.digits import load_digits_split

    _, _, x_test, y_test = load_digits_split(size=16)
    return x_test[:40].numpy(), y_test[:40].numpy()


def extreme_images(shape: tuple[int, ...]) -> np.ndarray:
    """all-max, all-min and zero images (saturate the input format both ways)."""
    return np.stack([
        np.full(shape, 1e6, np.float32),
        np.full(shape, -1e6, np.float32),
        np.zeros(shape, np.float32),
    ])


def cli(capsys, *argv: object) -> tuple[int, str]:
    """Run `hashiflex -q ARGV` in-process: (exit code, stderr), which holds no traceback."""
    from hashiflex.tools import hashiflex_cli

    with pytest.raises(SystemExit) as exit_info:
        hashiflex_cli.main(["-q", *map(str, argv)])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return exit_info.value.code, err
