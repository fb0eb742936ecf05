"""The seed endpoint's answer is built as JSON without its models (``generate_response_json``):
byte for byte what ``GenerateResponse`` serialises to, for every kind of generation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter

from imagegen.api.schemas import (
    GenerateResponse,
    ImageInfo,
    generate_response_json,
    image_infos,
)
from imagegen.models import Generation, GenerationRequest, JobStatus, StoredImage

ODD = 'a "quoted" \\ back\u2028slash \x00\x1f é 漢字 🐱 </script>'


def stored(n: int, revised: str | None = None) -> StoredImage:
    return StoredImage(
        key=f"{n:064x}.png",
        content_type="image/png",
        width=512 + n,
        height=256,
        size_bytes=1000 * n,
        revised_prompt=revised,
    )


def generation(**fields: object) -> Generation:
    request = GenerationRequest(model="owner/model", prompt=ODD, num_images=2, width=8, height=8)
    values: dict[str, object] = {
        "id": "gen_1",
        "status": JobStatus.SUCCEEDED,
        "request": request,
        "provider": "replicate",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        **fields,
    }
    return Generation(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "done",
    [
        generation(images=(stored(1),)),
        generation(images=(stored(1, "a revised cat"), stored(2, ODD)), images_missing=0),
        generation(images=(stored(3),), images_missing=1),
        generation(provider_urls=("https://x.example/a.png", "https://x.example/é?b=1&c")),
        generation(),
    ],
)
@pytest.mark.parametrize("prompt", ["a cat", ODD, ""])
@pytest.mark.parametrize("base_url", ["http://testserver", "https://images.example/base"])
def test_the_answer_is_the_models(done: Generation, prompt: str, base_url: str) -> None:
    images = image_infos(done, base_url)
    model = GenerateResponse(
        image_urls=[image.url for image in images],
        prompt=prompt,
        model="owner/mödel",
        id=done.id,
        images=images,
        images_missing=done.images_missing,
    )
    expected = TypeAdapter(GenerateResponse).dump_json(model)
    got = generate_response_json(done, base_url, prompt, "owner/mödel")
    assert got == expected


def test_every_field_of_the_model_is_answered() -> None:
    got = json.loads(generate_response_json(generation(images=(stored(1),)), "http://t", "p", "m"))
    assert list(got) == list(GenerateResponse.model_fields)
    assert list(got["images"][0]) == list(ImageInfo.model_fields)
