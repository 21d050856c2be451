"""
A small runner for independent per-module jobs (synthesis today; RTL verification later):
a list of jobs in, their results and failures out.

- Each `Job` names a picklable top-level function and its arguments, and may carry a cache
  key: a content hash of everything its result depends on (for synthesis: the module's
  SystemVerilog, the liberty file, the script and the tool version). A job whose key is in
  the cache directory is not run again; its stored result is returned with `cached=True`.
  Results must be JSON-serialisable (they are what the cache stores).
- Jobs run on local worker processes (`workers`, default: the CPU count). A job that raises
  becomes a `JobFailure` with a one-line message; the other jobs' results are kept. A worker
  that dies (a crash in native code) fails its job, not the run.
- Progress: a bar on a terminal, one line per finished job otherwise.

The executor is chosen by `executor=`; only "local" (a process pool) exists now. A
distributed backend (Dask) plugs in here behind the same `run_jobs` signature.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Job:
    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    cache_key: str | None = None


@dataclass(frozen=True)
class JobResult:
    name: str
    value: Any
    seconds: float
    cached: bool


@dataclass(frozen=True)
class JobFailure:
    name: str
    message: str


@dataclass
class JobReport:
    results: dict[str, JobResult] = field(default_factory=dict)
    failures: dict[str, JobFailure] = field(default_factory=dict)


def content_key(*parts: str | bytes) -> str:
    """A SHA-256 over `parts` (each length-prefixed, so ("ab", "c") != ("a", "bc"))."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


class _Bar:
    def __init__(self, total: int, label: str, stream, enabled: bool):
        self.total, self.done, self.label = total, 0, label
        self.stream, self.enabled = stream, enabled and total > 0
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()

    def advance(self, name: str, outcome: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.tty:
            width = 30
            filled = width * self.done // self.total
            line = (f"\r[hashiflex] {self.label} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{self.done}/{self.total} {elapsed:5.0f} s  {name}: {outcome}")
            print(f"{line:<110}", end="" if self.done < self.total else "\n",
                  file=self.stream, flush=True)
        else:
            print(f"[hashiflex] {self.label} {self.done}/{self.total} {name}: {outcome} "
                  f"({elapsed:.0f} s)", file=self.stream, flush=True)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int | None = None,
    cache_dir: Path | None = None,
    executor: str = "local",
    label: str = "jobs",
    progress: bool = True,
    stream=None,
) -> JobReport:
    """Run `jobs` (names unique); return every job's result or failure, never raise for one."""
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r} (only 'local')")
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    report = JobReport()
    bar = _Bar(len(jobs), label, stream or sys.stderr, progress)

    def cache_file(job: Job) -> Path | None:
        return cache_dir / f"{job.cache_key}.json" if cache_dir and job.cache_key else None

    pending: list[Job] = []
    for job in jobs:
        path = cache_file(job)
        if path is not None and path.is_file():
            try:
                stored = json.loads(path.read_text())
                report.results[job.name] = JobResult(job.name, stored["value"],
                                                     stored["seconds"], cached=True)
                bar.advance(job.name, "cached")
                continue
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache entry is simply recomputed
        pending.append(job)
    if not pending:
        return report

    def finish(job: Job, future: Future) -> None:
        try:
            value, seconds = future.result()
        except BrokenProcessPool:
            report.failures[job.name] = JobFailure(job.name, "its worker process died")
            bar.advance(job.name, "FAILED (worker died)")
            return
        except Exception as error:  # one job failing must not lose the others
            report.failures[job.name] = JobFailure(job.name, _one_line(error))
            bar.advance(job.name, "FAILED")
            return
        report.results[job.name] = JobResult(job.name, value, seconds, cached=False)
        path = cache_file(job)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"value": value, "seconds": seconds}))
            tmp.replace(path)
        bar.advance(job.name, f"{seconds:.1f} s")

    count = max(1, min(workers or os.cpu_count() or 1, len(pending)))
    # spawn: workers start clean (no copy of a parent that may hold torch, threads, locks).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        futures = {pool.submit(_timed, job.fn, job.args): job for job in pending}
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                finish(futures[future], future)
    return report
