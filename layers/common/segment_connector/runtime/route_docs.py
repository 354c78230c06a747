"""Route metadata for the OpenAPI document (docs/openapi.json, `make openapi`): plain dicts, so
the handlers build no schema at import."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = "application/json"
SCHEMAS = "#/components/schemas/"


def json_content(schema: str) -> dict[str, Any]:
    return {"content": {JSON: {"schema": {"$ref": SCHEMAS + schema}}}}


def answers(ok: str, schema: str, errors: Mapping[int, str]) -> dict[int, Any]:
    """200 with `schema`, then each error status (description) with the Error schema."""
    documented: dict[int, Any] = {200: {"description": ok, **json_content(schema)}}
    for status in sorted(errors):
        documented[status] = {"description": errors[status], **json_content("Error")}
    return documented


def request_body(schema: str) -> dict[str, Any]:
    return {"required": True, **json_content(schema)}
