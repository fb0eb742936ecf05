"""Model references: parsed once per name, refused every time when malformed."""

from __future__ import annotations

import pytest

from imagegen.errors import InvalidRequest
from imagegen.providers.replicate.refs import ModelRef

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"


def test_a_ref_parsed_again_is_the_same_value() -> None:
    first = ModelRef.parse("black-forest-labs/flux-schnell")
    assert ModelRef.parse("black-forest-labs/flux-schnell") is first
    assert first == ModelRef("black-forest-labs", "flux-schnell")
    pinned = ModelRef.parse(f"stability-ai/sdxl:{VERSION}")
    assert (pinned.owner, pinned.name, pinned.version) == ("stability-ai", "sdxl", VERSION)
    assert str(pinned) == f"stability-ai/sdxl:{VERSION}"


@pytest.mark.parametrize("ref", ["no-slash", "owner/name:short", " /x", "a/b/c"])
def test_a_malformed_ref_is_refused_every_time(ref: str) -> None:
    for _ in range(2):
        with pytest.raises(InvalidRequest, match="owner/name"):
            ModelRef.parse(ref)
