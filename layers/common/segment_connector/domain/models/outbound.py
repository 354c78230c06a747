"""What the connector sends to Segment: identify, group, track, page and screen calls.

Every call carries the loop-guard library in `context.library` and opts out of the
`Hull`/`segment-connector` integrations, so that a call coming back from Segment is dropped by
the inbound side. Dumped with camelCase aliases and without None fields (`payload()`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from segment_connector import LIBRARY_NAME, OPT_OUT_INTEGRATIONS, __version__

MAX_MESSAGE_ID_LENGTH = 99


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)


class Library(_Camel):
    name: str = LIBRARY_NAME
    version: str = __version__


class Page(_Camel):
    url: str | None = None
    referrer: str | None = None
    path: str | None = None
    title: str | None = None
    search: str | None = None


class OutboundContext(_Camel):
    library: Library = Field(default_factory=Library)
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    timezone: str | None = None
    page: Page | None = None


def _opted_out() -> dict[str, bool]:
    return dict.fromkeys(OPT_OUT_INTEGRATIONS, False)


class _Call(_Camel):
    message_id: str = Field(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH)
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: str | None = None
    context: OutboundContext = Field(default_factory=OutboundContext)
    integrations: dict[str, bool] = Field(default_factory=_opted_out)

    @model_validator(mode="after")
    def _needs_identity(self) -> _Call:
        if not self.user_id and not self.anonymous_id:
            raise ValueError("userId or anonymousId is required")
        return self

    def payload(self) -> dict[str, Any]:
        """The JSON object Segment receives."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class IdentifyCall(_Call):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any]


class GroupCall(_Call):
    type: Literal["group"] = "group"
    group_id: str = Field(min_length=1)
    traits: dict[str, Any]


class TrackCall(_Call):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1)
    properties: dict[str, Any] = Field(default_factory=dict)


class PageCall(_Call):
    type: Literal["page"] = "page"
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class ScreenCall(_Call):
    type: Literal["screen"] = "screen"
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


OutboundMessage = Annotated[IdentifyCall | GroupCall | TrackCall | PageCall | ScreenCall, Field(discriminator="type")]
