"""
A small runner for independent per-module jobs (synthesis, RTL verification): a list of
jobs in, their results and failures out.

- Each `Job` names a picklable top-level function and its arguments, and may carry a cache
  key: a content hash of everything its result depends on (for synthesis: the module's
  SystemVerilog, the liberty file, the script and the tool version). A job whose key is in
  the cache directory is not run again; its stored result is returned with `cached=True`.
  Results must be JSON-serialisable (they are what the cache stores).
- Jobs run on local worker processes (`workers`, default: the CPU count). A job that raises
  becomes a `JobFailure` with a one-line message; the other jobs' results are kept. A worker
  that dies (a crash in native code) fails its job, not the run.
- Progress: a bar on a terminal, one line per finished job otherwise.

Two executors behind the one `run_jobs` signature:
- "local" (default): a spawn process pool on this machine. Ctrl-C (or SIGTERM) stops the
  workers and everything they started (their process trees) before the interrupt goes on.
- "dask" (`scheduler="tcp://host:port"`): a Dask distributed cluster (the optional
  `.[cluster]` extra). Each job's function and arguments are the task data (no shared file
  system is assumed: a job carries what it needs, e.g. a module's SV text and stimulus).
  A scheduler that does not answer within `connect_timeout` seconds is one `JobError`; a
  job whose worker dies is rescheduled by Dask (and a job that raises is retried
  `retries` times) before it is reported as failed; Ctrl-C cancels every job of the run.
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

from hashiflex.errors import ToolchainError


class JobError(ToolchainError):
    """The runner itself cannot run (an unknown executor, a scheduler that does not answer)."""


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
    """Run one job (in a worker): its value and wall time."""
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
    scheduler: str | None = None,
    label: str = "jobs",
    progress: bool = True,
    stream=None,
    fresh_worker_per_job: bool = False,
    retries: int = 2,
    connect_timeout: float = 10.0,
    on_finish: Callable[[JobResult | JobFailure], None] | None = None,
) -> JobReport:
    """
    Run `jobs` (names unique); return every job's result or failure, never raise for one.
    `scheduler` (a Dask address) implies executor="dask". `fresh_worker_per_job` gives each
    local job its own worker process (so that its peak memory is its own). `on_finish` is
    called with each job's result or failure as it arrives (e.g. to save partial results).
    """
    if scheduler is not None:
        executor = "dask"
    if executor not in ("local", "dask"):
        raise JobError(f"unknown executor {executor!r} (local or dask)")
    if executor == "dask" and not scheduler:
        raise JobError("the dask executor needs a scheduler address (tcp://host:port)")
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

    def failed(job: Job, message: str, outcome: str = "FAILED") -> None:
        report.failures[job.name] = JobFailure(job.name, message)
        bar.advance(job.name, outcome)
        if on_finish is not None:
            on_finish(report.failures[job.name])

    def succeeded(job: Job, value: Any, seconds: float) -> None:
        report.results[job.name] = JobResult(job.name, value, seconds, cached=False)
        path = cache_file(job)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"value": value, "seconds": seconds}))
            tmp.replace(path)
        bar.advance(job.name, f"{seconds:.1f} s")
        if on_finish is not None:
            on_finish(report.results[job.name])

    if executor == "dask":
        _run_dask(pending, scheduler, retries, connect_timeout, failed, succeeded)
    else:
        _run_local(pending, workers, fresh_worker_per_job, failed, succeeded)
    return report


def _run_local(pending: list[Job], workers: int | None, fresh_worker_per_job: bool,
               failed, succeeded) -> None:
    count = max(1, min(workers or os.cpu_count() or 1, len(pending)))
    # spawn: workers start clean (no copy of a parent that may hold torch, threads, locks).
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=count, mp_context=context,
                               max_tasks_per_child=1 if fresh_worker_per_job else None)
    try:
        futures = {pool.submit(_timed, job.fn, job.args): job for job in pending}
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                job = futures[future]
                try:
                    value, seconds = future.result()
                except BrokenProcessPool:
                    failed(job, "its worker process died", "FAILED (worker died)")
                except Exception as error:  # one job failing must not lose the others
                    failed(job, _one_line(error))
                else:
                    succeeded(job, value, seconds)
    except BaseException:
        # Ctrl-C / SIGTERM: stop the workers and whatever they started (Verilator, make,
        # the C++ compiler, Yosys) now, rather than letting the running jobs finish.
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (Linux /proc; elsewhere: none found)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    import signal

    processes = list((getattr(pool, "_processes", None) or {}).values())
    victims = []
    for process in processes:
        if process.pid is not None:
            victims += [process.pid, *_children(process.pid)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


def _run_dask(pending: list[Job], scheduler: str, retries: int, connect_timeout: float,
              failed, succeeded) -> None:
    try:
        from distributed import Client, as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise JobError("--scheduler needs Dask distributed: pip install -e '.[cluster]'") from None
    try:
        client = Client(scheduler, timeout=connect_timeout)
    except (OSError, TimeoutError) as error:
        raise JobError(f"no Dask scheduler answers at {scheduler} "
                       f"(connect timeout {connect_timeout:g} s)") from None
    except (ValueError, TypeError) as error:
        raise JobError(f"bad scheduler address {scheduler!r}: {_one_line(error)}") from None
    futures = {}
    try:
        for job in pending:
            future = client.submit(_timed, job.fn, job.args, key=f"{job.name}-{os.urandom(6).hex()}",
                                   retries=retries, pure=False)
            futures[future] = job
        for future in as_completed(list(futures)):
            job = futures[future]
            try:
                value, seconds = future.result()
            except KilledWorker:
                failed(job, "its worker died (Dask rescheduled it, then gave up)",
                       "FAILED (worker died)")
            except FutureCancelledError:
                failed(job, "cancelled on the cluster", "FAILED (cancelled)")
            except Exception as error:
                failed(job, _one_line(error))
            else:
                succeeded(job, value, seconds)
    except BaseException:
        client.cancel(list(futures), force=True)
        raise
    finally:
        client.close(timeout=connect_timeout)
