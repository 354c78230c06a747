"""The settings document as operators edit it (CLI, console): parse, validate, store as text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from segment_connector.models.settings import ConnectorSettings

FieldError = dict[str, str]


def field_errors(error: ValidationError) -> list[FieldError]:
    """pydantic's errors as `{"field": "segments.0.rule", "error": ...}`, as the functions report them."""
    return [
        {
            "field": ".".join(str(part) for part in item["loc"]) or "(document)",
            "error": item["msg"].removeprefix("Value error, "),
        }
        for item in error.errors(include_url=False)
    ]


def validate_document(document: Any) -> list[FieldError]:
    """What the functions' model refuses in this document (empty: valid)."""
    if not isinstance(document, Mapping):
        return [{"field": "(document)", "error": "must be a JSON object"}]
    try:
        ConnectorSettings.model_validate_json(stored_text(document))
    except ValidationError as error:
        return field_errors(error)
    return []


def parse_settings_text(text: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """(the document, its errors) of a settings text."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return None, [{"field": "(document)", "error": f"not JSON: {error}"}]
    if not isinstance(document, dict):
        return None, [{"field": "(document)", "error": "must be a JSON object"}]
    return document, validate_document(document)


def stored_text(document: Mapping[str, Any]) -> str:
    """The text stored in SSM: compact (a standard parameter holds 4 KB), key order kept."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def with_defaults(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with every missing setting at its default (values left as they are)."""
    defaults = {
        name: field.get_default(call_default_factory=True) for name, field in ConnectorSettings.model_fields.items()
    }
    return {**json.loads(ConnectorSettings.model_construct(**defaults).model_dump_json()), **document}
