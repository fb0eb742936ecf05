"""``imagegen serve --workers N``: N processes, each a full peer, on one listening socket.

The parent locks the data directory and binds the socket (``serving.py``), exactly as one
process does, so a second ``imagegen serve`` on the same directory or port is still refused;
then uvicorn's supervisor spawns the workers, which inherit the bound socket and accept from it
(the kernel hands each connection to one of them), restarts a worker that dies, and on SIGTERM
passes it on to every worker for a graceful drain. One socket bound once was chosen over N
sockets bound with ``SO_REUSEPORT``: with that option a second serve could bind the same port
and silently share its traffic, where the one socket keeps refusing it.

Every worker is a full peer: it runs jobs, claims the ones waiting in the database, and adopts
a dead peer's after its lease, so workers need the shared database (PostgreSQL); on SQLite,
several workers are refused at start-up. Each worker names itself ``<instance id>-<pid>`` on the
jobs it leases, so the workers fence each other like replicas do. The Prometheus values of all
workers go to one multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary one
when unset), so a scrape of any worker reports them all. A worker whose parent dies (``kill -9``)
gets SIGTERM from the kernel and drains, so a killed replica leaves no orphan serving.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from imagegen.config import Settings
from imagegen.serving import HeaderTimeoutProtocol, uvicorn_config

_PR_SET_PDEATHSIG = 1
SQLITE_REFUSAL = (
    "several workers need PostgreSQL (set IMAGEGEN_DATABASE_URL=postgresql+asyncpg://...); "
    "the SQLite default serves with one worker"
)


class WorkerProtocol(HeaderTimeoutProtocol):
    """The protocol in a worker process, importable by name; ``worker_app`` sets its limits."""


def worker_app() -> Any:
    """The app of one worker process (uvicorn calls it in the child): settings from the
    environment the parent left, the instance id made this process's own."""
    from imagegen import collector
    from imagegen.allocator import tune_allocator
    from imagegen.api.app import create_app
    from imagegen.logs import configure_logging

    collector.pause()  # until the app has started (tune_collector)
    tune_allocator()  # a spawned process: its own allocator, before it starts any thread
    _end_with_parent()
    settings = Settings()
    base = settings.instance_id or socket.gethostname()
    settings = settings.model_copy(update={"instance_id": f"{base}-{os.getpid()}"})
    WorkerProtocol.header_timeout = settings.header_timeout
    WorkerProtocol.max_connections = settings.max_connections
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, started=collector.tune_collector)


def _end_with_parent() -> None:
    """On Linux, have the kernel send this worker SIGTERM when the parent dies (``kill -9``
    included), so no orphan keeps serving and renewing leases with no supervisor; it drains
    and hands its jobs back as on any SIGTERM."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def metrics_dir() -> Path | None:
    """Give the workers one Prometheus multiprocess directory, emptied: the one named by
    ``PROMETHEUS_MULTIPROC_DIR``, else a new temporary one (returned, for removal at exit)."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # values of an earlier run
            stale.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="imagegen-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made)
    return made


def run_workers(settings: Settings, sock: socket.socket, workers: int) -> None:
    """Serve on ``sock`` with ``workers`` processes until SIGTERM or SIGINT."""
    made = metrics_dir()
    # The workers read their settings from the environment: what the command line set goes
    # there too (the host decides whether requests without a key are allowed).
    os.environ.update(
        IMAGEGEN_HOST=settings.host, IMAGEGEN_PORT=str(settings.port), IMAGEGEN_WORKERS=str(workers)
    )
    config: uvicorn.Config = uvicorn_config(
        "imagegen.workers:worker_app",
        settings,
        factory=True,
        workers=workers,
        http="imagegen.workers:WorkerProtocol",
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
