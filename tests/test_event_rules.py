"""Event conditions in segment rules and computed traits, evaluated over a user's events (issue 15):
the grammar and its errors, every count op and computed type, the window edges, and properties
checked against a straightforward recount."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from segment_connector.domain.activity import MISSING, Activity, Occurrence
from segment_connector.domain.models.event_rules import ComputedTrait, EventFilter
from segment_connector.domain.models.segment_rules import AccountSegments, UserSegments, user_segment_names
from segment_connector.domain.models.settings import ConnectorSettings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
USER_SEGMENTS = TypeAdapter(UserSegments)


def occurrence(name: str, days_ago: float, message_id: str, **properties: Any) -> Occurrence:
    return Occurrence(NOW - timedelta(days=days_ago), name, message_id, properties)


def segments_of(rule: dict[str, Any], activity: Activity, traits: dict[str, Any] | None = None) -> list[str]:
    definitions = USER_SEGMENTS.validate_python([{"name": "S", "rule": rule}])
    return user_segment_names(
        definitions, traits=traits or {}, email=None, user_id=None, account_traits=None, events=activity.count
    )


def computed(spec: dict[str, Any], activity: Activity) -> Any:
    return activity.computed(ComputedTrait.model_validate({"name": "t", "event": "Order Completed", **spec}))


ORDERS = [
    occurrence("Order Completed", 40, "m1", total=20, category="tents"),
    occurrence("Order Completed", 10, "m2", total=5.5, category="bags"),
    occurrence("Order Completed", 2, "m3", total=100, category="tents"),
    occurrence("Product Viewed", 1, "m4", sku="x"),
    occurrence("page", 3, "m5", path="/pricing"),
]


# -- segment rules: event leaves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        ({"op": "eq", "value": 2}, True),
        ({"op": "neq", "value": 2}, False),
        ({"op": "gt", "value": 1}, True),
        ({"op": "gte", "value": 3}, False),
        ({"op": "lt", "value": 3}, True),
        ({"op": "lte", "value": 1}, False),
    ],
)
def test_each_count_op_compares_the_events_in_the_window(count: dict[str, Any], expected: bool) -> None:
    # Given two orders in the last 30 days (and one older)
    activity = Activity(NOW, ORDERS)
    # When a rule counts them
    names = segments_of({"event": "Order Completed", "count": count, "within_days": 30}, activity)
    # Then the count (2) is compared with the op
    assert (names == ["S"]) is expected


def test_an_event_leaf_defaults_to_at_least_once_over_every_stored_event() -> None:
    activity = Activity(NOW, ORDERS)
    assert segments_of({"event": "Order Completed"}, activity) == ["S"]
    assert segments_of({"event": "Order Completed", "count": {"value": 3}}, activity) == ["S"]
    assert segments_of({"event": "Signed Up"}, activity) == []


def test_never_did_it_is_not_of_an_event_leaf_within_its_window() -> None:
    activity = Activity(NOW, ORDERS)
    assert segments_of({"not": {"event": "Signed Up"}}, activity) == ["S"]
    assert segments_of({"not": {"event": "Order Completed", "within_days": 5}}, activity) == []
    assert segments_of({"not": {"event": "Order Completed", "within_days": 1}}, activity) == ["S"]


def test_page_and_screen_name_the_stored_page_and_screen_calls() -> None:
    activity = Activity(NOW, ORDERS)
    rule = {"event": "page", "where": {"property": "path", "op": "eq", "value": "/pricing"}}
    assert segments_of(rule, activity) == ["S"]
    assert segments_of({"event": "screen"}, activity) == []
    assert Occurrence.rule_name("page", "Pricing") == "page"
    assert Occurrence.rule_name("track", "Pricing") == "Pricing"


def test_where_tests_the_event_properties_with_the_trait_grammar() -> None:
    activity = Activity(NOW, ORDERS)
    tents = {"property": "category", "op": "eq", "value": "tents"}
    big = {"property": "total", "op": "gte", "value": 20}
    both = {"event": "Order Completed", "count": {"op": "eq", "value": 2}, "where": {"all": [tents, big]}}
    assert segments_of(both, activity) == ["S"]
    within = {"event": "Order Completed", "within_days": 30, "where": {"all": [tents, big]}}
    assert segments_of(within, activity) == ["S"]
    assert segments_of({**within, "count": {"op": "gt", "value": 1}}, activity) == []
    assert segments_of({**within, "where": {"not": tents}}, activity) == ["S"]


def test_event_leaves_mix_with_trait_leaves() -> None:
    activity = Activity(NOW, ORDERS)
    rule = {"all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"event": "Product Viewed", "within_days": 7}]}
    assert segments_of(rule, activity, {"plan": "pro"}) == ["S"]
    assert segments_of(rule, activity, {"plan": "free"}) == []


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"event": "x", "op": "eq", "value": 1}, "0.rule", "an event leaf takes no op, value"),
        ({"event": "x", "count": {"op": "in", "value": 1}}, "0.rule.count.op", "eq"),
        ({"event": "x", "count": {"op": "eq", "value": -1}}, "0.rule.count.value", "greater than or equal to 0"),
        ({"event": "x", "count": {"op": "eq", "value": 1.5}}, "0.rule.count.value", "integer"),
        ({"event": "x", "within_days": 0}, "0.rule.within_days", "greater than or equal to 1"),
        ({"event": "x", "where": {"trait": "a", "op": "exists"}}, "0.rule.where.trait", "Extra inputs"),
        ({"event": "x", "where": {"property": "a", "op": "gt", "value": "x"}}, "0.rule.where", "number or an ISO"),
        ({"event": ""}, "0.rule.event", "at least 1"),
        ({"trait": "a", "op": "exists", "within_days": 3}, "0.rule", "a trait leaf takes no within_days"),
        ({"event": "x", "surprise": 1}, "0.rule.surprise", "Extra inputs"),
    ],
)
def test_an_invalid_event_leaf_is_a_validation_error_naming_the_field(rule: Any, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        USER_SEGMENTS.validate_python([{"name": "S", "rule": rule}])
    errors = {".".join(str(p) for p in e["loc"]): e["msg"] for e in raised.value.errors()}
    assert field in errors, errors
    assert words in errors[field]


def test_account_segments_refuse_event_leaves() -> None:
    with pytest.raises(ValidationError, match="event conditions are only allowed in user segments"):
        TypeAdapter(AccountSegments).validate_python([{"name": "A", "rule": {"event": "x"}}])


# -- window edges ---------------------------------------------------------------------------------------


def test_an_event_counts_while_its_timestamp_is_later_than_now_minus_the_window() -> None:
    # Given an order exactly one day before a moment
    at = NOW - timedelta(days=1)
    events = EventFilter("Order Completed", within_days=1)
    inside = Activity(NOW - timedelta(microseconds=1), [Occurrence(at, "Order Completed", "m")])
    edge = Activity(NOW, [Occurrence(at, "Order Completed", "m")])
    # Then it counts just before the edge, and not at it
    assert inside.count(events) == 1
    assert edge.count(events) == 0
    # And the edge is the next change
    assert inside.next_change([events]) == NOW


def test_next_change_is_the_first_occurrence_to_leave_any_windowed_filter() -> None:
    activity = Activity(NOW, ORDERS)
    filters = [
        EventFilter("Order Completed", within_days=30),  # m2 (10 days ago) leaves in 20 days
        EventFilter("Product Viewed", within_days=7),  # m4 (1 day ago) leaves in 6 days
        EventFilter("page"),  # no window: never changes by itself
    ]
    assert activity.next_change(filters) == NOW + timedelta(days=6)
    assert activity.next_change([EventFilter("page")]) is None
    assert activity.next_change([EventFilter("Signed Up", within_days=3)]) is None


def test_an_event_with_the_same_message_id_under_two_identities_counts_once() -> None:
    twice = [occurrence("Order Completed", 1, "same"), occurrence("Order Completed", 1, "same")]
    assert Activity(NOW, twice).count(EventFilter("Order Completed")) == 1


# -- computed traits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "count"}, 3),
        ({"type": "count", "within_days": 30}, 2),
        ({"type": "sum", "property": "total"}, Decimal("125.5")),
        ({"type": "avg", "property": "total", "within_days": 30}, Decimal("52.75")),
        ({"type": "avg", "property": "total"}, pytest.approx(125.5 / 3)),
        ({"type": "min", "property": "total"}, Decimal("5.5")),
        ({"type": "max", "property": "total"}, Decimal(100)),
        ({"type": "first", "property": "category"}, "tents"),
        ({"type": "last", "property": "category", "within_days": 5}, "tents"),
        ({"type": "last", "property": "total"}, 100),
        ({"type": "most_frequent", "property": "category"}, "tents"),
        ({"type": "unique_list", "property": "category"}, ["bags", "tents"]),
        ({"type": "unique_count", "property": "category"}, 2),
        ({"type": "sum", "property": "total", "where": {"property": "category", "op": "eq", "value": "tents"}}, 120),
    ],
)
def test_each_computed_type_over_the_matching_events(spec: dict[str, Any], expected: Any) -> None:
    assert computed(spec, Activity(NOW, ORDERS)) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("count", 0),
        ("unique_count", 0),
        ("unique_list", []),
        ("sum", MISSING),
        ("avg", MISSING),
        ("min", MISSING),
        ("max", MISSING),
        ("first", MISSING),
        ("last", MISSING),
        ("most_frequent", MISSING),
    ],
)
def test_without_a_matching_event_counts_are_zero_lists_empty_others_absent(kind: str, expected: Any) -> None:
    spec = {"type": kind} | ({} if kind == "count" else {"property": "total"})
    assert computed({**spec, "event": "Never Happened"}, Activity(NOW, ORDERS)) == expected
    traits = [ComputedTrait.model_validate({"name": "t", **spec, "event": "Never Happened"})]
    assert Activity(NOW, ORDERS).computed_traits(traits) == ({} if expected is MISSING else {"t": expected})


def test_most_frequent_breaks_ties_alphabetically_and_unique_list_is_sorted() -> None:
    events = [occurrence("Order Completed", i, f"m{i}", c=c) for i, c in enumerate(["pear", "apple", "pear", "apple"])]
    activity = Activity(NOW, events)
    assert computed({"type": "most_frequent", "property": "c"}, activity) == "apple"
    mixed = [occurrence("Order Completed", i, f"n{i}", v=v) for i, v in enumerate([10, "b", 2, "a", 2.0, True])]
    assert computed({"type": "unique_list", "property": "v"}, Activity(NOW, mixed)) == [2, 10, "a", "b", True]
    assert computed({"type": "unique_count", "property": "v"}, Activity(NOW, mixed)) == 5


def test_numeric_types_ignore_values_that_are_not_numbers() -> None:
    events = [occurrence("Order Completed", 1, "a", total="12"), occurrence("Order Completed", 2, "b", total=True)]
    assert computed({"type": "sum", "property": "total"}, Activity(NOW, events)) is MISSING
    events.append(occurrence("Order Completed", 3, "c", total=Decimal("1E+2")))
    assert computed({"type": "max", "property": "total"}, Activity(NOW, events)) == 100


@pytest.mark.parametrize(
    ("trait", "words"),
    [
        ({"name": "hull_orders", "type": "count", "event": "x"}, "must not start with 'hull_'"),
        ({"name": "x" * 101, "type": "count", "event": "x"}, "at most 100"),
        ({"name": "", "type": "count", "event": "x"}, "at least 1"),
        ({"name": "t", "type": "count", "event": "x", "property": "p"}, "takes no 'property'"),
        ({"name": "t", "type": "sum", "event": "x"}, "needs 'property': a numeric property"),
        ({"name": "t", "type": "median", "event": "x", "property": "p"}, "most_frequent"),
        ({"name": "t", "type": "first", "event": "x", "property": "a..b"}, "dotted path"),
    ],
)
def test_an_invalid_computed_trait_is_refused(trait: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        ConnectorSettings.model_validate({"computed_traits": [trait]})


def test_settings_refuse_duplicate_names_and_windows_beyond_the_retention() -> None:
    two = [{"name": "n", "type": "count", "event": "a"}, {"name": "n", "type": "count", "event": "b"}]
    with pytest.raises(ValidationError, match="duplicate computed trait name 'n'"):
        ConnectorSettings.model_validate({"computed_traits": two})
    long = {"name": "S", "rule": {"any": [{"trait": "a", "op": "exists"}, {"event": "x", "within_days": 31}]}}
    with pytest.raises(ValidationError, match=r"rule.any.1.within_days is 31, more than event_retention_days \(30\)"):
        ConnectorSettings.model_validate({"event_retention_days": 30, "segments": [long]})
    ok = ConnectorSettings.model_validate({"event_retention_days": 31, "segments": [long]})
    assert ok.reads_events()
    assert not ConnectorSettings().reads_events()


# -- properties: the evaluation against a straightforward recount ------------------------------------

NAMES = ["Order Completed", "Product Viewed", "page"]
values = st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", "c"]), st.none(), st.booleans())


@st.composite
def occurrences(draw: st.DrawFn) -> list[Occurrence]:
    """A user's events: unique messageIds, some stored twice (under two of the user's identities)."""
    count = draw(st.integers(0, 40))
    events = [
        Occurrence(
            NOW - timedelta(minutes=draw(st.integers(0, 60 * 24 * 12))),
            draw(st.sampled_from(NAMES)),
            f"m{i}",
            {"v": draw(values)},
        )
        for i in range(count)
    ]
    copies = draw(st.lists(st.sampled_from(events), max_size=5)) if events else []
    return events + copies


def recount(events: list[Occurrence], name: str, days: int | None, now: datetime) -> list[Occurrence]:
    seen: set[str] = set()
    kept = []
    for o in sorted(events, key=lambda o: (o.at, o.message_id)):
        if o.message_id in seen:
            continue
        seen.add(o.message_id)
        if o.name == name and o.at <= now and (days is None or now - o.at < timedelta(days=days)):
            kept.append(o)
    return kept


@settings(max_examples=200, deadline=None)
@given(events=occurrences(), name=st.sampled_from(NAMES), days=st.one_of(st.none(), st.integers(1, 10)))
def test_counts_and_numeric_values_equal_a_recount_of_the_events(events, name, days) -> None:
    activity = Activity(NOW, events)
    kept = recount(events, name, days, NOW)
    assert activity.count(EventFilter(name, days)) == len(kept)
    numbers = [o.properties["v"] for o in kept if isinstance(o.properties["v"], int) and o.properties["v"] is not True]
    numbers = [n for n in numbers if not isinstance(n, bool)]
    spec = {"event": name, "property": "v", "within_days": days}
    assert computed({**spec, "type": "sum"}, activity) == (sum(numbers) if numbers else MISSING)
    assert computed({**spec, "type": "max"}, activity) == (max(numbers) if numbers else MISSING)
    present = [o.properties["v"] for o in kept if o.properties["v"] is not None]
    assert computed({**spec, "type": "last"}, activity) == (present[-1] if present else MISSING)


@settings(max_examples=200, deadline=None)
@given(events=occurrences(), days=st.integers(1, 10), order=st.randoms(use_true_random=False))
def test_nothing_changes_before_next_change_and_something_leaves_at_it(events, days, order) -> None:
    filters = [EventFilter(name, days) for name in NAMES]
    shuffled = list(events)
    order.shuffle(shuffled)
    activity = Activity(NOW, shuffled)
    counts = [activity.count(f) for f in filters]
    assert counts == [Activity(NOW, events).count(f) for f in filters]  # the order of reading does not matter
    edge = activity.next_change(filters)
    if edge is None:
        assert all(c == 0 for c in counts)
        return
    assert edge > NOW
    before = Activity(edge - timedelta(microseconds=1), events)
    assert [before.count(f) for f in filters] == counts
    at = Activity(edge, events)
    assert sum(at.count(f) for f in filters) < sum(counts)
