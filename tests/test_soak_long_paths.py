"""The soak's long-path phase (python -m soak --phase long_paths): how it judges what the sink got."""

from __future__ import annotations

import requests

from soak import long_profiles, long_resync
from soak.__main__ import arguments
from soak.flaky_sink import FlakySink
from soak.long_resync import ENTERED, LEFT, LongUser, settings_sequence, sink_view, transition_problems
from soak.report import Check

FIRST, *_, LAST = settings_sequence()


def test_the_saves_move_users_in_and_out_of_segments_and_of_the_filter():
    # Given a pro user with score 10, a free one with 60 and a team one with 80
    low, gold, team = LongUser("a", "pro", 10), LongUser("b", "free", 60), LongUser("c", "team", 80)
    middle = settings_sequence()[2]
    # Then the low pro user enters Low in the middle save and leaves it in the last one
    assert low.segments(FIRST) == ["Pro"] and "Low" in low.segments(middle) and low.segments(LAST) == ["Pro"]
    # And the free user leaves the filter at the end, the team user enters it
    assert gold.in_filter(middle) and not gold.in_filter(LAST)
    assert team.segments(LAST) == ["Gold", "Team"] and team.in_filter(LAST)


def test_alternating_events_ending_in_the_final_state_pass():
    user = LongUser("a", "pro", 10)  # Low only in the middle
    # Given Low entered and left, or never sent (the middle job superseded) / Then no problem
    assert transition_problems(user, "Low", [(ENTERED, "m1"), (LEFT, "m2")], FIRST, LAST) == []
    assert transition_problems(user, "Low", [], FIRST, LAST) == []


def test_a_transition_sent_twice_or_a_missing_final_state_fails():
    user = LongUser("a", "pro", 80)  # Gold at the end
    # Given Gold entered twice under two message ids / Then it is a problem
    assert transition_problems(user, "Gold", [(ENTERED, "m1"), (ENTERED, "m2")], FIRST, LAST)
    # Given no Gold event at all / Then the final state is missing
    assert transition_problems(user, "Gold", [], FIRST, LAST)
    # Given Gold entered once / Then fine
    assert transition_problems(user, "Gold", [(ENTERED, "m1")], FIRST, LAST) == []


def test_the_sink_view_counts_accepted_messages_once_in_arrival_order():
    entries = [
        (0, 500, {"type": "identify", "userId": "a", "messageId": "i0", "traits": {"hull_segments": ["X"]}}),
        (1, 200, {"type": "identify", "userId": "a", "messageId": "i1", "traits": {"hull_segments": ["Pro"]}}),
        (2, 200, {"type": "track", "userId": "a", "messageId": "t1", "event": ENTERED, "properties": {"segment": "G"}}),
        (3, 200, {"type": "track", "userId": "a", "messageId": "t1", "event": ENTERED, "properties": {"segment": "G"}}),
        (4, 200, {"type": "track", "userId": "z", "messageId": "t9", "event": LEFT, "properties": {"segment": "G"}}),
    ]
    events, identifies, repeated = sink_view(entries, {"a"})
    assert events == {("a", "G"): [(ENTERED, "t1")]} and identifies == {"a": [["Pro"]]} and repeated == 1


def test_verify_reports_a_user_whose_last_identify_is_stale():
    # Given a pro user with score 80 whose only identify after creation still says ["Pro"]
    user = LongUser("a", "pro", 80)
    entries = [
        (0, 200, {"type": "identify", "userId": "a", "messageId": "c", "traits": {"hull_segments": ["Pro"]}}),
        (
            1,
            200,
            {"type": "track", "userId": "a", "messageId": "g", "event": ENTERED, "properties": {"segment": "Gold"}},
        ),
    ]
    check = Check("h", "test")
    long_resync.verify([user], entries, 1, check)
    assert check.problems == ["a: last identify has ['Pro'], wanted ['Pro', 'Gold']"]


def test_spread_keeps_the_oldest_and_newest_ids():
    values = [f"v{n:04d}" for n in range(3000)]
    picked = long_profiles.spread(values, 300)
    assert len(picked) == 300 and picked[:100] == values[:100] and picked[-100:] == values[-100:]
    assert long_profiles.spread(values[:10], 300) == values[:10]


def test_a_refusing_sink_answers_every_request_with_its_refusal_until_fixed():
    sink = FlakySink(0.0, 1).start()
    try:
        sink.refusing = (401, {}, {"success": False})
        refused = requests.post(f"{sink.url}/v1/batch", json={"batch": []}, auth=("write-key", ""), timeout=5)
        sink.refusing = None
        fixed = requests.post(f"{sink.url}/v1/batch", json={"batch": []}, auth=("write-key", ""), timeout=5)
    finally:
        sink.stop()
    assert (refused.status_code, fixed.status_code) == (401, 200)


def test_one_phase_can_be_chosen():
    assert arguments(["--phase", "long_paths"]).phase == ["long_paths"]
    assert arguments([]).phase is None


def test_the_watchdog_leaves_room_for_the_phases_chosen():
    from soak import config
    from soak.__main__ import hard_timeout_seconds

    assert hard_timeout_seconds(("main",)) == config.HARD_TIMEOUT_SECONDS
    assert hard_timeout_seconds(("main", "long_paths")) == config.HARD_TIMEOUT_SECONDS + config.LONG_PATHS_SECONDS
    assert hard_timeout_seconds(("long_paths",)) == config.ALONE_SECONDS + config.LONG_PATHS_SECONDS
