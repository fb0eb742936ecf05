"""Where the Replicate fixtures lie in the repository (see tests/fixtures/replicate/NOTICE)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "replicate"
RECORDINGS = FIXTURES / "recordings"  # cassettes of replicate-python's test suite (Apache-2.0)
OPENAPI = FIXTURES / "openapi.json"  # Replicate's OpenAPI description (MIT, via tryAGI/Replicate)
