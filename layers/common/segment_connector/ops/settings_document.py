"""The settings document as operators edit it (CLI, console): parse, validate, store as text.

Both write it the same way (`write_settings`): the compact text, refused over 8 KB (an advanced
SSM parameter's limit: `size_errors`), in ParameterStore's tier (`tier_for`): a standard
parameter up to 4 KB, an advanced one above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from segment_connector.domain.explain import FieldError as FieldError  # the CLI imports it from here
from segment_connector.domain.explain import field_errors, json_problem
from segment_connector.domain.models.settings import ConnectorSettings

if TYPE_CHECKING:  # the CLI imports this module before it needs boto3 (`--help` stays quick)
    from segment_connector.runtime.parameter_store import ParameterStore

SETTINGS_PARAMETER = "settings"  # <prefix>/settings, a String parameter
MAX_SETTINGS_BYTES = 8192  # an advanced SSM parameter's limit


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
        return None, [{"field": "(document)", "error": json_problem(error)}]
    if not isinstance(document, dict):
        return None, [{"field": "(document)", "error": "must be a JSON object"}]
    return document, validate_document(document)


def stored_text(document: Mapping[str, Any]) -> str:
    """The text stored in SSM: compact (a standard parameter holds 4 KB), key order kept."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def size_errors(text: str) -> list[FieldError]:
    """Why SSM cannot hold this stored text (empty: it can, up to the advanced tier's 8 KB)."""
    size = len(text.encode("utf-8"))
    if size <= MAX_SETTINGS_BYTES:
        return []
    error = f"{size} bytes stored; SSM holds at most {MAX_SETTINGS_BYTES} (an advanced parameter)"
    return [{"field": "(document)", "error": error}]


def write_settings(parameters: ParameterStore, text: str) -> int:
    """Store the text (checked by `size_errors`) as <prefix>/settings; its new version. The tier is
    ParameterStore.write's (`tier_for`): standard up to 4 KB, advanced above."""
    return parameters.write(SETTINGS_PARAMETER, text, secure=False)


def with_defaults(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with every missing setting at its default (values left as they are)."""
    defaults = {
        name: field.get_default(call_default_factory=True) for name, field in ConnectorSettings.model_fields.items()
    }
    return {**json.loads(ConnectorSettings.model_construct(**defaults).model_dump_json()), **document}
