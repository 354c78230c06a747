"""Resync: a settings change brings Segment up to date with exactly the profiles whose view changed."""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from typing import Any

import pytest

from harness import PREFIX, TABLE, TEST_DEPLOYMENT, iam_authority, load_handler_module, template_without
from local_stack.iam.deployment import authority_for
from local_stack.iam.enforce import enforce
from local_stack.lambda_runtime import LambdaContext
from local_stack.template import load_template
from segment_connector import resync
from segment_connector.delivery import ClientPool
from segment_connector.models.items import Account, UserProfile, account_pk, identity_pk
from segment_connector.storage import ProfileStore, serialize
from stream_helpers import WRITE_KEY, _loopback_session

TEMPLATE = load_template()
TIMEOUT = int(TEMPLATE["Resources"]["ResyncFunction"]["Properties"]["Timeout"])
SEGMENTS = int(TEMPLATE["Resources"]["ResyncFunction"]["Properties"]["Environment"]["Variables"]["RESYNC_SEGMENTS"])
PRO = {"name": "Pro", "rule": {"trait": "plan", "op": "eq", "value": "pro"}}
BIG = {"name": "Big", "rule": {"trait": "employees", "op": "gte", "value": 100}}


class QueuedInvoker:
    """Lambda's async invocations, held in a queue the test runs (all, or some)."""

    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()

    def invoke_async(self, function_name: str, payload: dict[str, Any]) -> None:
        assert function_name == "connector-resync"
        self.queue.append(payload)


class Resync:
    def __init__(self, aws: Any, sink: Any, monkeypatch: pytest.MonkeyPatch):
        self.aws, self.sink = aws, sink
        self.module = load_handler_module("resync")
        self.module.clients = ClientPool(session_factory=_loopback_session)
        self.invoker = QueuedInvoker()
        monkeypatch.setattr(self.module.resync, "FunctionInvoker", lambda: self.invoker)
        monkeypatch.setenv("RESYNC_SEGMENTS", str(SEGMENTS))
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "resync")
        monkeypatch.setenv("SEGMENT_API_URL", sink.url)
        aws.set_secret("write-key", WRITE_KEY)
        self.store = ProfileStore(TABLE)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.module.lambda_handler(event, LambdaContext("connector-resync", 512, TIMEOUT))

    def change_settings(self, **settings: Any) -> dict[str, Any]:
        """The operator puts new settings; EventBridge invokes the function with the change."""
        self.aws.set_settings(**settings)
        return self.invoke(
            {
                "version": "0",
                "source": "aws.ssm",
                "detail-type": "Parameter Store Change",
                "detail": {"name": f"{PREFIX}/settings", "operation": "Update", "type": "String"},
            }
        )

    def run(self, steps: int | None = None) -> int:
        """Run queued invocations (all, or the first `steps`) as Lambda would; returns how many ran."""
        ran = 0
        while self.invoker.queue and (steps is None or ran < steps):
            self.invoke(self.invoker.queue.popleft())
            ran += 1
        return ran

    def job(self) -> dict[str, Any]:
        return self.invoke({"action": "status"})

    def identified(self) -> Counter[str]:
        return Counter(m["userId"] for m in self.sink.accepted_messages if m["type"] == "identify")


@pytest.fixture
def resyncs(aws: Any, sink: Any, monkeypatch: pytest.MonkeyPatch) -> Resync:
    return Resync(aws, sink, monkeypatch)


def put_users(aws: Any, users: list[dict[str, Any]]) -> None:
    """Given stored profiles (written straight to the table, as inbound leaves them)."""
    requests = []
    for fields in users:
        profile = UserProfile(
            pk=identity_pk("user_id", fields["user_id"]),
            created_at="2026-01-01T00:00:00.000Z",
            updated_at="2026-01-01T00:00:00.000Z",
            identities=[],
            version=1,
            **fields,
        )
        requests.append({"PutRequest": {"Item": serialize(profile.to_item())}})
    for start in range(0, len(requests), 25):
        aws.dynamodb.batch_write_item(RequestItems={TABLE: requests[start : start + 25]})


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
    aws.set_settings(segments=[PRO], synchronized_segments=[])
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
    aws.set_settings(segments=[PRO], synchronized_segments=["ALL"])
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
    resyncs.change_settings(segments=[PRO], synchronized_segments=["Pro"])  # first run: from history
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
    aws.set_settings(segments=[high, PRO], synchronized_segments=["ALL"], synchronized_properties=["plan"])
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
    monkeypatch.setattr(resync, "PAGE_SIZE", 10)
    monkeypatch.setattr(resync, "TIME_MARGIN", TIMEOUT + 1)  # one page per invocation
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
    aws.set_settings(**settings)
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

    monkeypatch.setattr(ProfileStore, "scan_profiles", broken)
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
    aws.set_settings(segments=[PRO], synchronized_segments=["ALL"])
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
