"""
Concurrent runs stay right (issue 14): two simulations of one design at a time each get
their own stimulus and output files; the simulator build is locked and its binary is run
only if this user's cache records it, by hash, as built from the design's sources (a
binary that came with a design directory, or was replaced, is rebuilt and never run); a
design directory this user cannot write still simulates (the build goes to the cache).
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import nets
from hashiflex import api
from hashiflex.backends import verilator
from hashiflex.simulation import build_simulator

SMALL = "pointwise_only"


@pytest.fixture(scope="module")
def small_design(designs):
    return designs.zoo(SMALL)


def test_concurrent_simulations_of_one_design_are_each_right(small_design):
    """Used to share obj_dir/stimulus.txt and output.txt: wrong classes, exit 0."""
    build_simulator(small_design)  # built once, before the race
    shape = tuple(small_design.manifest["input_shape"])
    rng = np.random.default_rng(1)
    batches = [rng.random((n, *shape), dtype=np.float32) * 4 - 2 for n in (40, 7, 40, 7)]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = api.simulate(small_design.path, batches[i], check=True)
        except BaseException as error:  # reported below, with the thread's result
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, batch in enumerate(batches):
        assert len(results[i].classes) == len(batch)
        assert results[i].compared == len(batch) and results[i].mismatches == 0


@pytest.mark.slow  # a rebuild, ~25 s; test_a_binary_is_trusted_only_as_recorded is its fast twin
def test_a_replaced_simulator_binary_is_rebuilt_not_run(tmp_path, small_design):
    """A binary beside the sources used to be trusted when the source hash matched."""
    built = build_simulator(small_design).binary
    copy = tmp_path / "design"
    shutil.copytree(small_design.path, copy)
    marker = tmp_path / "ran"
    binary = copy / built.relative_to(small_design.path.resolve())
    assert binary.is_file()
    binary.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    binary.chmod(0o755)
    shape = tuple(small_design.manifest["input_shape"])
    result = api.simulate(copy, np.zeros((2, *shape), np.float32), check=True)
    assert not marker.exists()
    assert result.ok and result.compared == 2


def test_a_binary_is_trusted_only_as_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHIFLEX_CACHE_DIR", str(tmp_path / "cache"))
    binary = tmp_path / "Vtop"
    binary.write_bytes(b"built")
    assert not verilator._trusted_binary(binary, "key")  # nothing recorded
    verilator._record_binary(binary, "key")
    assert verilator._trusted_binary(binary, "key")
    assert not verilator._trusted_binary(binary, "other sources")
    binary.write_bytes(b"replaced")
    assert not verilator._trusted_binary(binary, "key")


def test_the_build_lock_excludes_a_second_builder(tmp_path):
    order: list[str] = []

    def second() -> None:
        with verilator._build_lock(tmp_path):
            order.append("second")

    with verilator._build_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.3)
        order.append("first done")
    thread.join()
    assert order == ["first done", "second"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only directories")
def test_a_read_only_design_directory_simulates(tmp_path, small_design, monkeypatch):
    monkeypatch.setenv("HASHIFLEX_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "design"
    shutil.copytree(small_design.path, copy, ignore=shutil.ignore_patterns("obj_dir"))
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        shape = tuple(small_design.manifest["input_shape"])
        assert api.simulate(copy, np.zeros((1, *shape), np.float32), check=True).ok
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_read_only_design_builds_in_the_cache(tmp_path, small_design, monkeypatch):
    """The choice of build directory, testable as root (os.access says what we may write)."""
    from hashiflex import simulation

    monkeypatch.setenv("HASHIFLEX_CACHE_DIR", str(tmp_path / "cache"))
    assert simulation._build_dir(small_design) == small_design.path / "obj_dir"
    monkeypatch.setattr(simulation.os, "access", lambda *a: False)
    assert simulation._build_dir(small_design).is_relative_to(tmp_path / "cache")
