"""``storable_json``: a JSON body whose bytes hold no ``\\u`` escape can hold no unstorable
string, so its strings are not walked again; any other body is walked as before."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import from_json

from imagegen.api.schemas import GenerateRequest
from imagegen.api.wire import STORABLE, problem, storable_json
from imagegen.errors import InvalidRequest

ANY_TEXT = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=24)


def _unstorable(value: object) -> bool:
    if isinstance(value, str):
        return problem(value) is not None
    if isinstance(value, dict):
        return any(_unstorable(key) or _unstorable(item) for key, item in value.items())
    return False


@settings(max_examples=500, derandomize=True, database=None)
@given(key=ANY_TEXT, value=ANY_TEXT, ascii_only=st.booleans())
def test_bytes_cleared_by_storable_json_never_parse_to_unstorable_text(key, value, ascii_only):
    # As a client may send it: escaped (json.dumps's default), or raw UTF-8, a lone surrogate
    # written as its (invalid) UTF-8 bytes.
    text = json.dumps({key: value}, ensure_ascii=ascii_only)
    raw = text.encode("utf-8", "surrogatepass")
    try:
        parsed = from_json(raw)
    except ValueError:
        return  # the parser refuses it: a 400 before anything is stored
    if storable_json(raw):
        assert not _unstorable(parsed)
    if _unstorable(parsed):
        assert not storable_json(raw)


@pytest.mark.parametrize(
    ("raw", "cleared"),
    [
        (b'{"prompt":"a cat"}', True),
        (b'{"prompt":"caf\xc3\xa9 \xf0\x9f\x90\x88"}', True),  # raw UTF-8: no escape
        (b'{"prompt":"caf\\u00e9"}', False),  # harmless, but only a walk tells
        (b'{"prompt":"a\\u0000b"}', False),
        (b'{"prompt":"a\\\\u0000b"}', False),  # an escaped backslash: walked, to be safe
        (b'{"prompt":"a\x00b"}', False),
    ],
)
def test_storable_json_clears_only_bodies_without_escapes(raw, cleared):
    assert storable_json(raw) is cleared


SEED = {"model": "owner/model", "num_images": 1, "width": 512, "height": 512}


def test_a_body_with_escapes_is_still_walked():
    escaped = json.dumps({**SEED, "prompt": "caf\u00e9"}).encode()
    assert GenerateRequest.model_validate_json(escaped).prompt == "caf\u00e9"
    bad = json.dumps({**SEED, "prompt": "a\x00b"}).encode()
    assert not storable_json(bad)
    with pytest.raises(InvalidRequest, match="prompt: must not contain NUL"):
        GenerateRequest.model_validate_json(bad)


def test_the_storable_context_is_what_skips_the_walk():
    # The context is a promise made from the bytes: given it, the model takes the caller's word.
    bad = json.dumps({**SEED, "prompt": "a\x00b"}).encode()
    assert GenerateRequest.model_validate_json(bad, context=STORABLE).prompt == "a\x00b"
    with pytest.raises(InvalidRequest):
        GenerateRequest.model_validate_json(bad, context={"imagegen.storable": True})
    with pytest.raises((InvalidRequest, ValidationError)):
        GenerateRequest.model_validate(json.loads(bad))
