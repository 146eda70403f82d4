"""Rules of nexa's request bodies that pydantic's types do not write into /openapi.json: fields refused unless
unset, fields that exclude each other, parts that depend on a message's role.

The server checks each rule itself, with a message that names it (which a schema error could not); these
helpers only make the document say the same, so that a client (or schemathesis) can tell from the schema
alone which requests nexa takes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import WithJsonSchema

Schema = dict[str, Any]
_NOT_NULL: Schema = {"not": {"type": "null"}}


def unset(*also: Any) -> WithJsonSchema:
    """A field nexa does not support: documented as taking only null (or absence) and the `also` values that
    mean the same ('', false, [])."""
    return WithJsonSchema({"enum": [None, *also]})


def not_both(first: str, second: str) -> Schema:
    """A model-level rule: `first` and `second` are not both set to something other than null."""
    return {"not": {"required": [first, second], "properties": {first: _NOT_NULL, second: _NOT_NULL}}}


def when(field: str, value: Schema, then: Mapping[str, Schema], required: Sequence[str] = ()) -> Schema:
    """A model-level rule: where `field` is present and matches `value`, the `then` properties follow their
    schemas (and `required` fields are present)."""
    rule: Schema = {"properties": dict(then)}
    if required:
        rule["required"] = list(required)
    return {"if": {"required": [field], "properties": {field: value}}, "then": rule}


def rules(*items: Schema) -> Callable[[Schema], None]:
    """A model's `json_schema_extra` adding `items` to its schema's allOf."""

    def extra(schema: Schema) -> None:
        schema.setdefault("allOf", []).extend(copy.deepcopy(list(items)))

    return extra


def tags_only(union: Schema, tags: Sequence[str]) -> Schema:
    """A discriminated union's schema (oneOf + discriminator mapping, as pydantic writes it) cut to `tags`."""
    mapping = union["discriminator"]["mapping"]
    refs = [mapping[tag] for tag in tags]
    return {"oneOf": [{"$ref": ref} for ref in refs],
            "discriminator": {"propertyName": union["discriminator"]["propertyName"],
                              "mapping": {tag: mapping[tag] for tag in tags}}}


def by_role(variants: Mapping[tuple[str, ...], Callable[[Schema], Schema]]) -> Callable[[Schema], None]:
    """A message model's `json_schema_extra`: its schema becomes one alternative per group of roles, each a
    copy of the message's properties with `role` cut to the group and its other properties as the group's
    function makes them (given the property dict, it returns the overrides)."""

    def extra(schema: Schema) -> None:
        base = {key: schema.pop(key) for key in ("type", "properties", "required") if key in schema}
        alternatives = []
        for roles, overrides in variants.items():
            variant = copy.deepcopy(base)
            variant["properties"]["role"] = {**variant["properties"]["role"], "enum": list(roles)}
            variant["properties"]["role"].pop("const", None)
            variant["properties"].update(copy.deepcopy(overrides(variant["properties"])))
            alternatives.append(variant)
        schema["anyOf"] = alternatives

    return extra


def content_tags(tags: Sequence[str], field: str = "content", min_items: int = 0) -> Callable[[Schema], Schema]:
    """For `by_role`: `field` (anyOf a string, an array of a discriminated union, perhaps null) with the
    union cut to `tags` (and the array at least `min_items` long)."""

    def overrides(properties: Schema) -> Schema:
        content = copy.deepcopy(properties[field])
        for option in content.get("anyOf", [content]):
            if option.get("type") == "array":
                option["items"] = tags_only(option["items"], tags)
                if min_items:
                    option["minItems"] = min_items
        return {field: content}

    return overrides


def only_tags(tags: Sequence[str], field: str = "content") -> Callable[[Schema], None]:
    """A model's `json_schema_extra`: the union in its `field` cut to `tags`."""

    def extra(schema: Schema) -> None:
        schema["properties"].update(content_tags(tags, field)(schema["properties"]))

    return extra


def refers_to(schema: Schema, model: type) -> bool:
    """Whether `schema` is a $ref to `model`'s schema, in the final form ('#/$defs/Name') or in the one pydantic
    writes while it builds a schema ('#/$defs/module__Name-Input__1'), which is what json_schema_extra sees."""
    name = schema.get("$ref", "").rpartition("/")[2]
    return name == model.__name__ or name.startswith(f"{model.__module__.replace('.', '__')}__{model.__name__}-")


def media_limit(field: str, limit: int, has_media: Schema, at_most: Callable[[int], Schema]) -> Schema:
    """A model-level rule: the `field` list (messages) carries at most `limit` media (images, audio) together.
    A schema cannot count across items, so it says a part of what nexa takes, which holds real conversations:
    one message with up to `limit`, or up to `limit` messages with one each. `has_media` matches a message
    with any; `at_most(n)`, one with at most n."""
    none_or_more = {"contains": has_media, "minContains": 0}
    return {"properties": {field: {"anyOf": [
        {**none_or_more, "maxContains": 1, "items": at_most(limit)},
        {**none_or_more, "maxContains": limit, "items": at_most(1)},
    ]}}}


def parts_at_most(parts: Schema, field: str = "content") -> Callable[[int], Schema]:
    """For `media_limit`: a message whose `field` (a string, or a list of parts) has at most n `parts`."""
    return lambda n: {"properties": {field: {"contains": parts, "minContains": 0, "maxContains": n}}}


def has_parts(parts: Schema, field: str = "content") -> Schema:
    """For `media_limit`: a message whose `field` is a list holding one of `parts` or more."""
    return {"required": [field], "properties": {field: {"type": "array", "contains": parts}}}


def typed(*types: str) -> Schema:
    """An object (a part, a choice) whose `type` is one of `types`."""
    return {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(types)}}}


def tag_required(schema: Schema) -> None:
    """A model's `json_schema_extra` for a member of a union told apart by `type`: the tag has a default (for
    the answers nexa builds), yet a request must name it."""
    schema["required"] = [*schema.get("required", []), "type"]
