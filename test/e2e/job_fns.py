"""
Job functions for the job-runner tests (test_verify.py). They live in a module of their own
that imports nothing from the test tree: a worker process (local spawn or Dask) unpickles
them by importing this module, where `conftest` may name another directory's conftest.
"""

import os
import time


def die_once(marker: str) -> int:
    """Kills its worker process the first time (no marker yet), returns 42 the next."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return 42


def always_die() -> int:
    os._exit(1)


def fail() -> int:
    raise ValueError("bad module")


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
