"""Resync: a settings change brings Segment up to date with exactly the profiles whose view changed."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any, cast

import pytest

from harness import TABLE, TEST_DEPLOYMENT, iam_authority, template_without
from local_stack.iam.deployment import authority_for
from local_stack.iam.enforce import enforce
from local_stack.lambda_runtime import LambdaContext
from resync_helpers import (
    PRO,
    SEGMENTS,
    SETTINGS_CHANGED,
    TIMEOUT,
    Resync,
    a_job_whose_segment_chain_died,
    identifies,
    put_users,
)
from segment_connector.domain.models.items import Account, IdentityAlias, UserProfile, account_pk, identity_pk
from segment_connector.resync import clock as resync_clock
from segment_connector.resync import job as resync
from segment_connector.resync import stale as resync_stale
from segment_connector.resync import work as resync_work
from segment_connector.runtime.invoker import FunctionInvoker
from segment_connector.store.events import Events
from segment_connector.store.profiles import Profiles
from segment_connector.store.syncs import SyncItems
from segment_connector.store.table import serialize

BIG = {"name": "Big", "rule": {"trait": "employees", "op": "gte", "value": 100}}


def put_account(aws: Any, group_id: str, traits: dict[str, Any]) -> None:
    account = Account(
        pk=account_pk(group_id),
        group_id=group_id,
        traits=traits,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        version=1,
    )
    aws.dynamodb.put_item(TableName=TABLE, Item=serialize(account.to_item()))


def segment_events(aws: Any) -> list[tuple[str, str, str]]:
    return sorted(
        (e["user_id"], e["event"], e["properties"]["segment"])
        for e in aws.items_of_kind("event")
        if e["source"] == "connector"
    )


def test_users_entering_the_filter_get_an_identify_and_nobody_else(resyncs, aws):
    # Given users stored while the User Filter was empty (nothing sent)
    resyncs.given_settings(segments=[PRO], synchronized_segments=[])
    put_users(
        aws,
        [
            {"user_id": "ann", "traits": {"plan": "pro", "email": "ann@x.io"}},
            {"user_id": "bob", "traits": {"plan": "free"}},
        ],
    )
    # When the filter is set to ["Pro"] (with email whitelisted)
    job = resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"], synchronized_properties=["email"])
    assert job["status"] == "running" and job["segments"] == SEGMENTS
    resyncs.run()
    # Then the pro user gets one identify with its segments and whitelisted traits; bob nothing
    [identify] = [m for m in resyncs.sink.accepted_messages if m["type"] == "identify"]
    assert identify["userId"] == "ann" and identify["traits"] == {"email": "ann@x.io", "hull_segments": ["Pro"]}
    assert identify["context"]["library"]["name"] == "segment-connector"
    # And the job is done, with its counts
    job = resyncs.job()
    assert (job["status"], job["segments_done"], job["evaluated"], job["sent"], job["failed"]) == (
        "done",
        SEGMENTS,
        2,
        1,
        0,
    )


def test_a_changed_definition_sends_identify_and_entered_left_events(resyncs, aws):
    # Given "Pro" = plan pro, everyone sent
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(
        aws,
        [
            {"user_id": "ann", "traits": {"plan": "pro"}},
            {"user_id": "bob", "traits": {"plan": "team"}},
            {"user_id": "cid", "traits": {"plan": "free"}},
        ],
    )
    # When the rule changes to plan in (team, enterprise)
    team = {"name": "Pro", "rule": {"trait": "plan", "op": "in", "value": ["team", "enterprise"]}}
    resyncs.change_settings(segments=[team], synchronized_segments=["ALL"])
    resyncs.run()
    # Then ann (left) and bob (entered) get an identify; cid's view did not change
    assert resyncs.identified() == Counter({"ann": 1, "bob": 1})
    traits = {m["userId"]: m["traits"] for m in resyncs.sink.accepted_messages}
    assert traits == {"ann": {"hull_segments": []}, "bob": {"hull_segments": ["Pro"]}}
    # And Entered/Left Segment events are recorded (the stream sends them like any event)
    assert segment_events(aws) == [("ann", "Left Segment", "Pro"), ("bob", "Entered Segment", "Pro")]


def test_settings_that_do_not_change_what_is_sent_start_no_work(resyncs, aws):
    aws.set_settings(segments=[PRO], synchronized_segments=["Pro"])
    put_users(aws, [{"user_id": "ann", "traits": {"plan": "pro"}}])
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])  # first run: from the deployed settings
    resyncs.run()
    before = len(resyncs.sink.accepted_messages)
    # When only an inbound toggle changes
    job = resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"], handle_pages=False)
    # Then the job is done at once and nothing is sent
    assert job["status"] == "done" and not resyncs.invoker.queue
    assert len(resyncs.sink.accepted_messages) == before


def test_a_resync_over_10000_profiles_sends_exactly_the_users_whose_view_changed(resyncs, aws):
    # Given 10,000 users with random plans and scores, everyone sent, "High" = score >= 50
    rng = random.Random(7)
    users: list[dict[str, Any]] = [
        {"user_id": f"u{n:05d}", "traits": {"plan": rng.choice(["free", "pro", "team"]), "score": rng.randrange(100)}}
        for n in range(10_000)
    ]
    high = {"name": "High", "rule": {"trait": "score", "op": "gte", "value": 50}}
    resyncs.given_settings(segments=[high, PRO], synchronized_segments=["ALL"], synchronized_properties=["plan"])
    put_users(aws, users)
    # When "High" becomes score >= 70
    higher = {"name": "High", "rule": {"trait": "score", "op": "gte", "value": 70}}
    resyncs.change_settings(segments=[higher, PRO], synchronized_segments=["ALL"], synchronized_properties=["plan"])
    resyncs.run()
    # Then exactly the users who left "High" (50 <= score < 70) get one identify each, nobody else
    expected = Counter(u["user_id"] for u in users if 50 <= u["traits"]["score"] < 70)
    assert resyncs.identified() == expected and len(expected) > 1500
    assert {m["userId"] for m in resyncs.sink.accepted_messages if "High" in m["traits"]["hull_segments"]} == set()
    job = resyncs.job()
    assert (job["status"], job["evaluated"], job["changed"], job["sent"]) == (
        "done",
        10_000,
        len(expected),
        len(expected),
    )
    # When the filter then names "Pro" only
    resyncs.change_settings(segments=[higher, PRO], synchronized_segments=["Pro"], synchronized_properties=["plan"])
    resyncs.run()
    # Then nobody is sent: pro users were in the filter already, the others leave it (silence)
    assert resyncs.identified() == expected


def test_settings_changed_during_a_resync_restart_it_and_send_nothing_twice(resyncs, aws, monkeypatch):
    # Given 400 users, half pro, none sent yet; pages of 10 so that a job takes many steps
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 10)
    monkeypatch.setattr(resync_work, "TIME_MARGIN", TIMEOUT + 1)  # one page per invocation
    users: list[dict[str, Any]] = [
        {"user_id": f"u{n:03d}", "traits": {"plan": "pro" if n % 2 else "free", "tier": n % 3}} for n in range(400)
    ]
    aws.set_settings(segments=[PRO], synchronized_segments=[])
    put_users(aws, users)
    # When the filter is set to Pro and the job gets part of the way
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])
    resyncs.run(steps=30)
    first = resyncs.identified()
    assert 0 < len(first) < 200 and resyncs.job()["status"] == "running"
    # And the settings change again (tier whitelisted) before it ends
    job = resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"], synchronized_properties=["tier"])
    resyncs.run()
    # Then the new job ends, the old one's invocations stopped as superseded
    assert resyncs.job() == {**resyncs.job(), "id": job["id"], "status": "done"}
    # And every pro user got exactly one identify per change that concerned it: those the first job
    # reached got the filter identify then the tier identify; the others one identify with tier
    pro = {u["user_id"] for u in users if u["traits"]["plan"] == "pro"}
    counts = resyncs.identified()
    assert set(counts) == pro
    assert {user for user, count in counts.items() if count == 2} == set(first)
    assert all(count == 1 for user, count in counts.items() if user not in first)
    last = {m["userId"]: m["traits"] for m in resyncs.sink.accepted_messages}
    assert all(set(last[user]) == {"tier", "hull_segments"} for user in pro)


def test_a_manual_resync_sends_everyone_in_the_filter_again(resyncs, aws):
    aws.set_settings(segments=[PRO], synchronized_segments=["Pro"])
    put_users(aws, [{"user_id": "ann", "traits": {"plan": "pro"}}, {"user_id": "bob", "traits": {"plan": "free"}}])
    job = resyncs.invoke({"action": "start", "reason": "manual"})
    resyncs.run()
    assert job["reason"] == "manual" and resyncs.identified() == Counter({"ann": 1})


def test_accounts_entering_the_account_filter_get_group_calls_for_their_users(resyncs, aws):
    # Given accounts, with users linked, sent only when "Big" (account filter)
    settings = {
        "handle_accounts": True,
        "account_segments": [BIG],
        "synchronized_segments": ["ALL"],
        "synchronized_account_segments": ["Big"],
        "synchronized_account_properties": ["employees"],
    }
    resyncs.given_settings(**settings)
    put_account(aws, "acme", {"employees": 80})
    put_account(aws, "tiny", {"employees": 3})
    put_users(
        aws,
        [
            {"user_id": "ann", "account_id": "acme", "traits": {}},
            {"user_id": "bob", "account_id": "tiny", "traits": {}},
        ],
    )
    # When "Big" becomes employees >= 50
    big50 = {"name": "Big", "rule": {"trait": "employees", "op": "gte", "value": 50}}
    resyncs.change_settings(**{**settings, "account_segments": [big50]})
    resyncs.run()
    # Then ann gets a group call for acme with its traits and segments; tiny stays unsent
    groups = [m for m in resyncs.sink.accepted_messages if m["type"] == "group"]
    assert [(g["userId"], g["groupId"], g["traits"]) for g in groups] == [
        ("ann", "acme", {"employees": 80, "hull_segments": ["Big"]})
    ]


def test_a_step_that_keeps_failing_fails_the_resync(resyncs, aws, monkeypatch, capsys):
    aws.set_settings(segments=[PRO], synchronized_segments=[])
    put_users(aws, [{"user_id": "ann", "traits": {"plan": "pro"}}])
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("table unreachable")

    monkeypatch.setattr(Profiles, "scan", broken)
    resyncs.run()
    # Then each segment was tried three times, and the job is failed with the reason
    job = resyncs.job()
    assert job["status"] == "failed" and "table unreachable" in job["error"]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert any("ResyncRunsFailed" in line for line in metrics)


def test_status_before_any_resync_and_unknown_events(resyncs):
    assert resyncs.job() == {"status": "none"}
    assert "unknown event" in resyncs.invoke({"action": "nope"})["error"]


def test_without_batch_write_item_in_its_role_the_resync_fails_as_it_did_on_aws(resyncs, aws, tmp_path):
    # Given ResyncFunction's role as it was before IAM was enforced here: no dynamodb:BatchWriteItem
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, [{"user_id": "ann", "traits": {"plan": "pro"}}, {"user_id": "bob", "traits": {"plan": "team"}}])
    role = template_without("ResyncFunction", "dynamodb:BatchWriteItem", tmp_path)
    enforce(authority_for(TEST_DEPLOYMENT, role, record=False))
    try:
        # When a rule change moves users (their Entered/Left events are stored in batches)
        team = {"name": "Pro", "rule": {"trait": "plan", "op": "in", "value": ["team"]}}
        resyncs.change_settings(segments=[team], synchronized_segments=["ALL"])
        resyncs.run()
        job = resyncs.job()
    finally:
        enforce(iam_authority())
    # Then the resync fails on AWS's access-denied error and no segment event is stored
    assert job["status"] == "failed", job
    assert "dynamodb:BatchWriteItem" in json.dumps(job)
    assert segment_events(aws) == []


# -- restarts, crashes, deletes and moves ------------------------------------------------------------


def entered_and_left(aws: Any) -> Counter[tuple[str, str, str]]:
    return Counter(
        (e["user_id"] or e["anonymous_id"], e["event"], e["properties"]["segment"])
        for e in aws.items_of_kind("event")
        if e["source"] == "connector"
    )


def test_two_saves_before_the_first_resync_ran_send_the_users_in_the_new_filter(resyncs, aws):
    # Given a fresh stack (the deployed settings send nobody) and stored users
    put_users(aws, [{"user_id": f"u{n}", "traits": {"plan": "pro" if n % 2 else "free"}} for n in range(20)])
    # When the operator saves the settings twice in a row (the filter, then a toggle that sends
    # nothing new) and both changes reach the function afterwards
    aws.set_settings(segments=[PRO], synchronized_segments=["Pro"])
    aws.set_settings(segments=[PRO], synchronized_segments=["Pro"], handle_pages=False)
    resyncs.invoke(SETTINGS_CHANGED)
    resyncs.invoke(SETTINGS_CHANGED)
    resyncs.run()
    # Then every user in the new filter is sent once, nobody else, and the resync is done
    assert resyncs.identified() == Counter({f"u{n}": 1 for n in range(1, 20, 2)})
    assert resyncs.job()["status"] == "done"


class SideBySide:
    """Queued invocations run by threads side by side, as Lambda runs async invocations in
    concurrent instances; the test thread saves settings meanwhile."""

    def __init__(self, resyncs: Resync, threads: int):
        self.resyncs, self.threads = resyncs, threads
        self.lock = threading.Lock()
        self.busy = self.ran = 0
        self.closed = threading.Event()
        self.errors: list[BaseException] = []

    def _worker(self) -> None:
        store, clients = self.resyncs.store, self.resyncs.module.clients
        while True:
            with self.lock:
                payload = self.resyncs.invoker.queue.popleft() if self.resyncs.invoker.queue else None
                if payload is None and self.busy == 0 and self.closed.is_set():
                    return
                self.busy += payload is not None
            if payload is None:
                time.sleep(0.002)
                continue
            try:
                context = LambdaContext("connector-resync", 512, TIMEOUT)
                invoker = cast(FunctionInvoker, self.resyncs.invoker)  # Lambda's queue, as the handler sees it
                resync.handle(payload, context, store, clients, invoker)
            except BaseException as error:  # noqa: BLE001 - reported by the test
                self.errors.append(error)
            finally:
                with self.lock:
                    self.busy -= 1
                    self.ran += 1

    def run(self, after: int, saves: list[dict[str, Any]]) -> None:
        threads = [threading.Thread(target=self._worker) for _ in range(self.threads)]
        for thread in threads:
            thread.start()
        try:
            for settings in saves:
                target = self.ran + after
                while self.ran < target and (self.resyncs.invoker.queue or self.busy):
                    time.sleep(0.002)
                self.resyncs.change_settings(**settings)
        finally:
            self.closed.set()
            for thread in threads:
                thread.join()
        assert not self.errors, self.errors


def test_two_saves_during_a_resync_run_side_by_side_send_each_entered_and_left_once(resyncs, aws, monkeypatch):
    # Given 96 users, "Pro" = plan pro, everyone sent; pages of 2, one page per invocation
    plans = ["pro", "team", "free"]
    users: list[dict[str, Any]] = [
        {"user_id": f"u{n:03d}", "traits": {"plan": plans[n % 3], "tier": n % 4}} for n in range(96)
    ]
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, users)
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 2)
    monkeypatch.setattr(resync_work, "TIME_MARGIN", TIMEOUT + 1)
    # When "Pro" becomes plan in (pro, team), and while 6 instances work on it the settings are
    # saved twice more (tier whitelisted, then plan too)
    team = {"name": "Pro", "rule": {"trait": "plan", "op": "in", "value": ["pro", "team"]}}
    resyncs.change_settings(segments=[team], synchronized_segments=["ALL"])
    SideBySide(resyncs, threads=6).run(
        after=12,
        saves=[
            {"segments": [team], "synchronized_segments": ["ALL"], "synchronized_properties": ["tier"]},
            {"segments": [team], "synchronized_segments": ["ALL"], "synchronized_properties": ["tier", "plan"]},
        ],
    )
    # Then the last resync is done, and each team user entered "Pro" exactly once; nobody left
    assert resyncs.job()["status"] == "done"
    assert entered_and_left(aws) == Counter({(u["user_id"], "Entered Segment", "Pro"): 1 for u in users[1::3]})
    # And every user ends with the newest traits, and no call was sent twice under two ids
    calls = identifies(resyncs.sink)
    for user in users:
        sent = [call["traits"] for call in calls[user["user_id"]].values()]
        segments = ["Pro"] if user["traits"]["plan"] != "free" else []
        assert {**user["traits"], "hull_segments": segments} in sent
        assert len(sent) == len({json.dumps(traits, sort_keys=True) for traits in sent}), sent


@pytest.mark.parametrize(
    ("job_store", "method", "call"), [(SyncItems, "claim", 3), (Events, "put_new", 2), (SyncItems, "commit", 3)]
)
def test_an_invocation_killed_mid_page_loses_nothing_and_sends_nothing_twice(
    resyncs, aws, monkeypatch, job_store, method, call
):
    # Given 60 users, everyone sent; 2 segments, pages of 5 (several pages per invocation)
    plans = ["pro", "team", "free"]
    users = [{"user_id": f"u{n:02d}", "traits": {"plan": plans[n % 3]}} for n in range(60)]
    resyncs.given_settings(segments=[PRO], synchronized_segments=["ALL"])
    put_users(aws, users)
    monkeypatch.setenv("RESYNC_SEGMENTS", "2")
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 5)
    # And the invocation dies at a chosen call, once
    real = getattr(job_store, method)
    calls = [0]

    def dies_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            raise RuntimeError(f"killed at {method} #{call}")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(job_store, method, dies_once)
    # When "Pro" becomes plan in (pro, team) and the invocations (and the retry) run
    team = {"name": "Pro", "rule": {"trait": "plan", "op": "in", "value": ["pro", "team"]}}
    resyncs.change_settings(segments=[team], synchronized_segments=["ALL"])
    resyncs.run()
    assert calls[0] > call
    # Then each team user got one identify (one message id) and entered "Pro" once; nobody else
    entering = [u["user_id"] for u in users[1::3]]
    assert {user: len(sent) for user, sent in identifies(resyncs.sink).items()} == dict.fromkeys(entering, 1)
    assert entered_and_left(aws) == Counter({(user, "Entered Segment", "Pro"): 1 for user in entering})
    # And no page was counted twice (a page redone counts what it sends again, not what the killed
    # invocation had committed)
    job = resyncs.job()
    assert (job["status"], job["evaluated"]) == ("done", 60) and job["changed"] <= 20 and job["sent"] <= 20


def put_anonymous(aws: Any, count: int, traits: dict[str, Any]) -> list[UserProfile]:
    profiles = [
        UserProfile(
            pk=identity_pk("anonymous_id", f"a{n:03d}"),
            anonymous_ids=[f"a{n:03d}"],
            identities=[identity_pk("anonymous_id", f"a{n:03d}")],
            traits=traits,
            created_at="2026-01-01T00:00:00.000Z",
            updated_at="2026-01-01T00:00:00.000Z",
            version=1,
        )
        for n in range(count)
    ]
    for profile in profiles:
        aws.dynamodb.put_item(TableName=TABLE, Item=serialize(profile.to_item()))
    return profiles


def identify_anonymous(aws: Any, profile: UserProfile, user_id: str) -> None:
    """What inbound does when an anonymous user identifies: the profile moves to its user id
    (same uid, next version) and the anonymous id's item becomes an alias of it."""
    moved = profile.model_copy(
        update={
            "pk": identity_pk("user_id", user_id),
            "user_id": user_id,
            "identities": [identity_pk("user_id", user_id), profile.pk],
            "updated_at": "2026-01-02T00:00:00.000Z",
            "version": profile.version + 1,
        }
    )
    aws.dynamodb.put_item(TableName=TABLE, Item=serialize(moved.to_item()))
    alias = IdentityAlias(pk=profile.pk, profile_pk=moved.pk)
    aws.dynamodb.put_item(TableName=TABLE, Item=serialize(alias.to_item()))


def test_profiles_deleted_or_aliased_mid_resync_leave_every_other_user_identified(resyncs, aws, monkeypatch):
    # Given 192 anonymous pro users, stored while the filter was empty; pages of 8, one per invocation
    resyncs.given_settings(segments=[PRO], synchronized_segments=[])
    profiles = put_anonymous(aws, 192, {"plan": "pro"})
    monkeypatch.setattr(resync_work, "PAGE_SIZE", 8)
    monkeypatch.setattr(resync_work, "TIME_MARGIN", TIMEOUT + 1)
    # When the filter becomes Pro and the resync gets part of the way
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])
    resyncs.run(steps=20)
    reached = set(identifies(resyncs.sink))
    assert 0 < len(reached) < 192
    # And the users it reached identify (anonymous -> known) or are deleted, alternately
    deleted = set()
    for index, profile in enumerate(p for p in profiles if p.anonymous_ids[0] in reached):
        if index % 2:
            aws.dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": profile.pk}, "sk": {"S": profile.sk}})
            deleted.add(profile.anonymous_ids[0])
        else:
            identify_anonymous(aws, profile, f"k-{profile.anonymous_ids[0]}")
    # And the settings change again (a segment nobody is in joins the filter) before it ends
    resyncs.change_settings(segments=[PRO, BIG], synchronized_segments=["Pro", "Big"])
    resyncs.run()
    # Then every user that was not deleted has been identified into "Pro", once
    calls = identifies(resyncs.sink)
    for profile in profiles:
        anonymous_id = profile.anonymous_ids[0]
        if anonymous_id in deleted:
            continue
        sent = [c for user in (anonymous_id, f"k-{anonymous_id}") for c in calls.get(user, {}).values()]
        assert [call["traits"] for call in sent] == [{"hull_segments": ["Pro"]}], anonymous_id
    assert resyncs.job()["status"] == "done"


def test_a_failed_self_invocation_leaves_the_job_stale_and_the_next_status_resumes_it(resyncs, aws, monkeypatch):
    # Given a resync whose segment 1 chain died: Lambda refused its hand-over and the retry
    refusing = a_job_whose_segment_chain_died(resyncs, aws, monkeypatch)
    # Then the job is still running with nothing queued, and a status soon after changes nothing
    assert resyncs.job()["status"] == "running" and not refusing.queue
    # When a status is asked once the segment has made no progress for three function timeouts
    later = resync_clock.utcnow() + timedelta(seconds=resync_stale.STALE_SECONDS + 60)
    monkeypatch.setattr(resync_clock, "utcnow", lambda: later)
    assert resyncs.job()["status"] == "running"
    assert [payload["segment"] for payload in refusing.queue] == [1]
    resyncs.run()
    # Then the stale segment resumed from its last page: the job is done, everyone sent once
    assert resyncs.job()["status"] == "done"
    assert {user: len(sent) for user, sent in identifies(resyncs.sink).items()} == {f"u{n:02d}": 1 for n in range(40)}
