"""The processes a benchmark runs (the Replicate double, ``imagegen serve``) and what they cost.

Both are started as real child processes on loopback by the project's own launchers
(``tests.fakes.replicate_double.DoubleProcess``, ``tests.support.imagegen_process``); this
module adds what a benchmark reads off them: CPU seconds and resident memory from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tests.fakes.replicate_double import DoubleControl, DoubleProcess
from tests.support.imagegen_process import ImagegenProcess

TOKEN = "r8_bench_token"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Server settings every benchmark uses; a benchmark adds or overrides its own.
IMAGEGEN_ENV = {
    "REPLICATE_API_KEY": TOKEN,
    "IMAGEGEN_LOG_LEVEL": "warning",
    "IMAGEGEN_REPLICATE_WAIT": "10",
    "IMAGEGEN_POLL_INTERVAL": "0.1",
    "IMAGEGEN_REQUEST_TIMEOUT": "120",
}
#: imagegen's own guards for a real Replicate account (100 generations at once, 1,000 queued,
#: 600 creates a minute, bursts of 60) and for one process (2,000 connections, past which it
#: answers 503), lifted for benchmarks of imagegen itself; the burst benchmark keeps them, as
#: they are what it measures.
UNGUARDED_ENV = {
    "IMAGEGEN_MAX_CONNECTIONS": "20000",
    "IMAGEGEN_MAX_QUEUE": "1000000",
    "IMAGEGEN_REPLICATE_MAX_CONCURRENCY": "0",
    "IMAGEGEN_REPLICATE_CREATES_PER_MINUTE": "1e9",
    "IMAGEGEN_REPLICATE_CREATE_BURST": "1000000000",
}


def raise_fd_limit() -> int:
    """Lift this process's soft open-files limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int


def usage(pid: int) -> Usage:
    """CPU seconds (user + system) and resident memory of ``pid`` now."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)
    with open(f"/proc/{pid}/statm", "rb") as statm:
        rss = int(statm.read().split()[1]) * PAGE
    return Usage(cpu, rss)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (``imagegen serve --workers N``: its workers), from
    the parent pids in ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def tree_usage(pid: int) -> Usage:
    """``usage`` of ``pid`` and every process below it, summed."""
    total_cpu, total_rss = 0.0, 0
    for one in (pid, *descendants(pid)):
        try:
            each = usage(one)
        except OSError:  # ended between the listing and the read
            continue
        total_cpu += each.cpu_seconds
        total_rss += each.rss_bytes
    return Usage(total_cpu, total_rss)


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on the machine (``comm`` postgres): the
    benchmark's database and any other on the same server."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                head, _, rest = stat.read().rpartition(b")")
        except OSError:
            continue
        if head.endswith(b"(postgres"):
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def own_cpu() -> float:
    """CPU seconds of this process: the load generator."""
    times = os.times()
    return times.user + times.system


def machine_busy() -> tuple[int, int]:
    """Busy and total jiffies of every core (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


#: The kernel's counters of connections refused or reset on their way in (``/proc/net/netstat``):
#: a full accept queue (``ListenOverflows``, ``ListenDrops``), and resets sent for data that came
#: to a socket closed or never accepted.
TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPAbortOnData", "TCPAbortOnClose")


def tcp_counters() -> dict[str, int]:
    """The machine's ``TCP_COUNTERS`` now (every process's sockets, not only the benchmark's)."""
    with open("/proc/net/netstat") as netstat:
        lines = netstat.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
            return {name: counters.get(name, 0) for name in TCP_COUNTERS}
    return dict.fromkeys(TCP_COUNTERS, 0)


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class PeakRss:
    """Samples a process's RSS (and open files) every ``interval`` s in the background; keeps
    the peaks."""

    def __init__(
        self, pid: int, interval: float = 0.02, *, fds: bool = False, tree: bool = False
    ) -> None:
        self.pid, self.interval, self._fds = pid, interval, fds
        #: With ``tree``, the RSS (and fds) of ``pid`` and every process below it, summed.
        self._usage = tree_usage if tree else usage
        self._tree = tree
        self.peak = self.start = self._usage(pid).rss_bytes
        self.peak_fds = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._usage(self.pid).rss_bytes)
            if self._fds:
                pids = [self.pid, *(descendants(self.pid) if self._tree else ())]
                self.peak_fds = max(self.peak_fds, sum(open_fds(one) for one in pids))
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> PeakRss:
        self.peak = self.start = self._usage(self.pid).rss_bytes
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, self._usage(self.pid).rss_bytes)

    @property
    def grew(self) -> int:
        return self.peak - self.start


#: Every child started here, so that an interrupted run leaves none behind (``reap``).
CHILDREN: list[subprocess.Popen[Any]] = []


def reap() -> None:
    for child in CHILDREN:
        if child.poll() is None:
            child.kill()
            child.wait()
    CHILDREN.clear()


def start_ready(
    module: str, *args: str, timeout: float = 20.0
) -> tuple[subprocess.Popen[str], str]:
    """``python -m module --port 0 args``; waits for its ``READY <base_url>`` line."""
    command = [sys.executable, "-m", module, "--port", "0", *args]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    CHILDREN.append(proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        line = proc.stdout.readline() if ready else ""
        if line.startswith("READY "):
            return proc, line.split()[1]
    proc.kill()
    proc.wait()
    raise RuntimeError(f"python -m {module} did not print READY")


class Double(DoubleProcess):
    """The Replicate double as a child process (``python -m bench.double``), with its pid."""

    def start(self) -> Self:
        self._proc, self.base_url = start_ready("bench.double", *self._args)
        self.control = DoubleControl(self.base_url)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def ctl(self) -> DoubleControl:
        assert self.control is not None
        return self.control


class Imagegen(ImagegenProcess):
    """``imagegen serve`` as a child process, with its pid."""

    def start(self) -> Self:
        try:
            return super().start()
        finally:
            if self._proc is not None:
                CHILDREN.append(self._proc)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid


@contextlib.contextmanager
def file_server(size: int) -> Iterator[str]:
    """``python -m bench.files``: distinct ``size``-byte PNGs at ``<base_url>/img/<n>.png``."""
    proc, base_url = start_ready("bench.files", "--size", str(size))
    try:
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)): (.{0,160})")


def logged_errors(server: ImagegenProcess, top: int = 3) -> list[str]:
    """The exceptions ``server`` logged most often, as ``"N x Type: message"``."""
    counts = Counter(
        f"{match[1]}: {match[2]}"
        for line in server.log().splitlines()
        if (match := _EXCEPTION.match(line))
    )
    return [f"{count} x {text}" for text, count in counts.most_common(top)]


def double_args(**options: object) -> list[str]:
    """``create_rate=600`` -> ``["--create-rate", "600"]``; the token is always the bench's."""
    args = ["--token", TOKEN]
    for name, value in options.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


@contextlib.contextmanager
def running(
    double_options: dict[str, object], env: dict[str, str], *, guards: bool = False
) -> Iterator[tuple[Double, Imagegen]]:
    """A double with ``double_options`` and an ``imagegen serve`` in front of it (fresh data);
    imagegen's queue and rate guards stay at their defaults only with ``guards``."""
    with (
        tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp,
        Double(*double_args(**double_options)) as double,
    ):
        settings = {**IMAGEGEN_ENV, **({} if guards else UNGUARDED_ENV)}
        settings.update({"REPLICATE_BASE_URL": double.base_url, **env})
        with Imagegen(Path(tmp), settings) as server:
            yield double, server
