"""The connector's settings: one JSON document (SSM String `<prefix>/settings`) for both sides."""

from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from segment_connector.domain.models.event_rules import (
    DEFAULT_RETENTION_DAYS,
    MAX_RETENTION_DAYS,
    ComputedTrait,
    EventFilter,
    validate_computed_traits,
)
from segment_connector.domain.models.segment_rules import AccountSegments, UserSegments

if TYPE_CHECKING:
    from segment_connector.domain.activity import ActivitySpec

ALL = "ALL"
# Segment's Tracking API endpoints: the only values of segment_api_url. Outbound sends the write key
# (Basic auth) and user data there, so any other URL (a proxy, the local sink) comes from the
# deployment (the SegmentApiUrl template parameter: SEGMENT_API_URL), never from the settings.
SEGMENT_API_URLS = ("https://api.segment.io", "https://events.eu1.segmentapis.com")
TraitPath = Annotated[str, Field(min_length=1, pattern=r"^[^.\s][^\s]*[^.\s]$|^[^.\s]$")]


def unknown_filter_names(names: list[str], definitions: list[Any]) -> list[str]:
    """The names of a filter that no definition defines (ALL is always known)."""
    known = {definition.name for definition in definitions}
    return [name for name in names if name != ALL and name not in known]


class ConnectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # Inbound
    handle_pages: bool = True
    handle_screens: bool = True
    handle_accounts: bool = False
    ignore_segment_userId: bool = False  # noqa: N815 - the name Hull's connector used

    # Events: how long they are kept (TTL), what rules and computed traits may look back on
    event_retention_days: Annotated[StrictInt, Field(ge=1, le=MAX_RETENTION_DAYS)] = DEFAULT_RETENTION_DAYS

    # Segment definitions (computed membership) and computed traits (from the user's events)
    segments: UserSegments = Field(default_factory=list)
    account_segments: AccountSegments = Field(default_factory=list)
    computed_traits: Annotated[list[ComputedTrait], AfterValidator(validate_computed_traits)] = Field(
        default_factory=list
    )

    # Outbound
    synchronized_segments: list[str] = Field(default_factory=list)
    synchronized_account_segments: list[str] = Field(default_factory=lambda: [ALL])
    synchronized_properties: list[TraitPath] = Field(default_factory=list)
    synchronized_account_properties: list[TraitPath] = Field(default_factory=list)
    send_events: list[str] = Field(default_factory=lambda: [ALL])
    forward_events: bool = False
    segment_api_url: str = SEGMENT_API_URLS[0]

    @field_validator("segment_api_url", mode="before")
    @classmethod
    def _segment_endpoint(cls, value: Any) -> str:
        """One of Segment's endpoints (a trailing slash is accepted); anything else is refused."""
        url = value.rstrip("/") if isinstance(value, str) else value
        if url not in SEGMENT_API_URLS:
            raise ValueError(
                f"must be one of Segment's endpoints, {SEGMENT_API_URLS[0]} or {SEGMENT_API_URLS[1]} (EU "
                "workspaces); another URL (a proxy, a local sink) is set with the deployment's SegmentApiUrl "
                "parameter, never in the settings"
            )
        return str(url)

    @field_validator("synchronized_segments", "synchronized_account_segments")
    @classmethod
    def _filter_names_known(cls, names: list[str], info: ValidationInfo) -> list[str]:
        """A filter names defined segments (or ALL); the error is the filter's own field."""
        definitions = "segments" if info.field_name == "synchronized_segments" else "account_segments"
        if definitions not in info.data:  # the definitions are invalid themselves: reported there
            return names
        unknown = unknown_filter_names(names, info.data[definitions])
        if unknown:
            raise ValueError(
                f"{info.field_name} names segments that are not defined in `{definitions}`: {', '.join(unknown)}"
            )
        return names

    @field_validator("segments", "computed_traits")
    @classmethod
    def _windows_within_retention(cls, items: list[Any], info: ValidationInfo) -> list[Any]:
        """A window cannot look further back than the events are kept."""
        retention = info.data.get("event_retention_days", DEFAULT_RETENTION_DAYS)
        for i, item in enumerate(items):
            windows = (
                [(f"{loc}.within_days", leaf.within_days) for loc, leaf in item.rule.leaves()]
                if info.field_name == "segments"
                else [("within_days", item.within_days)]
            )
            for where, days in windows:
                if days is not None and days > retention:
                    raise ValueError(
                        f"item {i} ({item.name}): {where} is {days}, more than event_retention_days ({retention}):"
                        " older events are no longer stored"
                    )
        return items

    @property
    def api_url(self) -> str:
        return self.segment_api_url

    def sends_all_users(self) -> bool:
        return ALL in self.synchronized_segments

    def sends_account(self, segments: list[str]) -> bool:
        """The account filter: whether an account in these account segments is sent (group calls)."""
        return ALL in self.synchronized_account_segments or any(
            name in self.synchronized_account_segments for name in segments
        )

    def sends_event(self, name: str) -> bool:
        return ALL in self.send_events or name in self.send_events

    def segments_use_account_traits(self) -> bool:
        """Whether any user segment reads the linked account's traits (`account.<trait>`)."""
        return any(
            (leaf.trait or "").startswith("account.")
            for definition in self.segments
            for _, leaf in definition.rule.leaves()
        )

    def event_filters(self) -> list[EventFilter]:
        """Every event filter the user segments and computed traits read."""
        leaves = [f for definition in self.segments for f in definition.rule.event_filters()]
        return leaves + [trait.event_filter() for trait in self.computed_traits]

    def reads_events(self) -> bool:
        """Whether a user's segments or traits depend on the user's events."""
        return bool(self.computed_traits) or any(definition.rule.event_filters() for definition in self.segments)

    @cached_property
    def activity_spec(self) -> "ActivitySpec":
        """What the rules and computed traits read of events (the `facts` events keep)."""
        from segment_connector.domain.activity import ActivitySpec

        extra: dict[str, list[str]] = {}
        for trait in self.computed_traits:
            if trait.property:
                extra.setdefault(trait.event, []).append(trait.property)
        return ActivitySpec.of(self.event_filters(), extra)
