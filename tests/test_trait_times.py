"""Trait times per leaf: late and out-of-order calls end as if applied in time order."""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any

import pytest

from segment_connector.domain.traits import decode_path, encode_path, merge_leaves, merge_traits, timed_leaves

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # the property tests below need it; the deterministic ones do not
    given = None  # type: ignore[assignment]

T0, T1, T2, T3, T4, T5, T6 = (f"2026-01-0{day}T00:00:00.000Z" for day in range(1, 8))
TRICKY_KEYS = ["", "/", "~", "~0", "~1", "/~", "a/b", "a~1b", ".", "a.b", "é", "🙂", " ", "~~//"]


def applied(calls: list[tuple[str, dict[str, Any]]], traits: dict | None = None, times: dict | None = None):
    """The traits and times after merging calls (time, traits) in the order given."""
    traits, times = ({} if traits is None else traits), ({} if times is None else times)
    for at, incoming in calls:
        merge_traits(traits, times, incoming, at)
    return traits, times


def in_time_order(calls):
    return applied(sorted(calls, key=lambda call: call[0]))[0]


def user(api, ref):
    status, body = api.get(f"/v1/users/{ref}")
    assert status == 200, body
    return body


# --- merge_traits ---------------------------------------------------------------------------


def test_an_older_nested_call_fills_what_the_newer_one_never_set():
    # Given a newer identify that set the city
    traits, times = applied([(T2, {"address": {"city": "Paris"}})])
    # When an older one with the zip and another city arrives late
    changed = merge_traits(traits, times, {"address": {"zip": "75001", "city": "Lyon"}}, T1)
    # Then the newer city stays and the zip is added
    assert changed and traits == {"address": {"city": "Paris", "zip": "75001"}}
    assert times == {"address/city": T2, "address/zip": T1}


def test_a_newer_dict_keeps_a_late_older_scalar_out():
    traits, times = applied([(T2, {"address": {"city": "Paris"}})])
    assert not merge_traits(traits, times, {"address": "unknown"}, T1)
    assert traits == {"address": {"city": "Paris"}}


def test_a_newer_scalar_keeps_a_late_older_dict_out():
    traits, times = applied([(T2, {"address": "unknown"})])
    assert not merge_traits(traits, times, {"address": {"city": "Paris"}}, T1)
    assert traits == {"address": "unknown"} and times == {"address": T2}


def test_a_newer_scalar_replacing_a_dict_keeps_older_nested_leaves_out():
    # Given a dict replaced by a newer scalar
    traits, times = applied([(T1, {"address": {"city": "Paris"}}), (T3, {"address": "unknown"})])
    assert times == {"address": T3}
    # When a nested value older than the scalar arrives late
    changed = merge_traits(traits, times, {"address": {"zip": "75001"}}, T2)
    # Then it stays out
    assert not changed and traits == {"address": "unknown"}


def test_a_dict_replacing_a_scalar_takes_nested_values_from_after_the_scalar_only():
    # Given a scalar at T1 replaced by a dict at T3
    traits, times = applied([(T1, {"address": "unknown"}), (T3, {"address": {"city": "Paris"}})])
    # When nested values from before the scalar (T0) and from between the two (T2) arrive late
    merge_traits(traits, times, {"address": {"street": "rue A"}}, T0)
    merge_traits(traits, times, {"address": {"zip": "75001"}}, T2)
    # Then only the one from after the scalar is kept, as in time order
    assert traits == {"address": {"city": "Paris", "zip": "75001"}}
    assert traits == in_time_order(
        [
            (T1, {"address": "unknown"}),
            (T3, {"address": {"city": "Paris"}}),
            (T0, {"address": {"street": "rue A"}}),
            (T2, {"address": {"zip": "75001"}}),
        ]
    )


def test_a_late_scalar_older_than_a_dict_still_ends_what_was_older_than_itself():
    # Given nested values set at T1 and T3
    traits, times = applied([(T1, {"address": {"zip": "75001"}}), (T3, {"address": {"city": "Paris"}})])
    # When a scalar observed at T2 arrives late
    changed = merge_traits(traits, times, {"address": "unknown"}, T2)
    # Then the scalar loses to the newer city, but the zip it had replaced is gone (as in time order)
    assert changed and traits == {"address": {"city": "Paris"}}


def test_legacy_top_level_times_still_cover_their_whole_trait():
    # Given traits stored with the former top-level times
    traits = {"address": {"city": "Paris"}, "plan": "pro", "a/b": 1}
    times = {"address": T5, "plan": T5, "a/b": T5}
    # When an older identify arrives late
    changed = merge_traits(traits, times, {"address": {"zip": "75001"}, "plan": "free", "a/b": 2}, T4)
    # Then nothing changes: each top-level time covers its subtree
    assert not changed and traits == {"address": {"city": "Paris"}, "plan": "pro", "a/b": 1}
    # And the time of the top-level trait named "a/b" is now under that name's path
    assert times == {"address": T5, "plan": T5, "a~1b": T5}
    # When a newer one arrives, nested values merge into the legacy dict
    assert merge_traits(traits, times, {"address": {"zip": "75001"}, "a/b": 3}, T6)
    assert traits == {"address": {"city": "Paris", "zip": "75001"}, "plan": "pro", "a/b": 3}


def test_a_same_time_redelivery_changes_nothing():
    call = (T1, {"plan": "pro", "address": {"city": "Paris", "geo": {}}, "tags": ["a"]})
    traits, times = applied([call, (T2, {"address": {"city": "Lyon"}})])
    before = copy.deepcopy((traits, times))
    at, incoming = call
    assert not merge_traits(traits, times, incoming, at)
    assert (traits, times) == before


def test_a_newer_observation_of_the_same_value_is_recorded():
    traits, times = applied([(T1, {"plan": "pro"})])
    assert not merge_traits(traits, times, {"plan": "pro"}, T3)
    assert times == {"plan": T3}
    merge_traits(traits, times, {"plan": "free"}, T2)
    assert traits == {"plan": "pro"}


def test_true_is_not_1():
    traits, times = applied([(T1, {"active": 1})])
    assert merge_traits(traits, times, {"active": True}, T2)
    assert traits["active"] is True


def test_an_empty_dict_merges_into_a_dict_and_keeps_an_older_scalar_out():
    traits, times = applied([(T1, {"prefs": {"lang": "fr"}}), (T3, {"prefs": {}})])
    assert traits == {"prefs": {"lang": "fr"}}
    # a scalar from between the two loses to the newer empty dict, and ends the older lang
    merge_traits(traits, times, {"prefs": "none"}, T2)
    assert traits == {"prefs": {}}
    before = copy.deepcopy((traits, times))
    assert not merge_traits(traits, times, {"prefs": {}}, T3)
    assert (traits, times) == before


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_any_key_has_a_time_of_its_own(key):
    # Given a newer call with the key at the top level and nested, and paths that look alike
    lookalikes = {"a": {"b": "new"}, "a/b": "new", "a.b": "new"}
    traits, times = applied([(T2, {key: {key: "new"}, "x": lookalikes})])
    # When an older call with other values for all of them, and new siblings, arrives late
    merge_traits(
        traits,
        times,
        {key: {key: "old", "sibling": 1}, "x": {"a": {"b": "old"}, "a/b": "old", "a.b": "old", "a~1b": "sibling"}},
        T1,
    )
    # Then each keeps its newer value and the siblings are added
    assert traits == {key: {key: "new", "sibling": 1}, "x": {**lookalikes, "a~1b": "sibling"}}
    assert {decode_path(path) for path in times} == {
        (key, key),
        (key, "sibling"),
        ("x", "a", "b"),
        ("x", "a/b"),
        ("x", "a.b"),
        ("x", "a~1b"),
    }


def test_paths_round_trip():
    paths = [path for size in (1, 2, 3) for path in itertools.product(TRICKY_KEYS, repeat=size)]
    assert all(decode_path(encode_path(path)) == path for path in paths)
    assert len({encode_path(path) for path in paths}) == len(paths)


def test_top_level_keys_keep_their_name():
    assert encode_path(("plan",)) == "plan" and encode_path(("address", "city")) == "address/city"
    assert encode_path(("a/b", "~")) == "a~1b/~0"


# --- any order ends as time order (deterministic draws, then hypothesis) --------------------


def assert_order_does_not_matter(calls: list[dict[str, Any]], rng: random.Random) -> None:
    """Calls at distinct times: any delivery order, redelivery, and merging profiles that each got
    some of the calls end with the traits of applying them all in time order."""
    timed = [(f"2026-01-01T00:00:{second:02d}.000Z", traits) for second, traits in enumerate(calls)]
    expected = in_time_order(timed)
    shuffled = rng.sample(timed, len(timed))
    traits, times = applied(shuffled)
    assert_same(traits, expected, shuffled)
    before = copy.deepcopy((traits, times))
    applied(shuffled, traits, times)
    assert (traits, times) == before
    # split between profiles, then merged as identity resolution does
    parts: list[list] = [[], [], []]
    for call in shuffled:
        rng.choice(parts).append(call)
    merged, merged_times = applied(parts[0])
    for part in parts[1:]:
        other, other_times = applied(part)
        merge_leaves(merged, merged_times, timed_leaves(other, other_times, "0000"))
    assert_same(merged, expected, parts)


def assert_same(actual: Any, expected: Any, calls: Any) -> None:
    """Equal, with true not 1 (== would take them as one)."""
    assert _canonical(actual) == _canonical(expected), (actual, expected, calls)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((key, _canonical(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return (type(value).__name__, value)


def _draw_value(rng: random.Random, depth: int) -> Any:
    if depth < 3 and rng.random() < 0.5:
        return {rng.choice(TRICKY_KEYS[:8]): _draw_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return rng.choice([0, 1, True, "x", "", [1], [True]])


def test_delivery_order_does_not_matter():
    rng = random.Random(20260101)
    for _ in range(500):
        calls = [
            {rng.choice(TRICKY_KEYS[:8]): _draw_value(rng, 1) for _ in range(rng.randint(1, 3))}
            for _ in range(rng.randint(2, 7))
        ]
        assert_order_does_not_matter(calls, rng)


if given is not None:
    keys = st.one_of(st.sampled_from(TRICKY_KEYS), st.text(max_size=3))
    scalars = st.one_of(st.integers(-2, 2), st.booleans(), st.text(max_size=2), st.lists(st.integers(0, 2), max_size=2))
    values = st.recursive(scalars, lambda children: st.dictionaries(keys, children, max_size=3), max_leaves=8)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.dictionaries(keys, values, min_size=1, max_size=3), min_size=1, max_size=7), st.randoms())
    def test_delivery_order_does_not_matter_for_any_keys(calls, rng):
        assert_order_does_not_matter(calls, rng)

    @given(st.lists(st.text(), min_size=1, max_size=4))
    def test_any_path_round_trips(path):
        assert decode_path(encode_path(path)) == tuple(path)
else:

    @pytest.mark.skip(reason="hypothesis is not installed (requirements-dev.txt)")
    def test_delivery_order_does_not_matter_for_any_keys():
        """Runs with hypothesis installed."""


# --- through the inbound API ----------------------------------------------------------------


def test_a_late_older_identify_fills_nested_traits_through_the_api(api, message):
    # Given a newer identify, then an older one delivered late
    api.post(
        "/segment",
        message("identify", userId="u1", timestamp="2026-02-01T00:00:00Z", traits={"address": {"city": "Paris"}}),
    )
    _, body = api.post(
        "/segment",
        message(
            "identify",
            userId="u1",
            timestamp="2026-01-01T00:00:00Z",
            traits={"address": {"zip": "75001", "city": "Lyon"}},
        ),
    )
    # Then the profile has the newer city and the older zip
    assert body["stored"] == 1
    assert user(api, "user_id:u1")["traits"] == {"address": {"city": "Paris", "zip": "75001"}}


def test_a_redelivered_identify_is_unchanged(api, message):
    identify = message("identify", userId="u1", traits={"address": {"city": "Paris"}, "plan": "pro"})
    api.post("/segment", identify)
    _, body = api.post("/segment", {**identify, "messageId": "another-id"})
    assert body["unchanged"] == 1


def test_merging_an_anonymous_profile_keeps_the_newest_value_of_each_leaf(api, message):
    # Given a known user and an anonymous visitor, with traits set at different times
    api.post(
        "/segment",
        message(
            "identify",
            userId="u1",
            timestamp="2026-01-01T00:00:00Z",
            traits={"address": {"city": "Paris", "zip": "75001"}, "plan": "free"},
        ),
    )
    api.post(
        "/segment",
        message(
            "identify",
            anonymousId="a1",
            timestamp="2026-01-02T00:00:00Z",
            traits={"address": {"city": "Lyon"}, "utm": "ads", "plan": "trial"},
        ),
    )
    api.post("/segment", message("identify", userId="u1", timestamp="2026-01-03T00:00:00Z", traits={"plan": "pro"}))
    # When an identify links the visitor to the user
    api.post("/segment", message("identify", userId="u1", anonymousId="a1", timestamp="2026-01-04T00:00:00Z"))
    # Then each leaf has its newest value, whichever profile it came from
    profile = user(api, "anonymous_id:a1")
    assert profile["user_id"] == "u1"
    assert profile["traits"] == {"address": {"city": "Lyon", "zip": "75001"}, "plan": "pro", "utm": "ads"}
    # And an older identify delivered late still loses leaf by leaf
    api.post(
        "/segment",
        message(
            "identify",
            userId="u1",
            timestamp="2026-01-01T12:00:00Z",
            traits={"address": {"city": "Nice", "country": "FR"}, "plan": "x"},
        ),
    )
    assert user(api, "user_id:u1")["traits"] == {
        "address": {"city": "Lyon", "zip": "75001", "country": "FR"},
        "plan": "pro",
        "utm": "ads",
    }


def test_merging_profiles_honours_a_scalar_that_replaced_a_dict_in_either_one(api, message):
    # Given the user's zip at T1, and the visitor's address replaced by a scalar at T2, then by a dict at T3
    api.post(
        "/segment",
        message("identify", userId="u1", timestamp="2026-01-01T00:00:00Z", traits={"address": {"zip": "75001"}}),
    )
    api.post(
        "/segment",
        message("identify", anonymousId="a1", timestamp="2026-01-02T00:00:00Z", traits={"address": "unknown"}),
    )
    api.post(
        "/segment",
        message("identify", anonymousId="a1", timestamp="2026-01-03T00:00:00Z", traits={"address": {"city": "Lyon"}}),
    )
    # When they are merged
    api.post("/segment", message("identify", userId="u1", anonymousId="a1"))
    # Then, as in time order, the zip from before the scalar is gone
    assert user(api, "user_id:u1")["traits"] == {"address": {"city": "Lyon"}}


def test_accounts_merge_leaf_by_leaf_too(api, aws, message):
    aws.set_settings(handle_accounts=True)
    # Given a newer group call, then an older one delivered late
    api.post(
        "/segment",
        message(
            "group",
            userId="u1",
            groupId="g1",
            timestamp="2026-02-01T00:00:00Z",
            traits={"address": {"city": "Paris"}, "plan": "pro"},
        ),
    )
    api.post(
        "/segment",
        message(
            "group",
            userId="u1",
            groupId="g1",
            timestamp="2026-01-01T00:00:00Z",
            traits={"address": {"zip": "75001", "city": "Lyon"}, "plan": "free", "seats": 3},
        ),
    )
    # Then the account has the newer values and the older ones nobody overrode
    status, account = api.get("/v1/accounts/g1")
    assert status == 200
    assert account["traits"] == {"address": {"city": "Paris", "zip": "75001"}, "plan": "pro", "seats": 3}
    # And a newer scalar replacing the address keeps older nested values out
    api.post(
        "/segment",
        message("group", userId="u1", groupId="g1", timestamp="2026-03-01T00:00:00Z", traits={"address": "unknown"}),
    )
    api.post(
        "/segment",
        message(
            "group",
            userId="u1",
            groupId="g1",
            timestamp="2026-02-15T00:00:00Z",
            traits={"address": {"street": "rue A"}},
        ),
    )
    assert api.get("/v1/accounts/g1")[1]["traits"]["address"] == "unknown"
