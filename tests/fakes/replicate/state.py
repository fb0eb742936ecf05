"""Everything the double remembers, behind one lock (the server thread and the test both use it)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.fakes.replicate import listing
from tests.fakes.replicate import predictions as lifecycle
from tests.fakes.replicate.config import DoubleConfig
from tests.fakes.replicate.faults import FaultBook
from tests.fakes.replicate.outputs import FileStore, StoredFile
from tests.fakes.replicate.predictions import Prediction
from tests.fakes.replicate.ratelimit import Take, TokenBucket, WindowPeak
from tests.fakes.replicate.uploads import UploadStore
from tests.fakes.replicate_models import INPUT_SIZE, ModelSpec

RATE_CLASSES = {"create": "create", "get": "get"}  # every other /v1 route counts as "other"


class DoubleState:
    def __init__(
        self,
        config: DoubleConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lifecycle.new_prediction_id,
    ) -> None:
        self.clock = clock
        self._new_id = new_id
        self._initial = config or DoubleConfig()
        self.lock = threading.RLock()
        self.faults = FaultBook()
        self.files = FileStore()
        self.uploads = UploadStore()
        self._reset()

    # -- control ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self.config = self._initial
        self.predictions: dict[str, Prediction] = {}
        self._by_file_id: dict[str, Prediction] = {}  # a file URL's id -> its prediction
        self.files.clear()
        self.uploads.clear()
        self.faults.clear()
        self.requests: Counter[str] = Counter()
        self.creates_by_model: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.gets = self.cancels = self.lists = self.files_served = 0
        self.create_window = WindowPeak(60.0)
        self._build_buckets()

    def reset(self) -> None:
        """Back to the start: initial config, no predictions, files, faults or counts."""
        with self.lock:
            self._reset()

    def update_config(self, patch: dict[str, Any]) -> DoubleConfig:
        """Apply a partial config; raises ``pydantic.ValidationError`` on a bad key or value."""
        with self.lock:
            self.config = self.config.updated(patch)
            self._build_buckets()
            return self.config

    def _build_buckets(self) -> None:
        cfg = self.config
        create = (6.0, 1) if cfg.low_credit else (cfg.create_rate, cfg.create_burst)
        self.buckets = {
            "create": TokenBucket(*create, self.clock),
            "get": TokenBucket(cfg.get_rate, cfg.get_burst, self.clock),
            "other": TokenBucket(cfg.other_rate, cfg.other_burst, self.clock),
        }

    def expire_all(self) -> int:
        """Delete every output file now; finished predictions get ``data_removed``."""
        with self.lock:
            for p in self.predictions.values():
                self._advance(p)
            removed = self.files.clear()
            for p in self.predictions.values():
                if p.is_terminal:
                    lifecycle.remove_data(p, self.files)
            return removed

    # -- requests -----------------------------------------------------------------------------

    def count_request(self, route: str) -> None:
        with self.lock:
            self.requests[route] += 1

    def take_rate(self, route: str) -> Take:
        rate_class = RATE_CLASSES.get(route, "other")
        with self.lock:
            take = self.buckets[rate_class].take()
            if not take.allowed:
                self.rate_limited[rate_class] += 1
            return take

    def create(
        self,
        model: ModelSpec,
        version: str,
        given: dict[str, Any],
        *,
        api_base: str,
        file_base: str,
        lifetime: float | None = None,
        cancel_after: str | None = None,
        prefer: str | None = None,
        deployment: str | None = None,
        image_inputs: dict[str, dict[str, Any]] | None = None,
    ) -> Prediction:
        with self.lock:
            cfg, now = self.config, self.clock()
            params = model.params(given)
            image_inputs = image_inputs or {}
            if image_inputs:  # what the model derives from its input image (Kontext, Fill)
                first = next(iter(image_inputs.values()))
                params[INPUT_SIZE] = (first["width"], first["height"])
            start = now + cfg.queue_time
            p = Prediction(
                id=self._new_id(),
                model=model,
                version=version,
                input=dict(given),
                params=params,
                created=now,
                start_at=start,
                finish_at=start + cfg.duration,
                run_time=cfg.duration,
                outcome="succeeded",
                planned_error=None,
                api_base=api_base,
                file_base=file_base,
                fault=self.faults.take_prediction(model.ref),
                deadline=None if lifetime is None else now + lifetime,
                cancel_after=cancel_after,
                prefer=prefer,
                deployment=deployment,
                seed=int(params.get("seed") or random.randrange(1, 2**16)),
                color=random.randrange(8),
                image_inputs=image_inputs,
            )
            lifecycle.plan(p, cfg.max_pixels)
            self.predictions[p.id] = p
            self._by_file_id[p.file_id] = p
            self.creates_by_model[model.ref] += 1
            self.create_window.add(now)
            return p

    def refresh(self, p: Prediction) -> Prediction:
        with self.lock:
            self._advance(p)
            return p

    def get(self, prediction_id: str) -> Prediction | None:
        with self.lock:
            p = self.predictions.get(prediction_id)
            if p is not None:
                self.gets += 1
                self._advance(p)
            return p

    def cancel(self, prediction_id: str) -> Prediction | None:
        with self.lock:
            p = self.predictions.get(prediction_id)
            if p is not None:
                self.cancels += 1
                self._advance(p)
                lifecycle.cancel(p, self.clock())
            return p

    def list_page(self, query: listing.ListQuery, *, url: str) -> dict[str, Any]:
        """``GET /v1/predictions``: one page, newest first, each prediction brought up to date."""
        with self.lock:
            self.lists += 1
            for p in self.predictions.values():
                self._advance(p)
            return listing.page(
                self.predictions.values(), query, url=url, size=self.config.list_page_size
            )

    def file(self, key: str) -> StoredFile | None:
        """The file at ``key`` (``<prefix>/<file id>/<name>``); only its own prediction is
        brought up to date (its outputs may be due, or past their TTL)."""
        with self.lock:
            _, _, rest = key.partition("/")
            p = self._by_file_id.get(rest.partition("/")[0])
            if p is not None:
                self._advance(p)
            stored = self.files.get(key, self.clock())
            if stored is not None:
                self.files_served += 1
            return stored

    def _advance(self, p: Prediction) -> None:
        cfg = self.config
        data_uris = cfg.output_mode == "data_uri"
        lifecycle.advance(p, self.clock(), self.files, cfg.file_ttl, data_uris)

    # -- reporting ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self.lock:
            for p in self.predictions.values():
                self._advance(p)
            return {
                "creates": {
                    "total": sum(self.creates_by_model.values()),
                    "by_model": dict(self.creates_by_model),
                },
                "gets": self.gets,
                "cancels": self.cancels,
                "lists": self.lists,
                "requests": dict(self.requests),
                "predictions": [_summary(p) for p in self.predictions.values()],
                "rate_limited": dict(self.rate_limited),
                "creates_rate_limited": self.rate_limited["create"],
                "max_creates_per_60s": self.create_window.peak,
                "faults_fired": list(self.faults.fired),
                "pending_faults": self.faults.pending(),
                "files": {"stored": len(self.files), "served": self.files_served},
                "uploads": self.uploads.created,
            }


def _summary(p: Prediction) -> dict[str, Any]:
    return {
        "id": p.id,
        "model": p.model.ref,
        "status": p.status,
        "input": dict(p.input),
        "created": p.created,
        "completed": p.completed_at,
        "cancel_after": p.cancel_after,
        "prefer": p.prefer,
        "deployment": p.deployment,
        "fault": p.fault.name if p.fault else None,
        "image_inputs": p.image_inputs,
        "output_size": list(p.model.output_size(p.params)) if p.model.kind != "text" else None,
    }
