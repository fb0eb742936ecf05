"""Prometheus metrics (``prometheus-client``), served as text by ``GET /metrics``.

Multiprocess-safe: when ``PROMETHEUS_MULTIPROC_DIR`` names a directory (set before imagegen
starts, emptied between runs, one per host), every process writes its values there and a scrape
of any process reads them all (``MultiProcessCollector``); gauges sum over live processes.
Labels stay bounded: route templates (never a raw path), status codes, provider and model names
from a bounded set (past ``MAX_MODELS`` distinct names, ``other``), error codes; never a
prompt, a key or an id.

``Metrics`` is the job machinery's ``JobObserver`` and the HTTP edge's request counter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

from imagegen.models import Generation

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_MODELS = 50
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RATE_LIMITED = "upstream_rate_limited"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class BoundedLabel:
    """The first ``limit`` distinct values pass; later ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return "other"
        self._seen.add(value)
        return value


M = TypeVar("M", Counter, Gauge, Histogram)


class Children(Generic[M]):
    """A metric's labelled series by label values, kept once made (``labels`` takes a lock and
    checks the values on every call). The values are bounded, as every label here is."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._model = BoundedLabel(MAX_MODELS)
        self.http_requests = Counter(
            "imagegen_http_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "imagegen_http_request_duration_seconds",
            "HTTP request latency, until the response ended.",
            ["method", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.generations = Counter(
            "imagegen_generations",
            "Generations ended, by outcome (succeeded, failed, canceled).",
            ["model", "provider", "outcome"],
            registry=r,
        )
        self.queue_seconds = self._histogram("queue", "Time waiting in imagegen's queue.")
        self.upstream_seconds = self._histogram("upstream", "Time the provider took.")
        self.store_seconds = self._histogram("store", "Time to download and store the outputs.")
        self.running_now = Gauge(
            "imagegen_generations_running",
            "Generations holding a provider slot.",
            ["provider"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued_now = Gauge(
            "imagegen_generations_queued",
            "Generations waiting for a provider slot.",
            ["provider"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_creates = Counter(
            "imagegen_upstream_creates", "Paid upstream creates sent.", ["provider"], registry=r
        )
        self.upstream_throttles = Counter(
            "imagegen_upstream_throttles",
            "Generations the upstream throttled (429).",
            ["provider"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "imagegen_upstream_errors",
            "Generations the provider failed, by error code.",
            ["provider", "code"],
            registry=r,
        )
        self.webhooks = Counter(
            "imagegen_webhook_deliveries",
            "Webhook delivery attempts: delivered, failed (retried), given_up.",
            ["outcome"],
            registry=r,
        )
        self.images_stored = Counter("imagegen_images_stored", "Images stored.", registry=r)
        self.bytes_stored = Counter(
            "imagegen_image_bytes_stored", "Bytes of images stored.", registry=r
        )
        # (method, route, status) -> its request counter and latency histogram.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # The labelled series each job touches, looked up once per label values.
        self._queued = Children(self.queued_now)
        self._running = Children(self.running_now)
        self._queue_seconds = Children(self.queue_seconds)
        self._creates = Children(self.upstream_creates)
        self._upstream_seconds = Children(self.upstream_seconds)
        self._store_seconds = Children(self.store_seconds)
        self._generations = Children(self.generations)

    def _histogram(self, stage: str, text: str) -> Histogram:
        return Histogram(
            f"imagegen_generation_{stage}_seconds",
            text,
            ["provider"],
            buckets=_LATENCY,
            registry=self.registry,
        )

    def scraped(self) -> CollectorRegistry:
        """What a scrape reads: every process's values in multiprocess mode."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return registry
        return self.registry

    def exposition(self) -> bytes:
        return generate_latest(self.scraped())

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve ``/metrics`` on its own port (a thread); returns what stops it."""
        server, thread = start_http_server(port, addr=host, registry=self.scraped())

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop

    # --- the HTTP edge ---

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # a label set's children, looked up once (labels() is not cheap)
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_seconds.labels(method, route),
            )
            self._request_children[key] = children
        counter, seconds_histogram = children
        counter.inc()
        seconds_histogram.observe(seconds)

    # --- JobObserver ---

    def queued(self, provider: str, delta: int) -> None:
        self._queued(provider).inc(delta)

    def running(self, provider: str, delta: int, *, queued_seconds: float | None = None) -> None:
        self._running(provider).inc(delta)
        if queued_seconds is not None:
            self._queue_seconds(provider).observe(max(0.0, queued_seconds))

    def upstream_create(self, provider: str) -> None:
        self._creates(provider).inc()

    def upstream_done(self, provider: str, seconds: float, error_code: str | None) -> None:
        self._upstream_seconds(provider).observe(seconds)
        if error_code is not None:
            self.upstream_errors.labels(provider, error_code).inc()
            if error_code == _RATE_LIMITED:
                self.upstream_throttles.labels(provider).inc()

    def stored(self, provider: str, seconds: float, images: int, size_bytes: int) -> None:
        self._store_seconds(provider).observe(seconds)
        self.images_stored.inc(images)
        self.bytes_stored.inc(size_bytes)

    def ended(self, generation: Generation) -> None:
        model = self._model(generation.request.model)
        self._generations(model, generation.provider, generation.status.value).inc()

    def webhook_attempt(self, outcome: str) -> None:
        self.webhooks.labels(outcome).inc()
