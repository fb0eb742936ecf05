"""Reading a model's input and output schema from Replicate's model or version JSON.

Cog publishes each version's OpenAPI document; the model's inputs are
``openapi_schema.components.schemas.Input`` and its output ``...schemas.Output``. Enums live in
their own components and are referenced as ``{"allOf": [{"$ref": "#/components/schemas/x"}]}``,
so properties are resolved (local ``$ref`` and ``allOf`` merged) before anyone reads them. All of
this is pure: no I/O, no exceptions for odd documents (they read as "unknown").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagegen.errors import UnsupportedModel

Schema = Mapping[str, Any]

_REF_PREFIX = "#/components/schemas/"
_MAX_DEPTH = 16  # deeper nesting (or a $ref cycle) is left unresolved


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """A model's resolved input properties and output schema; None where the document lacks one."""

    inputs: Mapping[str, Schema] | None
    output: Schema | None
    #: For an unpinned community model (``is_official: false``): the version to run, since
    #: only official models answer on ``/v1/models/{o}/{n}/predictions``.
    community_version: str | None = None
    #: The inputs the model requires (``Input.required``).
    required: frozenset[str] = frozenset()


def read_model_schema(data: Any, *, pinned: bool) -> ModelSchema:
    """Read ``GET /v1/models/{o}/{n}``, or ``.../versions/{v}`` when ``pinned``."""
    version = data if pinned else _get(data, "latest_version")
    community_version = None
    if not pinned and _get(data, "is_official") is False:
        version_id = _get(version, "id")
        community_version = version_id if isinstance(version_id, str) else None
    components = _get(_get(_get(version, "openapi_schema"), "components"), "schemas")
    if not isinstance(components, Mapping):
        return ModelSchema(None, None, community_version)
    return ModelSchema(
        _read_inputs(components),
        _read_output(components),
        community_version,
        _read_required(components),
    )


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, Mapping) else None


def _read_inputs(components: Mapping[str, Any]) -> Mapping[str, Schema] | None:
    resolved = resolve(components.get("Input"), components)
    properties = _get(resolved, "properties")
    if not isinstance(properties, Mapping):
        return None
    return {
        str(name): resolve(prop, components)
        for name, prop in properties.items()
        if isinstance(prop, Mapping)
    }


def _read_required(components: Mapping[str, Any]) -> frozenset[str]:
    required = _get(resolve(components.get("Input"), components), "required")
    if not isinstance(required, list):
        return frozenset()
    return frozenset(name for name in required if isinstance(name, str))


def _read_output(components: Mapping[str, Any]) -> Schema | None:
    output = resolve(components.get("Output"), components)
    return output if isinstance(output, Mapping) and output else None


def resolve(node: Any, components: Mapping[str, Any], depth: int = 0) -> Any:
    """``node`` with local ``$ref``s replaced and ``allOf`` parts merged (own keys win)."""
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
        return node
    merged: dict[str, Any] = {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        target = resolve(components.get(ref.removeprefix(_REF_PREFIX)), components, depth + 1)
        if isinstance(target, Mapping):
            merged.update(target)
    for part in node.get("allOf") or ():
        target = resolve(part, components, depth + 1)
        if isinstance(target, Mapping):
            merged.update(target)
    merged.update((k, v) for k, v in node.items() if k not in ("$ref", "allOf"))
    if "items" in merged:
        merged["items"] = resolve(merged["items"], components, depth + 1)
    return merged


def _is_uri(schema: Any) -> bool:
    return bool(_get(schema, "type") == "string" and _get(schema, "format") == "uri")


def produces_images(output: Schema) -> bool:
    """True for a URI or a (non-iterator) array of URIs: what Cog's ``Path``/``list[Path]`` give."""
    if _is_uri(output):
        return True
    return (
        output.get("type") == "array"
        and output.get("x-cog-array-type") != "iterator"
        and _is_uri(output.get("items"))
    )


def describe_output(output: Schema) -> str:
    if output.get("x-cog-array-type") == "iterator":
        return "a stream (iterator) of values"
    if output.get("type") == "array":
        return f"an array of {_get(output.get('items'), 'type') or 'values'}"
    return f"{output.get('type') or 'an unknown type'} without format 'uri'"


def ensure_image_output(schema: ModelSchema, model: str) -> None:
    """Raise ``UnsupportedModel`` if the model's declared output cannot be image files.

    An unknown output (no schema) is allowed: the outputs themselves are checked later.
    """
    output = schema.output
    if output is not None and not produces_images(output):
        raise UnsupportedModel(
            f"Replicate model {model} does not generate images: its output is "
            f"{describe_output(output)}, not image URLs",
            model=model,
        )
