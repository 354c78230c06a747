"""Status warnings: what in the settings and the keys keeps the connector from doing its job.

Computed from the RAW settings document (a dict; the ConnectorSettings defaults fill in missing
keys) and from which keys exist, so that they also explain a document the model refuses. Pure: no
AWS call, no key value, only whether a key exists.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from segment_connector import LIBRARY_NAME, OPT_OUT_INTEGRATIONS
from segment_connector.domain.models.settings import ALL
from segment_connector.ops.settings_document import with_defaults

CODES = (
    "no_write_key",
    "no_users_in_filter",
    "nothing_to_send",
    "unknown_segment",
    "computed_trait_shadows",
    "forward_events_loop",
    "forward_events_off",
    "no_api_key",
)
_TRUE = {"1", "on", "t", "true", "y", "yes"}  # what pydantic reads as true (lax mode)


class StatusWarning(dict[str, str]):
    """`{"code", "message"}`: a plain dict (JSON as it is), with `.code` and `.message` too."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code=code, message=message)

    @property
    def code(self) -> str:
        return self["code"]

    @property
    def message(self) -> str:
        return self["message"]


Warning = StatusWarning  # noqa: A001 - the name the contract uses; the builtin is not used here


def status_warnings(
    document: Mapping[str, Any],
    *,
    has_write_key: bool,
    has_api_key: bool,
    prefix: str = "<prefix>",
    received_traits: Collection[str] = (),
) -> list[StatusWarning]:
    """The warnings for a settings document (missing keys take their defaults), in CODES order.

    `prefix` (the SSM parameter prefix) only makes the messages name the parameters exactly.
    `received_traits`: trait names users were seen sending (the caller's sample of profiles).
    """
    settings = with_defaults(document if isinstance(document, Mapping) else {})
    segments = _definition_names(settings["segments"])
    account_segments = _definition_names(settings["account_segments"])
    user_filter = _names(settings["synchronized_segments"])
    account_filter = _names(settings["synchronized_account_segments"])
    warnings: list[StatusWarning] = []

    if not has_write_key and (segments or account_segments or user_filter):
        warnings.append(
            StatusWarning(
                "no_write_key",
                (
                    "Segments or a User Filter are set but there is no write key, so nothing can be sent to Segment. "
                    f"Store the source's write key as {prefix.rstrip('/')}/write-key: "
                    "segment-connector keys set write-key."
                ),
            )
        )
    if user_filter_sends_nobody(settings):
        warnings.append(
            StatusWarning(
                "no_users_in_filter",
                (
                    "The User Filter sends nobody: synchronized_segments is [], so no user and none of their "
                    "events is sent to Segment. "
                    'List the segments to send in synchronized_segments, or ["ALL"] for everyone.'
                ),
            )
        )
    if has_write_key and not _names(settings["synchronized_properties"]) and not _names(settings["send_events"]):
        warnings.append(
            StatusWarning(
                "nothing_to_send",
                (
                    "No attributes (synchronized_properties is empty) and no events (send_events is empty) are sent, "
                    "so users reach Segment with their hull_segments only. "
                    'Add traits to synchronized_properties, or event names (or "ALL") to send_events.'
                ),
            )
        )
    for field, names, known, definitions in (
        ("synchronized_segments", user_filter, segments, "segments"),
        ("synchronized_account_segments", account_filter, account_segments, "account_segments"),
    ):
        for name in dict.fromkeys(names):
            if name != ALL and name not in known:
                warnings.append(
                    StatusWarning(
                        "unknown_segment",
                        (
                            f"{field} names the segment {name!r}, which no definition in `{definitions}` defines "
                            "(the settings are refused until it is fixed). "
                            f"Define {name!r} in `{definitions}`, or remove it from {field}."
                        ),
                    )
                )
    warnings += computed_trait_shadows(settings, received_traits)
    if _is_true(settings["forward_events"]):
        opt_out = json.dumps(dict.fromkeys(OPT_OUT_INTEGRATIONS, False))
        warnings.append(
            StatusWarning(
                "forward_events_loop",
                (
                    "forward_events is on: events that came from Segment are sent back to Segment, "
                    "and if a source of the "
                    "same workspace feeds this destination they loop. "
                    f'The guard: messages sent by the connector carry context.library.name "{LIBRARY_NAME}" and '
                    f"integrations {opt_out}, and inbound ignores them; keep those fields intact on the way "
                    "(no Segment function stripping them), or turn forward_events off."
                ),
            )
        )
    elif events_not_forwarded(settings):
        warnings.append(
            StatusWarning(
                "forward_events_off",
                (
                    "forward_events is off: the track, page and screen calls that came from Segment are stored "
                    "but not sent back to Segment (events of the Tracking API and the connector's own "
                    "Entered/Left Segment events still are). "
                    "Turn forward_events on to send them back too, unless a source of the same workspace feeds "
                    "this destination (they would loop)."
                ),
            )
        )
    if not has_api_key:
        warnings.append(
            StatusWarning(
                "no_api_key",
                (
                    f"The inbound API key parameter {prefix.rstrip('/')}/api-key does not exist, "
                    "so Segment's deliveries "
                    "are refused (500 not_configured, and Segment retries them). "
                    "Create it: segment-connector keys set api-key."
                ),
            )
        )
    return warnings


def computed_trait_shadows(document: Mapping[str, Any], received_traits: Collection[str]) -> list[StatusWarning]:
    """One warning per computed trait whose name users also send as a trait: the computed value
    replaces the received one everywhere a user's traits are seen."""
    received = set(received_traits)
    return [
        StatusWarning(
            "computed_trait_shadows",
            (
                f"The computed trait {name!r} shadows a trait of the same name that users send: the computed value "
                "replaces the received one in the Profile API, segment rules, synchronized_properties, the console "
                f"and `users get` (the received value is kept, unseen). Rename the computed trait in computed_traits "
                f"to keep both, or stop sending {name!r}."
            ),
        )
        for name in dict.fromkeys(computed_trait_names(document))
        if name in received
    ]


def computed_trait_names(document: Mapping[str, Any]) -> list[str]:
    """The names of a settings document's computed traits (raw or parsed; [] when missing)."""
    return _definition_names(document.get("computed_traits", []))


def user_filter_sends_nobody(document: Mapping[str, Any]) -> bool:
    """The User Filter (synchronized_segments) is [], or missing (its default): no user is sent."""
    value = document.get("synchronized_segments", [])
    return isinstance(value, list) and not value


def events_not_forwarded(document: Mapping[str, Any]) -> bool:
    """forward_events is off (or missing) while send_events names events: Segment's own are kept back."""
    send_events = document.get("send_events", [ALL])
    return not _is_true(document.get("forward_events", False)) and bool(_names(send_events))


def _names(value: Any) -> list[str]:
    """The strings of a list (anything else counts as empty: the model reports it as an error)."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _definition_names(value: Any) -> list[str]:
    """Names of segment definitions (`[{"name": ...}]`), raw or already parsed."""
    if not isinstance(value, list):
        return []
    names = []
    for definition in value:
        name = definition.get("name") if isinstance(definition, Mapping) else getattr(definition, "name", None)
        if isinstance(name, str):
            names.append(name)
    return names


def _is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in _TRUE
