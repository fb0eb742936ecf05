"""FastAPI's native OpenTelemetry (a span, metrics and a log record per request), decided once.

FastAPI asks, on every request, whether a global OpenTelemetry provider has been set for each
signal, and each question reads the process environment (``OTEL_PYTHON_*_PROVIDER``): about 1 %
of imagegen's CPU per generation, for telemetry that is off unless a provider is configured.
imagegen asks once, when the app is made: a signal whose global provider is set by then (by
``opentelemetry-instrument``, or by code that runs before ``imagegen serve`` builds its app)
stays on, exactly as FastAPI would have it; the others are off for the process's life.
"""

from __future__ import annotations

from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import _logs, metrics, trace

#: The OpenTelemetry API's stand-ins until a provider is set (what FastAPI treats as "none").
_STAND_INS = frozenset(
    {
        ("opentelemetry.trace", "ProxyTracerProvider"),
        ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
        ("opentelemetry._logs._internal", "ProxyLoggerProvider"),
    }
)


def configured(provider: Any) -> bool:
    """Whether ``provider`` is a real one, not the API's stand-in before one is set."""
    kind = type(provider)
    return (kind.__module__, kind.__name__) not in _STAND_INS


def native_telemetry(
    tracer: Any | None = None, meter: Any | None = None, logger: Any | None = None
) -> TelemetryConfig:
    """FastAPI's ``telemetry`` setting: each signal on where its global provider is set now
    (``tracer``, ``meter``, ``logger`` stand for the global providers, for tests)."""
    return {
        "tracing": configured(tracer or trace.get_tracer_provider()),
        "metrics": configured(meter or metrics.get_meter_provider()),
        "logs": configured(logger or _logs.get_logger_provider()),
    }
