"""A faithful Replicate HTTP API double, serving real HTTP on loopback.

Behaviour follows ``shared/reference/replicate-api-notes.md`` and the recorded cassettes:
``/v1/predictions`` (+ ``/cancel``), ``/v1/models/{o}/{n}[/predictions|/versions[/{id}]]``,
``/v1/deployments/{o}/{n}/predictions``, and output files at
``<base>/delivery/<prefix>/<44-char id>/out-<i>.<ext>``. Models: ``tests.fakes.replicate_models``.

In-process (a uvicorn thread on a free port)::

    with ReplicateDouble(DoubleConfig(duration=0.1)) as double:
        client = replicate.Client(api_token="r8_test", base_url=double.base_url)
        double.script("fail_prediction", error="boom")

As a process (prints ``READY http://127.0.0.1:N`` once listening)::

    python -m tests.fakes.replicate_double --port N [--token r8_test] [--duration 0.2] ...

Both are steered over HTTP under ``/_double/`` (see ``tests.fakes.replicate.control``) or with
``DoubleControl(base_url)``; fault names are in ``tests.fakes.replicate.faults``.
"""

from tests.fakes.replicate import (
    PREDICTION_FAULTS,
    RESPONSE_FAULTS,
    DoubleConfig,
    DoubleControl,
    DoubleProcess,
    DoubleState,
    FaultSpec,
    ReplicateDouble,
    create_double_app,
    main,
)

__all__ = [
    "PREDICTION_FAULTS",
    "RESPONSE_FAULTS",
    "DoubleConfig",
    "DoubleControl",
    "DoubleProcess",
    "DoubleState",
    "FaultSpec",
    "ReplicateDouble",
    "create_double_app",
    "main",
]

if __name__ == "__main__":
    main()
