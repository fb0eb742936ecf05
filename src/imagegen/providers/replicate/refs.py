"""Replicate model references: ``owner/name`` (an official model) or ``owner/name:version``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagegen.errors import InvalidRequest

_REF = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"
    r"(?::(?P<version>[0-9a-fA-F]{64}))?$"
)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed model reference; ``version`` (64 hex) is None for an official model."""

    owner: str
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """Parse ``owner/name`` or ``owner/name:<64 hex>``; raise ``InvalidRequest`` otherwise.
        A ref parsed before is the same value (``_PARSED`` keeps a bounded number)."""
        parsed = _PARSED.get(ref)
        if parsed is not None:
            return parsed
        match = _REF.fullmatch(ref.strip())
        if match is None:
            raise InvalidRequest(
                f"model must be 'owner/name' or 'owner/name:<64-hex version id>', got {ref!r}",
                field="model",
            )
        parsed = ModelRef(match["owner"], match["name"], match["version"])
        if len(_PARSED) < MAX_PARSED:
            _PARSED[ref] = parsed
        return parsed

    @property
    def model_path(self) -> str:
        """``/v1/models/{owner}/{name}``; the prefix of the model routes."""
        return f"/v1/models/{self.owner}/{self.name}"

    def __str__(self) -> str:
        base = f"{self.owner}/{self.name}"
        return f"{base}:{self.version}" if self.version else base


MAX_PARSED = 1024  # refs remembered once parsed (a few models in practice; names are users')
_PARSED: dict[str, ModelRef] = {}
