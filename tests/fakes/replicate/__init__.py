"""A faithful Replicate HTTP API double (see ``tests.fakes.replicate_double`` for the overview)."""

from tests.fakes.replicate.app import create_double_app
from tests.fakes.replicate.config import DoubleConfig
from tests.fakes.replicate.faults import PREDICTION_FAULTS, RESPONSE_FAULTS, FaultSpec
from tests.fakes.replicate.server import DoubleControl, DoubleProcess, ReplicateDouble, main
from tests.fakes.replicate.state import DoubleState

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
