"""What reached the Segment sink, read back through the soak's markers (soak_user/soak_seq/soak_mid)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

EVENT_TYPES = ("track", "page", "screen")
Position = tuple[int, int]  # (request number at the sink, index in its batch)


@dataclass(frozen=True)
class Marked:
    """A delivered message that carries the soak's markers."""

    message_id: str  # the connector's outbound messageId
    type: str
    user: str
    seq: int
    mid: str  # the inbound messageId it came from (for identify: the latest identify's)


@dataclass
class Deliveries:
    accepted_ids: set[str] = field(default_factory=set)
    refused_ids: set[str] = field(default_factory=set)
    first_accepted: dict[str, Position] = field(default_factory=dict)
    marked: dict[str, Marked] = field(default_factory=dict)  # outbound messageId -> markers
    ids_by_event: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # inbound mid -> ids

    def accepted_events(self) -> set[str]:
        """Inbound messageIds of events accepted by the sink under at least one outbound id."""
        return {mid for mid, ids in self.ids_by_event.items() if ids & self.accepted_ids}

    def user_sequences(self) -> dict[str, list[tuple[Position, Marked]]]:
        """Each user's marked messages in the order the sink first accepted them."""
        sequences: dict[str, list[tuple[Position, Marked]]] = defaultdict(list)
        for message_id, marked in self.marked.items():
            if message_id in self.first_accepted:
                sequences[marked.user].append((self.first_accepted[message_id], marked))
        for sequence in sequences.values():
            sequence.sort(key=lambda item: item[0])
        return sequences

    def order_violations(self) -> dict[str, list[int]]:
        """Users whose delivered identify/track/page/screen calls went out of their stored order."""
        violations = {}
        for user, sequence in self.user_sequences().items():
            seqs = [marked.seq for _, marked in sequence]
            if any(later < earlier for earlier, later in pairwise(seqs)):
                violations[user] = seqs
        return violations

    def last_identify_seq(self) -> dict[str, int]:
        """Per user, soak_seq of the identify the sink accepted last (what Segment now holds)."""
        last: dict[str, int] = {}
        for user, sequence in self.user_sequences().items():
            for _, marked in sequence:
                if marked.type == "identify":
                    last[user] = marked.seq
        return last


def analyse(entries: Iterable[tuple[int, int, dict[str, Any]]]) -> Deliveries:
    """`entries`: (request number, status, message) in arrival order, as FlakySink.deliveries() gives."""
    result = Deliveries()
    last_request = -1
    index = 0
    for number, status, message in entries:
        index = index + 1 if number == last_request else 0
        last_request = number
        message_id = message.get("messageId")
        if not isinstance(message_id, str):
            continue
        if 200 <= status < 300:
            result.accepted_ids.add(message_id)
            result.first_accepted.setdefault(message_id, (number, index))
        else:
            result.refused_ids.add(message_id)
        marked = _markers(message_id, message)
        if marked is not None:
            result.marked.setdefault(message_id, marked)
            if marked.type in EVENT_TYPES:
                result.ids_by_event[marked.mid].add(message_id)
    return result


def _markers(message_id: str, message: dict[str, Any]) -> Marked | None:
    kind = message.get("type")
    holder = message.get("traits") if kind == "identify" else message.get("properties")
    if not isinstance(holder, dict):
        return None
    user, seq, mid = holder.get("soak_user"), holder.get("soak_seq"), holder.get("soak_mid")
    if not (isinstance(user, str) and isinstance(seq, int) and isinstance(mid, str)):
        return None
    return Marked(message_id, str(kind), user, seq, mid)
