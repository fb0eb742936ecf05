"""The values the store writes for a job: its request as JSON, its id."""

from __future__ import annotations

import secrets
from dataclasses import asdict, fields

from imagegen.db.rows import request_from_json, request_to_json
from imagegen.db.store import new_ulid, ulid_text
from imagegen.models import GenerationRequest, StoredImage

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
IMAGE = StoredImage("ab/cd.png", "image/png", 64, 32, 1234, "https://x.test/a.png", "a cat")


def test_a_request_as_json_is_what_asdict_makes_of_it_for_every_field() -> None:
    full = GenerationRequest(
        "o/m", "p", 2, 512, 768, 7, "fog", "png", images=(IMAGE, IMAGE), mask=IMAGE
    )
    assert {f.name for f in fields(GenerationRequest)} == set(request_to_json(full))
    assert {f.name for f in fields(StoredImage)} == set(request_to_json(full)["mask"])
    for request in (GenerationRequest("o/m", "p", 1, 64, 64), full):
        assert request_to_json(request) == asdict(request)
        assert request_from_json(request_to_json(request)) == request


def reference_ulid_text(value: int) -> str:
    """One character per five bits, most significant first."""
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def test_ulid_text_is_crockford_base32_of_128_bits() -> None:
    for value in [0, 1, (1 << 128) - 1, *(secrets.randbits(128) for _ in range(2000))]:
        assert ulid_text(value) == reference_ulid_text(value)
    ulid = new_ulid()
    assert len(ulid) == 26
    assert set(ulid) <= set(CROCKFORD)
