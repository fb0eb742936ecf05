"""FastAPI's native OpenTelemetry is decided once, from the global providers set at start."""

from __future__ import annotations

from opentelemetry import _logs, metrics, trace

from imagegen.api.telemetry import configured, native_telemetry


def test_the_api_stand_ins_are_not_providers() -> None:
    assert not configured(trace.ProxyTracerProvider())
    assert not configured(metrics.get_meter_provider())  # nothing here sets one
    assert not configured(_logs.get_logger_provider())


def test_with_no_provider_set_every_signal_is_off() -> None:
    assert native_telemetry() == {"tracing": False, "metrics": False, "logs": False}


def test_a_signal_whose_provider_is_set_stays_on() -> None:
    config = native_telemetry(tracer=trace.NoOpTracerProvider())
    assert config == {"tracing": True, "metrics": False, "logs": False}
    config = native_telemetry(meter=metrics.NoOpMeterProvider(), logger=_logs.NoOpLoggerProvider())
    assert config == {"tracing": False, "metrics": True, "logs": True}
