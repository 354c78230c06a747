"""Errors in plain words: the one place that turns pydantic's and json's errors into sentences.

Every answer that reports a settings document, a segment rule or a Segment message that cannot be
used says what is wrong and how to fix it, in the same words: the HTTP answers (`details`), the
console's API and the CLI. No pydantic wording ("Value error, ...", "Extra inputs are not
permitted", "Unable to extract tag using discriminator") reaches an operator: each error type is
mapped here; an unknown setting or key gets "did you mean ...?"; invalid JSON gives its line and
column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

FieldError = dict[str, str]

RULE_KEYS = ("all", "any", "not", "trait", "op", "value", "event", "count", "within_days", "where")
WHERE_KEYS = ("all", "any", "not", "property", "op", "value")
COUNT_KEYS = ("op", "value")
DEFINITION_KEYS = ("name", "rule")
COMPUTED_TRAIT_KEYS = ("name", "type", "event", "property", "within_days", "where")
DEFINITION_LISTS = ("segments", "account_segments")
CALLS = ("identify", "track", "page", "screen", "group", "alias", "delete")
SHOWN_INPUT = 60  # characters of a wrong value quoted back
SUMMARY_ERRORS = 3  # errors named in a one-line summary

_JSON_MESSAGES = {
    "Expecting value": "expected a value (a string in double quotes, a number, true, false, null, [ or {)",
    "Expecting ',' delimiter": "expected a comma (,) between two items",
    "Expecting ':' delimiter": "expected a colon (:) after a key",
    "Expecting property name enclosed in double quotes": ("expected a key in double quotes"),
    "Illegal trailing comma before end of object": "a comma before } is not allowed in JSON: remove it",
    "Illegal trailing comma before end of array": "a comma before ] is not allowed in JSON: remove it",
    "Extra data": "unexpected text after the end of the JSON value",
    "Unterminated string starting at": "a string is not closed (a missing double quote)",
    "Invalid control character at": "a control character (e.g. a line break) inside a string: write it as \\n",
    "Invalid \\escape": "an invalid backslash escape inside a string",
}


# -- JSON ------------------------------------------------------------------------------------------


def json_problem(error: json.JSONDecodeError) -> str:
    """`not valid JSON: line 3, column 7: expected a comma (,) between two items`."""
    return f"not valid JSON: line {error.lineno}, column {error.colno}: {_JSON_MESSAGES.get(error.msg, error.msg)}"


def json_error(error: ValueError) -> str:
    """Why a text is not JSON: line and column when the parser knows them."""
    if isinstance(error, json.JSONDecodeError):
        return json_problem(error)
    if isinstance(error, UnicodeDecodeError):
        return f"not valid JSON: byte {error.start} is not UTF-8 text"
    return f"not valid JSON: {error}"


# -- pydantic --------------------------------------------------------------------------------------


def field_errors(error: ValidationError, *, union_tags: Collection[str] = ()) -> list[FieldError]:
    """pydantic's errors as `{"field": "segments.0.rule.op", "error": <a plain sentence>}`.

    `union_tags`: the tags of a discriminated union that pydantic puts first in a location
    (`("track", "event")`), dropped so that the field is named as it is sent.
    """
    details: list[FieldError] = []
    for item in error.errors(include_url=False):
        location: list[str | int] = list(item["loc"])
        if location and location[0] in union_tags:
            location = location[1:]
        field = ".".join(str(part) for part in location)
        problem = plain(item, location)
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field = ".".join([*(str(part) for part in location), "type"])
        details.append({"field": field or "(document)", "error": problem})
    return details


def summary(errors: Sequence[Mapping[str, str]], limit: int = SUMMARY_ERRORS) -> str:
    """The first errors on one line: `handle_page: not a setting, did you mean handle_pages?; ...`."""
    parts = [f"{error.get('field')}: {error.get('error')}" for error in errors[:limit]]
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def plain(item: ErrorDetails, location: Sequence[str | int]) -> str:
    """One pydantic error in plain words (what is wrong, and how to fix it where that helps)."""
    kind = item["type"]
    context: dict[str, Any] = dict(item.get("ctx") or {})
    got = _shown(item.get("input"))
    if kind == "value_error":
        return str(context.get("error") or item["msg"].removeprefix("Value error, "))
    if kind == "extra_forbidden":
        return _unknown_key(location)
    if kind == "missing":
        return "is required"
    if kind == "union_tag_not_found":
        return f"is missing: say which call it is ({_either(CALLS)})"
    if kind == "union_tag_invalid":
        tag = str(context.get("tag"))
        return f"{tag!r} is not a call this connector takes{_did_you_mean(tag, CALLS)} (it takes {_either(CALLS)})"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        given = item.get("input")
        guess = _did_you_mean(given, options) if isinstance(given, str) else ""
        return f"must be one of {_either(options)}; got {got}{guess}"
    if kind == "json_invalid":
        return f"not valid JSON: {context.get('error', '')}".rstrip(": ")
    for kinds, sentence in _BY_TYPE:
        if kind in kinds:
            return f"{sentence}; got {got}" if got else sentence
    if kind in ("too_short", "string_too_short"):
        return _too_short(item, location)
    if kind == "string_pattern_mismatch":
        return (
            "must be a trait name, or a dotted path like address.city (no spaces, no leading or trailing dot); "
            f"got {got}"
        )
    return _rephrased(item["msg"]) + (f"; got {got}" if got else "")


_BY_TYPE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("bool_parsing", "bool_type"), "must be true or false"),
    (("list_type", "tuple_type", "set_type"), 'must be a list, e.g. [] or ["a", "b"]'),
    (("string_type",), "must be a string (text in double quotes)"),
    (("dict_type", "model_type", "model_attributes_type"), "must be a JSON object ({...})"),
    (("int_type", "int_parsing", "float_type", "float_parsing"), "must be a number"),
    (
        ("url_parsing", "url_type", "url_scheme", "url_syntax_violation"),
        "must be an http or https URL, e.g. https://api.segment.io",
    ),
)


def _too_short(item: ErrorDetails, location: Sequence[str | int]) -> str:
    last = location[-1] if location else ""
    if last in ("all", "any"):
        return f"'{last}' must list at least one rule"
    if item["type"] == "string_too_short":
        return "must not be empty"
    return _rephrased(item["msg"])


def _rephrased(message: str) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return re.sub(r"^Input should be", "must be", message)


def _unknown_key(location: Sequence[str | int]) -> str:
    """An unknown key: a setting, a key of a segment definition or of a rule, and what it may mean."""
    if not location:
        return "is not allowed here"
    name = str(location[-1])
    parents = [str(part) for part in location[:-1]]
    if not parents:
        from segment_connector.domain.models.settings import ConnectorSettings

        return _not_one_of(name, "a setting", list(ConnectorSettings.model_fields))
    if "where" in parents:
        return _not_one_of(name, "a key of a `where` rule", WHERE_KEYS)
    if parents[-1] == "count":
        return _not_one_of(name, "a key of a `count`", COUNT_KEYS)
    if any(part in ("rule", "all", "any", "not") for part in parents):
        return _not_one_of(name, "a key of a rule", RULE_KEYS)
    if len(parents) == 2 and parents[0] in DEFINITION_LISTS:
        return _not_one_of(name, "a key of a segment", DEFINITION_KEYS)
    if len(parents) == 2 and parents[0] == "computed_traits":
        return _not_one_of(name, "a key of a computed trait", COMPUTED_TRAIT_KEYS)
    return "is not allowed here: remove it"


def _not_one_of(name: str, what: str, options: Sequence[str]) -> str:
    """`is not a setting: did you mean handle_pages?`, else the names that are allowed."""
    guess = _did_you_mean(name, options)
    return f"is not {what}{guess}" if guess else f"is not {what}: use {_either(options)}, or remove it"


def did_you_mean(name: str, options: Collection[str]) -> str | None:
    """The option closest to a misspelled name (case ignored), if one is close enough."""
    import difflib  # only a misspelled name needs it: a cold start reading valid settings does not

    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _did_you_mean(name: Any, options: Collection[str]) -> str:
    guess = did_you_mean(name, options) if isinstance(name, str) and name else None
    return f": did you mean {guess}?" if guess and guess != name else ""


def _either(options: Sequence[str]) -> str:
    options = list(options)
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def _shown(value: Any) -> str:
    """A wrong value quoted back (short; the sender's own data)."""
    if isinstance(value, Mapping) and not value:
        return "{}"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= SHOWN_INPUT else text[: SHOWN_INPUT - 3] + "..."
