"""Inbound: a delivery from Segment (or a Tracking API call) -> validated, deduplicated writes.

The flow: delivery.py reads and validates the messages, scheduler.py orders the writes,
ingestor.py applies each message to the store, outcomes.py counts what became of each."""

from __future__ import annotations

from typing import Any

from segment_connector.domain.errors import BadRequest, PayloadTooLarge
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.inbound import scheduler
from segment_connector.inbound.delivery import Delivery, Secrets, raw_messages, validate
from segment_connector.inbound.ingestor import Ingestor
from segment_connector.inbound.outcomes import IngestResult
from segment_connector.store.profile_store import ProfileStore


def receive(
    delivery: Delivery, settings: ConnectorSettings, secrets: Secrets, store: ProfileStore, writers: int = 1
) -> IngestResult:
    """Authenticate, validate and store a delivery. Raises ConnectorError subclasses for the HTTP answer."""
    messages, single = raw_messages(delivery, secrets)
    result = IngestResult()
    valid: list[tuple[int, Any]] = []
    for index, raw in enumerate(messages):
        try:
            valid.append((index, validate(raw)))
        except (BadRequest, PayloadTooLarge) as error:
            if single:
                raise
            result.reject(index, raw, error)

    ingestor = Ingestor(store, settings, delivery.source)
    for index, outcome, failure in sorted(scheduler.write(ingestor, valid, writers, single), key=lambda item: item[0]):
        if failure is None:
            result.count(outcome)
        else:
            result.reject(index, messages[index], failure)
    return result
