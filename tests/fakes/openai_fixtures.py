"""Fixture helpers for the OpenAI double: one server per test module, reset before each test.

Use in a test module::

    from tests.fakes.openai_fixtures import double_fixtures
    openai_double, _reset_openai_double = double_fixtures()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.fakes.openai_double import OpenAIDouble

API_KEY = "sk-test-0123456789abcdef"


def double_fixtures() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A module-scoped ``OpenAIDouble`` fixture and an autouse fixture that resets it per test."""

    @pytest.fixture(scope="module")
    def openai_double() -> Iterator[OpenAIDouble]:
        with OpenAIDouble(api_key=API_KEY) as double:
            yield double

    @pytest.fixture(autouse=True)
    def _reset_openai_double(openai_double: OpenAIDouble) -> None:
        openai_double.reset()

    return openai_double, _reset_openai_double
