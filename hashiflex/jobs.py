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
  that dies (a crash in native code, the OOM killer) breaks the whole process pool, and
  which job it ran is unknown: every unfinished job then runs again, each in a worker of its
  own, so that a death is charged to the one job it ran; such a job is retried `retries`
  times before it is reported as failed.
- `deadline` (seconds, optional): the whole run's wall-clock limit. Jobs without a result
  by then are stopped and reported as failed ("no result within ..."), so a lost cluster or
  a hanging tool never hangs the caller.
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
    deadline: float | None = None,
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

    if deadline is not None and not deadline > 0:
        raise JobError(f"the deadline must be a positive number of seconds, got {deadline}")
    stop_at = time.monotonic() + deadline if deadline is not None else None
    if executor == "dask":
        _run_dask(pending, scheduler, retries, connect_timeout, stop_at, failed, succeeded)
    else:
        _run_local(pending, workers, fresh_worker_per_job, retries, stop_at, failed, succeeded)
    if stop_at is not None:
        for job in pending:
            if job.name not in report.results and job.name not in report.failures:
                failed(job, f"no result within the {deadline:g} s deadline", "FAILED (deadline)")
    return report


def _left(stop_at: float | None) -> float | None:
    """Seconds until the deadline (None: no deadline), never negative."""
    return None if stop_at is None else max(0.0, stop_at - time.monotonic())


def _run_local(pending: list[Job], workers: int | None, fresh_worker_per_job: bool,
               retries: int, stop_at: float | None, failed, succeeded) -> None:
    count = max(1, min(workers or os.cpu_count() or 1, len(pending)))
    broken = _run_pool(pending, count, 1 if fresh_worker_per_job else None, stop_at,
                       failed, succeeded)
    # A worker died and broke the pool: run each unfinished job in a one-worker pool of
    # its own (still `count` at a time), so that a death is charged to the job it ran.
    attempts = {job.name: 1 for job in broken}
    while broken and (stop_at is None or time.monotonic() < stop_at):
        again = []
        for start in range(0, len(broken), count):
            batch = broken[start:start + count]
            died = _run_isolated(batch, stop_at, failed, succeeded)
            for job in died:
                if attempts[job.name] > retries:
                    failed(job, f"its worker process died ({attempts[job.name]} attempts)",
                           "FAILED (worker died)")
                else:
                    attempts[job.name] += 1
                    again.append(job)
        broken = again


def _run_pool(pending: list[Job], count: int, tasks_per_child: int | None,
              stop_at: float | None, failed, succeeded) -> list[Job]:
    """Run `pending` on one pool of `count` spawn workers; return the jobs left unfinished
    because a worker died (the pool is then broken), in submission order."""
    # spawn: workers start clean (no copy of a parent that may hold torch, threads, locks).
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=count, mp_context=context,
                               max_tasks_per_child=tasks_per_child)
    broken: list[Job] = []
    try:
        futures = {pool.submit(_timed, job.fn, job.args): job for job in pending}
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, timeout=_left(stop_at),
                                   return_when=FIRST_COMPLETED)
            if not done:  # the deadline passed: the caller reports what is left
                _kill_pool(pool)
                return []
            for future in done:
                if not _collect_local(future, futures[future], failed, succeeded):
                    broken.append(futures[future])
    except BaseException:
        # Ctrl-C / SIGTERM: stop the workers and whatever they started (Verilator, make,
        # the C++ compiler, Yosys) now, rather than letting the running jobs finish.
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)
    order = {job.name: i for i, job in enumerate(pending)}
    return sorted(broken, key=lambda job: order[job.name])


def _collect_local(future: Future, job: Job, failed, succeeded) -> bool:
    """One finished local future: its job's result or failure; False if its worker died
    (the pool is broken and the job has no outcome yet)."""
    try:
        value, seconds = future.result()
    except BrokenProcessPool:
        return False
    except Exception as error:  # one job failing must not lose the others
        failed(job, _one_line(error))
    else:
        succeeded(job, value, seconds)
    return True


def _run_isolated(batch: list[Job], stop_at: float | None, failed, succeeded) -> list[Job]:
    """Run each job of `batch` in a one-worker pool of its own, concurrently; return the
    jobs whose worker died."""
    context = multiprocessing.get_context("spawn")
    pools = [ProcessPoolExecutor(max_workers=1, mp_context=context) for _ in batch]
    died: list[Job] = []
    try:
        futures = {pool.submit(_timed, job.fn, job.args): job for pool, job in zip(pools, batch)}
        done, _ = wait(futures, timeout=_left(stop_at))
        died = [futures[f] for f in done if not _collect_local(f, futures[f], failed, succeeded)]
    finally:
        for pool in pools:
            _kill_pool(pool)
    return died


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
              stop_at: float | None, failed, succeeded) -> None:
    try:
        from distributed import Client, as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise JobError("--scheduler needs Dask distributed: pip install -e '.[cluster]'") from None
    try:
        client = Client(scheduler, timeout=connect_timeout)
    except (OSError, TimeoutError):
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
        finished = as_completed(list(futures), timeout=_left(stop_at))
        try:
            for future in finished:
                job = futures[future]
                _collect_dask(future, job, failed, succeeded, KilledWorker, FutureCancelledError)
        except TimeoutError:  # the deadline: cancel what is left; the caller reports it
            client.cancel([f for f in futures if not f.done()], force=True)
    except BaseException:
        client.cancel(list(futures), force=True)
        raise
    finally:
        client.close(timeout=connect_timeout)


def _collect_dask(future, job: Job, failed, succeeded, killed_worker, cancelled) -> None:
    """One finished Dask future: its job's result or failure."""
    try:
        value, seconds = future.result()
    except killed_worker:
        failed(job, "its worker died (Dask rescheduled it, then gave up)", "FAILED (worker died)")
    except cancelled:
        failed(job, "cancelled on the cluster", "FAILED (cancelled)")
    except Exception as error:
        failed(job, _one_line(error))
    else:
        succeeded(job, value, seconds)


