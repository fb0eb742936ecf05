"""A prediction's life, decided when it is created and read off the clock when it is looked at.

``starting`` until ``start_at``, ``processing`` (tqdm progress in ``logs``) until ``finish_at``,
then its planned outcome. A ``Cancel-After`` deadline that comes first makes it ``aborted`` (not
yet started) or ``canceled`` (running). Nothing runs in the background: ``advance`` is called
on every read, so an injected clock drives it deterministically.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tests.fakes.replicate.faults import DEFAULT_ERROR, FaultSpec, hostile_text
from tests.fakes.replicate.outputs import FileStore, build_output, new_file_id, new_prefix
from tests.fakes.replicate_models import ModelSpec

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
View = Literal["actual", "created", "sync_done"]
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # lowercase Crockford base32, as real ids
_BLOCKS = " ▏▎▍▌▋▊▉"


def new_prediction_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Prediction:
    id: str
    model: ModelSpec
    version: str
    input: dict[str, Any]
    params: dict[str, Any]
    created: float
    start_at: float
    finish_at: float
    run_time: float
    outcome: str
    planned_error: str | None
    api_base: str
    file_base: str
    fault: FaultSpec | None = None
    deadline: float | None = None
    cancel_after: str | None = None
    prefer: str | None = None
    deployment: str | None = None
    seed: int = 0
    color: int = 0
    file_prefix: str = field(default_factory=new_prefix)
    file_id: str = field(default_factory=new_file_id)
    status: str = "starting"
    started_at: float | None = None
    completed_at: float | None = None
    output: Any = None
    error: str | None = None
    logs: str | None = ""
    data_removed: bool = False
    #: The image inputs as the model opened them: ``{input: {"width", "height", "via"}}``.
    image_inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


def model_failure(model: ModelSpec, params: dict[str, Any], max_pixels: int) -> str | None:
    """How the model itself would fail on these inputs (inside the run, not as a 422)."""
    if model.kind == "text":
        return None
    width, height = model.output_size(params)
    multiple = model.size_multiple
    if multiple and (width % multiple or height % multiple):
        return f"`height` and `width` have to be divisible by 8 but are {height} and {width}."
    if width * height * model.image_count(params) > max_pixels:
        gib = width * height * model.image_count(params) * 4 / 2**30
        return f"CUDA out of memory. Tried to allocate {gib:.2f} GiB"
    return None


def plan(p: Prediction, max_pixels: int) -> None:
    """Fix ``outcome``/``planned_error``/timings from the model and the prediction fault."""
    name = p.fault.fault if p.fault else None
    failure = model_failure(p.model, p.params, max_pixels)
    if failure is not None:
        p.outcome, p.planned_error = "failed", failure
    if name == "fail_prediction":
        p.outcome, p.planned_error = "failed", (p.fault and p.fault.error) or DEFAULT_ERROR
    elif name == "nsfw_all" or (name == "nsfw_drop_one" and p.model.image_count(p.params) <= 1):
        p.outcome, p.planned_error = "failed", p.model.nsfw_error
    elif name == "cancel_prediction":
        p.outcome, p.finish_at = "canceled", p.start_at + p.run_time / 2
    elif name == "abort":
        p.outcome, p.finish_at = "aborted", p.start_at
    elif name == "never_finish":
        p.finish_at = math.inf
    elif name == "never_start":
        p.start_at = p.finish_at = math.inf
    elif name == "hostile_logs" and p.fault and p.fault.seconds is not None:
        p.finish_at = p.start_at + p.fault.seconds  # processing (printing them) this long


def advance(p: Prediction, now: float, store: FileStore, ttl: float, data_uris: bool) -> None:
    """Bring ``p`` up to ``now``: status changes, logs, outputs, data removal after ``ttl``."""
    if p.is_terminal:
        if p.completed_at is not None and not p.data_removed and now >= p.completed_at + ttl:
            remove_data(p, store)
        return
    if p.deadline is not None and p.deadline <= now and p.deadline < p.finish_at:
        if p.deadline < p.start_at:
            _abort(p, p.deadline)
        else:
            _stop(p, "canceled", p.deadline)
        return
    if now >= p.finish_at:
        if p.outcome == "succeeded":
            p.output = build_output(p, store, ttl, data_uris)
            _stop(p, "succeeded", p.finish_at)
        elif p.outcome == "aborted":
            _abort(p, p.finish_at)
        else:
            _stop(p, p.outcome, p.finish_at)
            p.error = p.planned_error
        advance(p, now, store, ttl, data_uris)  # data may already be past its TTL
    elif now >= p.start_at:
        p.status, p.started_at = "processing", p.start_at
        p.logs = progress_logs(p, now)


def cancel(p: Prediction, now: float) -> None:
    """``POST .../cancel``: a no-op once terminal; as recorded, a queued one gets logs null."""
    if p.is_terminal:
        return
    if p.status == "starting":
        p.start_at = now
        _stop(p, "canceled", now)
        p.logs = None
    else:
        _stop(p, "canceled", now)


def remove_data(p: Prediction, store: FileStore) -> None:
    store.remove_prediction(p.id)
    p.output, p.data_removed = None, True


def _stop(p: Prediction, status: str, at: float) -> None:
    p.status, p.started_at, p.completed_at = status, p.start_at, at
    p.logs = progress_logs(p, at)


def _abort(p: Prediction, at: float) -> None:
    p.status, p.completed_at, p.logs = "aborted", at, ""


def render(p: Prediction, view: View = "actual") -> dict[str, Any]:
    """The prediction JSON (``created``: as at creation; ``sync_done``: the sync-mode answer)."""
    urls = {
        "cancel": f"{p.api_base}/v1/predictions/{p.id}/cancel",
        "get": f"{p.api_base}/v1/predictions/{p.id}",
        "web": f"{p.api_base}/p/{p.id}",
    }
    fresh = view == "created"
    body: dict[str, Any] = {
        "id": p.id,
        "model": p.model.ref,
        "version": p.version,
        "input": dict(sorted(p.input.items())),
        "logs": "" if fresh else p.logs,
        "output": None if fresh else p.output,
        "data_removed": False if fresh else p.data_removed,
        "error": None if fresh else p.error,
        "status": "starting" if fresh else p.status,
        "created_at": iso(p.created),
    }
    if not fresh and p.started_at is not None:
        body["started_at"] = iso(p.started_at)
    if not fresh and p.completed_at is not None:
        body["completed_at"] = iso(p.completed_at)
    body["urls"] = urls
    if not fresh and p.completed_at is not None:
        body["metrics"] = _metrics(p)
    if view == "sync_done" and p.status == "succeeded":
        # Recorded sync answers: files ready, but still "processing" without completion data.
        body["status"] = "processing"
        body.pop("completed_at", None)
        body.pop("metrics", None)
    if p.deadline is not None:
        body["deadline"] = iso(p.deadline)
    if p.deployment is not None:
        body["deployment"] = p.deployment
    return body


def _metrics(p: Prediction) -> dict[str, Any]:
    assert p.completed_at is not None
    total = round(p.completed_at - p.created, 6)
    if p.status == "aborted":
        return {"total_time": total}
    metrics: dict[str, Any] = {"predict_time": round(p.completed_at - p.start_at, 6)}
    if p.status == "succeeded" and p.model.kind != "text":
        metrics["image_count"] = len(p.output) if isinstance(p.output, list) else 1
    metrics["total_time"] = total
    return metrics


def progress_logs(p: Prediction, until: float) -> str:
    if p.fault is not None and p.fault.fault == "hostile_logs":
        return _normal_logs(p, until) + hostile_text(p.fault.logs, p.fault.size or 20_000)
    return _normal_logs(p, until)


def _normal_logs(p: Prediction, until: float) -> str:
    if p.model.kind == "text":
        return ""
    lines = [f"Using seed: {p.seed}"]
    if p.model.size_multiple:
        lines += [f"Prompt: {p.params.get('prompt', '')}", "txt2img mode"]
    steps = p.model.steps(p.params)
    if steps <= 0:  # partner models (flux-1.1-pro, imagen-4) print no progress bar
        return "\n".join(lines) + "\n"
    step_time = max(p.run_time, 1e-3) / steps
    done = min(steps, int(max(0.0, until - p.start_at) / step_time))
    if until >= p.finish_at and p.outcome == "succeeded":
        done = steps
    if math.isinf(p.finish_at):
        done = min(done, steps - 1)
    lines += [tqdm_line(k, steps, step_time) for k in range(done + 1)]
    return "\n".join(lines) + "\n"


def tqdm_line(n: int, total: int, step_time: float) -> str:
    """One tqdm progress line, e.g. `` 50%|█████     | 2/4 [00:01<00:01,  2.00it/s]``."""
    eighths = int(n / total * 80)
    bar = ("█" * (eighths // 8) + (_BLOCKS[eighths % 8] if eighths < 80 else "")).ljust(10)
    if n == 0:
        return f"  0%|{bar}| 0/{total} [00:00<?, ?it/s]"
    timing = f"{_clock(n * step_time)}<{_clock((total - n) * step_time)}, {1 / step_time:5.2f}it/s"
    return f"{100 * n / total:3.0f}%|{bar}| {n}/{total} [{timing}]"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"
