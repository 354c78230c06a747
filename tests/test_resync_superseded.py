"""Resync: a page of an older job, still running after a newer job (a later settings save) passed
the same person, announces and sends nothing over what the newer job left.

Both jobs' pages run as ResyncFunction's (IAM enforced) through PageSync, the unit a work
invocation runs per page, so the interleaving is exact: the newer job first, then the older page.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from harness import SETTINGS_DEFAULT
from local_stack.iam.enforce import acting_as
from resync_helpers import PRO, put_users
from segment_connector.domain.models.items import UserProfile
from segment_connector.resync.page_sync import PageSync
from segment_connector.resync.plan import Superseded, view_of
from segment_connector.runtime import config
from segment_connector.segment_api.delivery import Entry
from segment_connector.store.profile_store import ProfileStore

NOW = "2026-06-01T00:00:00.000Z"


def gold(at_least: int) -> dict[str, Any]:
    return {"name": "Gold", "rule": {"trait": "score", "op": "gte", "value": at_least}}


LOW = {"name": "Low", "rule": {"trait": "score", "op": "lt", "value": 30}}


def settings(*segments: dict[str, Any]) -> str:
    return json.dumps({**json.loads(SETTINGS_DEFAULT), "segments": [PRO, *segments], "synchronized_segments": ["ALL"]})


# A pro user with score 25: in Pro under every settings; in Gold only under the older job's.
BASE = settings(gold(50))  # Pro
OLDER = settings(gold(20))  # Pro, Gold
NEWER_UNCHANGED = settings(gold(70))  # Pro: what the base sends
NEWER_MOVED = settings(gold(70), LOW)  # Pro, Low


class Sent:
    """Segment as a page sends to it: every entry accepted, recorded."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def __call__(self, entries: list[Entry]) -> tuple[int, int]:
        self.entries += entries
        return len(entries), 0


def page_of_job(store: ProfileStore, seq: int, target: str, sent: Sent) -> PageSync:
    """A page of job `seq` (from BASE to `target`), its settings kept as starting a job keeps them."""
    store.resync.put_views({view_of(config.parse_settings(doc)): doc for doc in (BASE, target)})
    return PageSync(store, sent, {"seq": seq, "target": target, "base": BASE}, NOW)


def run_as_resync(page: PageSync, users: list[UserProfile]) -> Any:
    with acting_as("ResyncFunction"):
        return page.run(list(users))


@pytest.fixture
def person(aws: Any) -> UserProfile:
    """Given a pro user with score 25, stored as inbound leaves it, never resynced or announced."""
    aws.set_settings(**json.loads(BASE))
    put_users(aws, [{"user_id": "u1", "uid": "uid-1", "traits": {"plan": "pro", "score": 25}}])
    (item,) = aws.items_of_kind("user")
    return UserProfile.model_validate(item)


def connector_events(aws: Any) -> Counter[tuple[str, str]]:
    return Counter(
        (event["event"], event["properties"]["segment"])
        for event in aws.items_of_kind("event")
        if event["source"] == "connector"
    )


def test_an_older_page_after_the_newer_job_found_nothing_to_send_stops_and_sends_nothing(aws, person):
    # Given the newer job's page brought the person to settings that send what the base sent
    store, newer_sent, older_sent = ProfileStore(config.table_name()), Sent(), Sent()
    count = run_as_resync(page_of_job(store, 3, NEWER_UNCHANGED, newer_sent), [person])
    assert count.changed == 0 and newer_sent.entries == []
    # When the older job's page (its settings put the person in Gold) reaches the same person
    with pytest.raises(Superseded):
        run_as_resync(page_of_job(store, 2, OLDER, older_sent), [person])
    # Then it sends nothing (no identify with Gold, no Entered Gold), and the person is synced at
    # the newer job's settings
    assert older_sent.entries == []
    assert connector_events(aws) == Counter()
    (sync,) = aws.items_of_kind("sync")
    assert sync["view"] == view_of(config.parse_settings(NEWER_UNCHANGED)) and int(sync["seq"]) == 3


def test_an_older_page_whose_announcement_lost_to_the_newer_job_stops_instead_of_announcing_again(aws, person):
    # Given the older job's page claimed the person's transition (Gold entered) and is slow to
    # announce it: it waits until the newer job has passed the person
    store, newer_sent, older_sent = ProfileStore(config.table_name()), Sent(), Sent()
    older = page_of_job(store, 2, OLDER, older_sent)
    announce, claimed, newer_done = older.planner.announce, threading.Event(), threading.Event()

    def slow_announce(plans: Any) -> None:
        claimed.set()
        assert newer_done.wait(60)
        announce(plans)

    older.planner.announce = slow_announce  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=1) as pool:
        older_run = pool.submit(run_as_resync, older, [person])
        assert claimed.wait(60)
        # When the newer job's page completes the older transition it found pending, then its own
        # (Gold left, Low entered), and only then the older page announces
        run_as_resync(page_of_job(store, 3, NEWER_MOVED, newer_sent), [person])
        newer_done.set()
        # Then the older page stops (superseded) without sending
        with pytest.raises(Superseded):
            older_run.result(timeout=120)
    assert older_sent.entries == []
    # And the person's history and events end at the newest settings: Gold entered and left once
    assert connector_events(aws) == Counter(
        {("Entered Segment", "Gold"): 1, ("Left Segment", "Gold"): 1, ("Entered Segment", "Low"): 1}
    )
    (history,) = aws.items_of_kind("seghist")
    assert sorted(history["segments"]) == ["Low", "Pro"] and not history.get("pending")
    # And the newer job's last identify carries the newest segments
    identifies = [entry.payload for entry in newer_sent.entries if entry.payload.get("type") == "identify"]
    assert identifies and sorted(identifies[-1]["traits"]["hull_segments"]) == ["Low", "Pro"]
