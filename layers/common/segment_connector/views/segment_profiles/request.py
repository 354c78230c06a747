"""A request of the Segment-compatible Profile API: its parts, its query parameters checked, its
errors in Segment's shape (`{"error": {"code", "message"}}`) and its opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segment_connector.domain.errors import ConnectorError
from segment_connector.domain.times import format_time, parse_time
from segment_connector.views.profiles import MAX_ANSWER_BYTES, answer_bytes

NOT_FOUND = "Profile was not found."
CURSOR_VERSION = 1
MAX_NAMES = 100  # names in `include`/`exclude` (DynamoDB takes 100 operands in an IN)


class ProfileApiError(ConnectorError):
    """An answer of this API that is not a 200, as Segment's Profile API shapes it."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def invalid(parameter: str, problem: str) -> ProfileApiError:
    return ProfileApiError(400, "validation_error", f"{parameter}: {problem}")


def not_found() -> ProfileApiError:
    return ProfileApiError(404, "not_found", NOT_FOUND)


@dataclass(frozen=True)
class ProfileRequest:
    """What the route hands over: the path's parts (as the HTTP API decoded them), the query
    parameters (a repeated one comma-joined), the Authorization header, the path and query as
    asked (the cursor's `url`) and the request's id."""

    space_id: str
    collection: str
    profile: str
    resource: str
    query: Mapping[str, str] = field(default_factory=dict)
    authorization: str | None = None
    url: str = ""
    request_id: str = ""

    def identity(self) -> tuple[str, str]:
        """(id_type, id) of `<id_type>:<id>`, checked against the collection."""
        id_type, sep, value = self.profile.partition(":")
        allowed = ("user_id", "anonymous_id", "email") if self.collection == "users" else ("group_id",)
        if not sep or id_type not in allowed:
            raise invalid("id_type", f"must be one of {', '.join(allowed)} for {self.collection} (as <id_type>:<id>)")
        if not value:
            raise invalid("id", "is empty")
        return id_type, value

    def text(self, name: str) -> str | None:
        value = self.query.get(name)
        return None if value is None or value == "" else value

    def limit(self, default: int, most: int) -> int:
        given = self.text("limit")
        if given is None:
            return default
        try:
            number = int(given)
        except ValueError:
            number = 0
        if not 1 <= number <= most:
            raise invalid("limit", f"must be a whole number from 1 to {most}")
        return number

    def names(self, parameter: str) -> frozenset[str] | None:
        """A comma-separated list (None: not given)."""
        given = self.text(parameter)
        if given is None:
            return None
        names = frozenset(part.strip() for part in given.split(",") if part.strip())
        if not names:
            return None
        if len(names) > MAX_NAMES:
            raise invalid(parameter, f"names at most {MAX_NAMES}")
        return names

    def flag(self, parameter: str) -> bool:
        given = (self.text(parameter) or "false").lower()
        if given not in ("true", "false"):
            raise invalid(parameter, "must be true or false")
        return given == "true"

    def choice(self, parameter: str, choices: tuple[str, ...], default: str) -> str:
        given = self.text(parameter) or default
        if given not in choices:
            raise invalid(parameter, f"must be one of {', '.join(choices)}")
        return given

    def time(self, parameter: str) -> str | None:
        """An ISO 8601 time as the table stores times (None: not given)."""
        given = self.text(parameter)
        if given is None:
            return None
        try:
            parsed = parse_time(given)
        except ValueError:
            parsed = None
        if parsed is None:
            raise invalid(parameter, "must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
        return format_time(parsed)


# -- cursors: opaque, bound to their resource, key-based -----------------------------------------


def encode_cursor(resource: str, key: Any) -> str:
    raw = json.dumps({"v": CURSOR_VERSION, "r": resource, "k": key}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def decode_cursor(request: ProfileRequest, check: Callable[[Any], bool]) -> Any:
    """The key of the `next` cursor (None: no cursor); 400 naming `next` unless it is a cursor
    this API gave for this resource and its key passes `check`."""
    given = request.text("next")
    if given is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(given + "=" * (-len(given) % 4)).decode("utf-8", "surrogatepass"))
    except (ValueError, binascii.Error):
        decoded = None
    if (
        isinstance(decoded, dict)
        and decoded.get("v") == CURSOR_VERSION
        and decoded.get("r") == request.resource
        and "k" in decoded
        and check(decoded["k"])
    ):
        return decoded["k"]
    raise invalid("next", f"is not a cursor of this API's {request.resource} (pass the `next` of a previous answer)")


def is_text(value: Any) -> bool:
    """A non-empty string DynamoDB can take (UTF-8: no lone surrogate)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_text_list(value: Any, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(is_text(part) for part in value)


# -- pages -----------------------------------------------------------------------------------------


def take[T](items: Iterable[T], limit: int, size: Callable[[T], int]) -> tuple[list[T], bool]:
    """At most `limit` items, fewer when the answer would pass MAX_ANSWER_BYTES (never none when
    there is one); and whether more follow."""
    taken: list[T] = []
    total = 0
    for item in items:
        grown = total + size(item) + 1
        if len(taken) == limit or (taken and grown > MAX_ANSWER_BYTES):
            return taken, True
        taken.append(item)
        total = grown
    return taken, False


def sized(value: Any) -> int:
    return answer_bytes(value)


def cursor(request: ProfileRequest, limit: int, following: str | None) -> dict[str, Any]:
    """The answer's `cursor`: `next` is "" on the last page, as Segment answers."""
    return {"url": request.url, "has_more": following is not None, "next": following or "", "limit": limit}
