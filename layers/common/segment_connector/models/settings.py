"""The connector's settings: one JSON document (SSM String `<prefix>/settings`) for both sides."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from segment_connector.models.segment_rules import AccountSegments, UserSegments

ALL = "ALL"
TraitPath = Annotated[str, Field(min_length=1, pattern=r"^[^.\s][^\s]*[^.\s]$|^[^.\s]$")]


class ConnectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Inbound
    handle_pages: bool = True
    handle_screens: bool = True
    handle_accounts: bool = False
    ignore_segment_userId: bool = False  # noqa: N815 - the name Hull's connector used

    # Segment definitions (computed membership)
    segments: UserSegments = Field(default_factory=list)
    account_segments: AccountSegments = Field(default_factory=list)

    # Outbound
    synchronized_segments: list[str] = Field(default_factory=list)
    synchronized_properties: list[TraitPath] = Field(default_factory=list)
    synchronized_account_properties: list[TraitPath] = Field(default_factory=list)
    send_events: list[str] = Field(default_factory=lambda: [ALL])
    forward_events: bool = False
    segment_api_url: HttpUrl = HttpUrl("https://api.segment.io")

    @model_validator(mode="after")
    def _filter_names_known(self) -> ConnectorSettings:
        known = {definition.name for definition in self.segments}
        unknown = [name for name in self.synchronized_segments if name != ALL and name not in known]
        if unknown:
            raise ValueError(
                f"synchronized_segments names segments that are not defined in `segments`: {', '.join(unknown)}"
            )
        return self

    @property
    def api_url(self) -> str:
        return str(self.segment_api_url).rstrip("/")

    def sends_all_users(self) -> bool:
        return ALL in self.synchronized_segments

    def sends_event(self, name: str) -> bool:
        return ALL in self.send_events or name in self.send_events

    def segments_use_account_traits(self) -> bool:
        """Whether any user segment reads the linked account's traits (`account.<trait>`)."""
        return any((leaf.trait or "").startswith("account.")
                   for definition in self.segments for _, leaf in definition.rule.leaves())
