"""What became of each message of a delivery: stored, a duplicate, unchanged, ignored (and why),
or rejected; and the delivery's answer that counts them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from segment_connector.domain.errors import BadRequest, PayloadTooLarge
from segment_connector.domain.storable import clean_text


@dataclass(frozen=True)
class Ignored:
    """A message acknowledged but not stored, and why (plain words: the key of `ignored_reasons`)."""

    reason: str


def setting_off(call: str, setting: str) -> Ignored:
    return Ignored(f"{call} calls are not stored: {setting} is off")


def names_nobody(call: str) -> Ignored:
    """ignore_segment_userId is on and the call names no other identity."""
    others = "an anonymousId or a valid traits.email" if call == "identify" else "an anonymousId"
    return Ignored(f"{call} calls without {others} are not stored: ignore_segment_userId is on")


ALIAS_IGNORED = Ignored("alias calls are not stored: ignore_segment_userId is on")
ALIAS_TO_ITSELF = Ignored("alias calls whose previousId is the userId are not stored: they link nothing")
Outcome = Literal["stored", "duplicate", "unchanged"] | Ignored
# (index in the body, the outcome (or the message when it failed), the failure if any)
Applied = tuple[int, Any, "BadRequest | None"]


@dataclass
class IngestResult:
    counts: dict[str, int] = field(default_factory=lambda: {"stored": 0, "duplicate": 0, "unchanged": 0, "ignored": 0})
    ignored_reasons: dict[str, int] = field(default_factory=dict)  # why each ignored message was not stored
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        if isinstance(outcome, Ignored):
            self.counts["ignored"] += 1
            self.ignored_reasons[outcome.reason] = self.ignored_reasons.get(outcome.reason, 0) + 1
        else:
            self.counts[outcome] += 1

    def reject(self, index: int, raw: Any, error: BadRequest | PayloadTooLarge) -> None:
        message_id = (raw.get("messageId") or raw.get("message_id")) if isinstance(raw, dict) else None
        if not isinstance(message_id, (str, int)) or isinstance(message_id, bool):
            message_id = None  # echo an id, never a structure the sender built
        elif isinstance(message_id, str):
            message_id = clean_text(message_id[:200])
        entry: dict[str, Any] = {"index": index, "messageId": message_id, "error": error.message}
        if error.details:
            entry["details"] = error.details
        self.rejected.append(entry)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": True, **self.counts, "ignored_reasons": dict(self.ignored_reasons)}
        if self.rejected:
            body["rejected"] = self.rejected
        return body
