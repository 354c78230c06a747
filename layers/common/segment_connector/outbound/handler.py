"""Outbound: DynamoDB stream records -> Segment calls (filter, whitelists, change detection).

`handle()` is the one entry point of OutboundFunction. A stream batch is processed in three
steps: plan every record (planner.py: reads shared by the whole batch, one profiles_at, one
accounts read), record the Entered/Left Segment events (announce.py), then deliver (delivery.py)
and report the records that Lambda must retry (ReportBatchItemFailures). `{"action": "replay"}`
starts a replay of the dead letters, `{"action": "replay_work"}` works it (replay.py);
`{"action": "recompute"}` (a schedule) re-evaluates the users whose windows ended (recompute.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from segment_connector.domain.errors import SettingsInvalid
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.outbound import deletion, replay
from segment_connector.outbound.announce import announce
from segment_connector.outbound.planner import Planner
from segment_connector.runtime import config
from segment_connector.segment_api.delivery import ClientPool, Outcome, bare_plan, deliver, settle
from segment_connector.store.profile_store import ProfileStore

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

log = logging.getLogger(__name__)


class RecordFailed(Exception):
    """Raised for a record that Lambda must deliver again (reported in batchItemFailures)."""


@dataclass
class Result:
    response: dict[str, Any]
    metrics: dict[str, int]


def handle(event: Any, context: Any, store: ProfileStore, clients: ClientPool, now: datetime | None = None) -> Result:
    """OutboundFunction: a DynamoDB stream batch, or {"action": "replay"}."""
    now = now or datetime.now(UTC)
    if isinstance(event, Mapping) and event.get("action") == "replay":
        return Result(replay.start(store, context, _replay_limit(event.get("limit"))), {})
    if isinstance(event, Mapping) and event.get("action") == "replay_work":
        answer, replayed = replay.work(event, context, store, clients)
        return Result(answer, {"DeadLettersReplayed": replayed} if replayed else {})
    if isinstance(event, Mapping) and event.get("action") == "recompute":
        return _recompute(store, clients, context, now)
    records = list(event.get("Records") or []) if isinstance(event, Mapping) else []
    # GDPR deletions in progress: one step each, nothing sent to Segment for them (deletion.py)
    records, tombstones = deletion.split(records)
    if tombstones:
        failed_steps, steps = deletion.work(tombstones, context, store)
        if not records:
            return Result(_respond(event, context, failed_steps), {"DeletionSteps": steps} if steps else {})
    if not records:
        return Result({"batchItemFailures": []}, {})
    metrics: Counter[str] = Counter(RecordsProcessed=len(records))
    try:
        settings = config.load_settings()
    except SettingsInvalid as error:
        log.error(
            "outbound: %s; the %d records are retried, then kept whole as dead letters (a replay sends them "
            "once the settings are fixed): %s",
            error.message,
            len(records),
            error.details,
        )
        failed = _unplanned(records, f"settings invalid: {error.message}", store, now, metrics)
    else:
        failed = _process(records, settings, store, clients, context, now, metrics)
    if tombstones:
        failed |= failed_steps
        metrics["DeletionSteps"] += steps
    metrics["RecordsFailed"] += len(failed)
    return Result(_respond(event, context, failed), {name: value for name, value in metrics.items() if value})


def _process(
    records: list[dict[str, Any]],
    settings: ConnectorSettings,
    store: ProfileStore,
    clients: ClientPool,
    context: Any,
    now: datetime,
    metrics: Counter[str],
) -> dict[str, str]:
    try:
        write_key = config.get_secret("write-key")
        planner = Planner(settings, store, now)
        plans = planner.plan(records)
    except Exception as error:
        log.exception(
            "outbound: the batch could not be planned; the %d records are retried, then kept whole as dead letters",
            len(records),
        )
        return _unplanned(records, f"batch not planned: {error!r}", store, now, metrics)
    metrics["SegmentEventsRecorded"] += announce(store, planner.histories, plans)
    entries = [entry for plan in plans for entry in plan.entries]
    outcome = Outcome()
    if entries and not write_key:
        if not clients.missing_write_key_reported:
            clients.missing_write_key_reported = True
            log.warning(
                "outbound: no write key (SecureString %s): nothing is sent to Segment",
                config.parameter_name("write-key"),
            )
    elif entries and write_key:  # (entries without a write key: the branch above)
        client = clients.client(write_key, config.segment_api_url(settings))
        outcome = deliver(entries, client, clients.deadline(context))
    settlement = settle(plans, outcome, store, now)
    metrics["MessagesSent"] += len(outcome.delivered)
    metrics["MessagesDeadLettered"] += settlement.dead_lettered
    if settlement.failed:
        first, reason = next(iter(settlement.failed.items()))
        log.warning(
            "outbound: %d of %d records failed and will be retried; first reason: %s",
            len(settlement.failed),
            len(records),
            reason,
            extra={"sequence_number": first},
        )
    return settlement.failed


def _recompute(store: ProfileStore, clients: ClientPool, context: Any, now: datetime) -> Result:
    """{"action": "recompute"}: the users whose windows ended (recompute.py); invalid settings wait."""
    from segment_connector.outbound import recompute  # only the schedule's invocations need it

    try:
        settings = config.load_settings()
    except SettingsInvalid as error:
        log.error("recompute: %s: the due users wait for valid settings", error.message)
        return Result({"due": None, "error": error.message}, {})
    answer, metrics = recompute.run(settings, store, clients, context, now)
    return Result(answer, {name: value for name, value in metrics.items() if value})


def _unplanned(
    records: list[dict[str, Any]], reason: str, store: ProfileStore, now: datetime, metrics: Counter[str]
) -> dict[str, str]:
    """Records that could not be planned: each attempt is counted and, past the attempts or the
    age, the record is kept whole as a dead letter (its images), before the stream gives up on it."""
    settlement = settle([bare_plan(record, reason) for record in records], Outcome(), store, now)
    metrics["MessagesDeadLettered"] += settlement.dead_lettered
    return settlement.failed


def _respond(event: Mapping[str, Any], context: Any, failed: dict[str, str]) -> dict[str, Any]:
    # Imported by the first stream batch, not at a cold start: the batch utility imports
    # Powertools' parser models (DynamoDB, Kinesis, SQS records: pydantic models built at import,
    # about half of what OutboundFunction imports beyond the floor), which a replay never uses.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)

    def record_handler(record: DynamoDBRecord) -> None:
        reason = failed.get((record.dynamodb.sequence_number if record.dynamodb else None) or "")
        if reason:
            raise RecordFailed(reason)

    return dict(
        process_partial_response(event=dict(event), record_handler=record_handler, processor=processor, context=context)
    )


def _replay_limit(value: Any) -> int | None:
    """`{"action": "replay", "limit": N}`: only the N oldest dead letters (absent or null: all)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"replay: limit must be a whole number of at least 1, got {value!r}")
    return value
