"""Outbound `{"action": "recompute"}` (a schedule: every hour on AWS, RECOMPUTE_EVERY_S locally):
memberships and computed traits that change only because time passes (issue 15).

Reads the due items of the hours since its cursor (store/due.py: only the users whose counted
events have left a window), evaluates each user just before its due moment and now, announces and
sends the difference like a live change (activity.py), then removes the due items it finished and
moves the cursor. A user whose calls could not be delivered keeps its due items (and the cursor
stays at their hour): the next run tries again with the same message ids, and the dead letters
take the calls that keep failing, as for stream records (segment_api.delivery.settle).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.outbound.announce import announce
from segment_connector.outbound.planner import Planner
from segment_connector.runtime import config
from segment_connector.segment_api.delivery import ClientPool, Outcome, RecordPlan, deliver, settle
from segment_connector.store.due import hour_start
from segment_connector.store.profile_store import ProfileStore

log = logging.getLogger(__name__)


def run(
    settings: ConnectorSettings, store: ProfileStore, clients: ClientPool, context: Any, now: datetime
) -> tuple[dict[str, Any], Counter[str]]:
    metrics: Counter[str] = Counter()
    due, cursor = store.due.reached(now)
    if not due:
        store.due.move_cursor(cursor)
        return {"due": 0}, metrics
    planner = Planner(settings, store, now)
    planned = planner.plan_due(due)
    plans = [plan for plan, _ in planned]
    metrics["SegmentEventsRecorded"] += announce(store, planner.histories, plans)
    outcome = _deliver(plans, settings, clients, context)
    # an evaluation that failed is not settled (it has no record to keep): its due items wait
    settlement = settle([plan for plan in plans if not plan.error], outcome, store, now)
    failed = {plan.seq for plan in plans if plan.error or plan.seq in settlement.failed}
    store.due.done([item for plan, items in planned if plan.seq not in failed for item in items])
    kept = [item for plan, items in planned if plan.seq in failed for item in items]
    store.due.move_cursor(min([hour_start(item.at) for item in kept] + [cursor]))
    metrics.update(UsersRecomputed=len(planned) - len(failed), MessagesSent=len(outcome.delivered))
    metrics["MessagesDeadLettered"] += settlement.dead_lettered
    if failed:
        log.warning("recompute: %d of %d due users not done: tried again at the next run", len(failed), len(planned))
    return {"due": len(due), "users": len(planned), "failed": len(failed)}, metrics


def _deliver(plans: list[RecordPlan], settings: ConnectorSettings, clients: ClientPool, context: Any) -> Outcome:
    entries = [entry for plan in plans for entry in plan.entries]
    if not entries:
        return Outcome()
    write_key = config.get_secret("write-key")
    if not write_key:  # as for stream records: nothing is sent without a write key
        log.warning("recompute: no write key: the calls of %d due users are not sent", len(plans))
        return Outcome()
    client = clients.client(write_key, config.segment_api_url(settings))
    return deliver(entries, client, clients.deadline(context))
