"""Between the tables' rows (``tables.py``) and the core's frozen values: the parameters of an
INSERT built from a value, and a value built from a row's mapping (``Result.mappings()``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from imagegen.jobs.records import (
    Delivery,
    DeliveryStatus,
    NewDelivery,
    WebhookAttempt,
    WebhookEvent,
)
from imagegen.models import Generation, GenerationRequest, JobStatus, PredictionRecord, StoredImage

Row = Mapping[Any, Any]  # a RowMapping, or the values inserted as the row


def request_to_json(request: GenerationRequest) -> dict[str, Any]:
    """What ``dataclasses.asdict`` makes of ``request`` (its images a tuple of mappings), built
    field by field: ``asdict`` deep-copies every value on its way, at several times the cost."""
    mask = request.mask
    return {
        "model": request.model,
        "prompt": request.prompt,
        "num_images": request.num_images,
        "width": request.width,
        "height": request.height,
        "seed": request.seed,
        "negative_prompt": request.negative_prompt,
        "output_format": request.output_format,
        "images": tuple(_stored_to_json(image) for image in request.images),
        "mask": None if mask is None else _stored_to_json(mask),
    }


def _stored_to_json(image: StoredImage) -> dict[str, Any]:
    return {
        "key": image.key,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "size_bytes": image.size_bytes,
        "source_url": image.source_url,
        "revised_prompt": image.revised_prompt,
    }


_REQUEST_FIELDS = frozenset(f.name for f in fields(GenerationRequest))
_STORED_IMAGE_FIELDS = frozenset(f.name for f in fields(StoredImage))


def request_from_json(data: dict[str, Any]) -> GenerationRequest:
    # Keys a newer or older GenerationRequest no longer knows are dropped, not fatal.
    values = {key: value for key, value in data.items() if key in _REQUEST_FIELDS}
    images = values.get("images")
    values["images"] = tuple(_stored_from_json(item) for item in images) if images else ()
    mask = values.get("mask")
    values["mask"] = None if mask is None else _stored_from_json(mask)
    return GenerationRequest(**values)


def _stored_from_json(data: Mapping[str, Any]) -> StoredImage:
    known = _STORED_IMAGE_FIELDS
    return StoredImage(**{key: value for key, value in data.items() if key in known})


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced by U+FFFD.

    imagegen refuses such text on the way in (``api/wire.py``), but a record stored before it
    did, as an escape in a JSON column, would otherwise make every response that shows it fail
    to encode.
    """
    if isinstance(value, str):
        return value if value.isascii() else _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {readable(key): readable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [readable(item) for item in value]
    return value


def to_generation(
    row: Row,
    predictions: Sequence[PredictionRecord] = (),
    images: Sequence[StoredImage] = (),
    *,
    request: GenerationRequest | None = None,
) -> Generation:
    """A ``generations`` row (or the values inserted as one) with its predictions and images;
    ``request``: the one its ``request`` column holds, in hand (the values just inserted), so
    not rebuilt from the column."""
    return Generation(
        id=row["id"],
        status=JobStatus(row["status"]),
        request=request_from_json(readable(row["request"])) if request is None else request,
        provider=row["provider"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        predictions=tuple(predictions),
        images=tuple(images),
        provider_urls=tuple(row["provider_urls"]),
        images_missing=row["images_missing"],
        error=readable(row["error"]),
        error_code=row["error_code"],
        metadata=readable(row["metadata"]),
        deadline_at=row["deadline_at"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        webhook_url=readable(row["webhook_url"]),
        webhook_events=tuple(row["webhook_events"] or ()),
        updated_at=row["updated_at"],
        owner=row.get("owner"),
        cost=row.get("cost"),
        predict_seconds=row.get("predict_seconds"),
    )


def prediction_values(
    generation_id: str, record: PredictionRecord, now: datetime
) -> dict[str, Any]:
    """A new prediction, in the provider's initial ``starting`` status."""
    return {
        "generation_id": generation_id,
        "prediction_id": record.prediction_id,
        "inputs": dict(record.inputs),
        "images_requested": record.images_requested,
        "status": "starting",
        "created_at": now,
        "updated_at": now,
    }


def to_prediction(row: Row) -> PredictionRecord:
    return PredictionRecord(row["prediction_id"], readable(row["inputs"]), row["images_requested"])


def image_values(generation_id: str, images: Sequence[StoredImage]) -> list[dict[str, Any]]:
    """A succeeded generation's images, numbered in output order."""
    return [
        {"generation_id": generation_id, "position": position, **_stored_to_json(image)}
        for position, image in enumerate(images)
    ]


def input_image_values(generation_id: str, request: GenerationRequest) -> list[dict[str, Any]]:
    """The request's input images, numbered in request order, the mask last."""
    roles = ["image"] * len(request.images) + (["mask"] if request.mask is not None else [])
    return [
        {
            "generation_id": generation_id,
            "position": position,
            "role": role,
            "key": image.key,
            "content_type": image.content_type,
            "width": image.width,
            "height": image.height,
            "size_bytes": image.size_bytes,
            "source_url": image.source_url,
        }
        for position, (role, image) in enumerate(zip(roles, request.inputs, strict=True))
    ]


def to_stored_image(row: Row) -> StoredImage:
    return StoredImage(
        key=row["key"],
        content_type=row["content_type"],
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        source_url=row["source_url"],
        revised_prompt=row["revised_prompt"],
    )


def delivery_values(new: NewDelivery, now: datetime) -> dict[str, Any]:
    """A pending outbox message, due at once."""
    return {
        "id": new.id,
        "generation_id": new.generation_id,
        "event": new.event.value,
        "url": new.url,
        "body": new.body,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "delivered_at": None,
    }


def to_delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        generation_id=row["generation_id"],
        event=WebhookEvent(row["event"]),
        url=row["url"],
        body=row["body"],
        attempts=row["attempts"],
        created_at=row["created_at"],
    )


def to_attempt(row: Row, event: str) -> WebhookAttempt:
    return WebhookAttempt(
        delivery_id=row["delivery_id"],
        event=WebhookEvent(event),
        attempted_at=row["attempted_at"],
        status_code=row["status_code"],
        error=row["error"],
        delivered=row["delivered"],
    )
