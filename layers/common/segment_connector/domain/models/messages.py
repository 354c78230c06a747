"""Inbound Segment calls (request models), one per call type, discriminated by `type`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from segment_connector import LIBRARY_NAME, OPT_OUT_INTEGRATIONS

# The times live in a module without models: modules that only format or parse a time (outbound,
# resync, the store) do not build the message models at import. Re-exported here.
from segment_connector.domain.times import EARLIEST as EARLIEST
from segment_connector.domain.times import MILLISECONDS_FROM as MILLISECONDS_FROM
from segment_connector.domain.times import format_time as format_time
from segment_connector.domain.times import parse_time as parse_time


def _alias(camel: str, snake: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(camel, snake))


MAX_ID_BYTES = 1024  # an id becomes part of a DynamoDB key (2,048 bytes at most)


def _id_string(value: Any) -> Any:
    """Segment ids are strings, but some libraries send numbers; empty means absent.

    Ids must be exact: one holding a lone UTF-16 surrogate (not storable as UTF-8) is refused,
    never repaired."""
    if isinstance(value, bool):
        raise ValueError("must be a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a string or a finite number")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("holds a lone UTF-16 surrogate (not valid unicode)") from None
        if size > MAX_ID_BYTES:
            raise ValueError(f"must be at most {MAX_ID_BYTES} bytes")
        return value.strip() or None
    return value


# A Segment id: a string (numbers are accepted and kept as text); blank means absent.
Id = Annotated[str, BeforeValidator(_id_string)]
OptionalId = Annotated[str | None, BeforeValidator(_id_string)]
# An object field that may also arrive as null (then empty).
JsonObject = Annotated[dict[str, Any], BeforeValidator(lambda value: {} if value is None else value)]


# A time as sent (ISO string or epoch number), parsed to an aware UTC datetime.
Time = Annotated[datetime | None, BeforeValidator(parse_time)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=False, defer_build=True)

    message_id: OptionalId = _alias("messageId", "message_id")
    user_id: OptionalId = _alias("userId", "user_id")
    anonymous_id: OptionalId = _alias("anonymousId", "anonymous_id")
    timestamp: Time = None
    original_timestamp: Time = _alias("originalTimestamp", "original_timestamp")
    received_at: Time = _alias("receivedAt", "received_at")
    sent_at: Time = _alias("sentAt", "sent_at")
    context: JsonObject = Field(default_factory=dict)
    integrations: JsonObject = Field(default_factory=dict)

    @field_validator("message_id")
    @classmethod
    def _message_id_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) > 200:
            raise ValueError("must be at most 200 characters")
        return value

    def event_time(self, now: datetime) -> datetime:
        """When it happened, never later than its receipt (README "What is stored").

        The receipt is `receivedAt` (Segment's) when given, else `now` (the connector's), never
        later than `now`. A message Segment received carries its `timestamp` already corrected for
        the device's clock: taken as is; without one, Segment's rule `receivedAt - (sentAt -
        originalTimestamp)`. A message straight from a client (no `receivedAt`) with `sentAt` gets
        the same correction with the connector's receipt: `now - (sentAt - timestamp)`. Then a time
        later than the receipt (a device clock ahead, a sender's mistake) counts as the receipt, so
        it cannot win every later trait."""
        receipt = min(self.received_at or now, now)
        if self.received_at is not None and self.timestamp is not None:
            at = self.timestamp  # Segment corrected it
        else:
            device = self.timestamp or self.original_timestamp
            at = device if device is not None else receipt
            if device is not None and self.sent_at is not None:
                try:
                    corrected = receipt - (self.sent_at - device)
                except OverflowError:
                    corrected = device  # a sentAt thousands of years off: no correction
                at = corrected if corrected >= EARLIEST else device
        return min(at, receipt)

    def sent_time(self) -> datetime | None:
        """The time the message itself gives (`timestamp`, else `originalTimestamp`)."""
        return self.timestamp or self.original_timestamp

    def is_ignored(self) -> bool:
        """Opted out of this connector, or sent by this connector itself (loop guard)."""
        return self.ignored_reason() is not None

    def ignored_reason(self) -> str | None:
        """Why the message is not stored whatever the settings (plain words), or None."""
        for key in OPT_OUT_INTEGRATIONS:
            if self.integrations.get(key) is False:
                return f"messages that opt out of this connector are not stored: integrations.{key} is false"
        library = self.context.get("library")
        if isinstance(library, dict) and library.get("name") == LIBRARY_NAME:
            return (
                f"messages sent by this connector are not stored again: context.library.name is {LIBRARY_NAME} "
                "(the loop guard)"
            )
        return None


class _UserMessage(_Message):
    @model_validator(mode="after")
    def _needs_identity(self) -> _UserMessage:
        if not self.user_id and not self.anonymous_id:
            raise ValueError("userId or anonymousId is required")
        return self


class IdentifyMessage(_UserMessage):
    type: Literal["identify"]
    traits: JsonObject = Field(default_factory=dict)


class TrackMessage(_UserMessage):
    type: Literal["track"]
    event: str = Field(min_length=1)
    properties: JsonObject = Field(default_factory=dict)


class PageMessage(_UserMessage):
    type: Literal["page"]
    name: str | None = None
    category: str | None = None
    properties: JsonObject = Field(default_factory=dict)


class ScreenMessage(PageMessage):
    type: Literal["screen"]  # type: ignore[assignment]


class GroupMessage(_UserMessage):
    type: Literal["group"]
    group_id: Id = Field(validation_alias=AliasChoices("groupId", "group_id"))
    traits: JsonObject = Field(default_factory=dict)


class AliasMessage(_Message):
    type: Literal["alias"]
    previous_id: Id = Field(validation_alias=AliasChoices("previousId", "previous_id"))
    user_id: Id = Field(validation_alias=AliasChoices("userId", "user_id"))


class DeleteMessage(_UserMessage):
    type: Literal["delete"]


SegmentMessage = Annotated[
    IdentifyMessage | TrackMessage | PageMessage | ScreenMessage | GroupMessage | AliasMessage | DeleteMessage,
    Field(discriminator="type"),
]
MESSAGE_ADAPTER: TypeAdapter[Any] = TypeAdapter(SegmentMessage, config=ConfigDict(defer_build=True))
