from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from segment_connector.domain.models.segment_rules import (
    AccountSegmentDefinition,
    AccountSegments,
    UserSegments,
    account_segment_names,
    user_segment_names,
)

USER_SEGMENTS = TypeAdapter(UserSegments)
ACCOUNT_SEGMENTS = TypeAdapter(AccountSegments)
NO_VALUE = object()


def leaf(trait, op, value=NO_VALUE):
    return {"trait": trait, "op": op} | ({} if value is NO_VALUE else {"value": value})


def user_matches(rule, traits=None, *, email=None, user_id=None, account_traits=None):
    definitions = USER_SEGMENTS.validate_python([{"name": "S", "rule": rule}])
    names = user_segment_names(
        definitions, traits=traits or {}, email=email, user_id=user_id, account_traits=account_traits
    )
    return names == ["S"]


def rejection(rule, adapter=USER_SEGMENTS):
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python([{"name": "S", "rule": rule}])
    return str(caught.value)


# --- operators ---------------------------------------------------------------------------------

OPS = [
    # op, rule value, trait value, matches
    ("eq", "pro", "pro", True),
    ("eq", "pro", "Pro", False),
    ("eq", 1, 1.0, True),
    ("eq", 1, Decimal("1"), True),
    ("eq", 0.1, Decimal("0.1"), True),
    ("eq", 1, 2, False),
    ("eq", 1, True, False),
    ("eq", True, 1, False),
    ("eq", True, True, True),
    ("eq", False, True, False),
    ("eq", 5, "5", False),
    ("eq", "a", ["a"], False),
    ("neq", "pro", "free", True),
    ("neq", "pro", "pro", False),
    ("neq", 1, Decimal("1.0"), False),
    ("neq", 1, True, True),
    ("in", ["a", "b"], "b", True),
    ("in", ["a", "b"], "c", False),
    ("in", [1, 2], Decimal("2"), True),
    ("in", [1], True, False),
    ("nin", ["a", "b"], "c", True),
    ("nin", ["a", "b"], "a", False),
    ("exists", NO_VALUE, "", True),
    ("exists", NO_VALUE, False, True),
    ("exists", NO_VALUE, None, False),
    ("missing", NO_VALUE, None, True),
    ("missing", NO_VALUE, 0, False),
    ("gt", 10, Decimal("10.5"), True),
    ("gt", 10, 10, False),
    ("gte", 10, Decimal("10"), True),
    ("gte", 10, 9, False),
    ("lt", 10, 9.99, True),
    ("lt", 10, 10, False),
    ("lte", 10.5, Decimal("10.5"), True),
    ("lte", 10, 11, False),
    ("gt", 0, True, False),
    ("gt", 5, "6", False),
    ("gt", "2024-01-05", "2024-01-06", True),
    ("gt", "2024-01-05", "2024-01-04", False),
    ("gt", "2024-01-05", "2024-01-05T10:00:00Z", False),
    ("gte", "2024-01-05", "2024-01-05T10:00:00Z", True),
    ("lte", "2024-01-05", "2024-01-05T23:59:59Z", True),
    ("lte", "2024-01-05", "2024-01-05T23:00:00-05:00", False),
    ("lt", "2024-01-05T10:00:00Z", "2024-01-05T09:59:59", True),
    ("lt", "2024-01-05T10:00:00Z", "2024-01-05T10:30:00+01:00", True),
    ("gt", "2024-01-05T10:00:00Z", "2024-01-05T10:30:00+01:00", False),
    ("gte", "2024-01-05T10:00:00", "2024-01-05T10:00:00Z", True),
    ("gt", "2024-01-05", "not a date", False),
    ("gt", "2024-01-05", 20240106, False),
    ("lt", 100, "2024-01-05", False),
    ("contains", "pro", "enterprise-pro", True),
    ("contains", "Pro", "enterprise-pro", False),
    ("contains", "b", ["a", "b"], True),
    ("contains", "c", ["a", "b"], False),
    ("contains", 2, [Decimal("2")], True),
    ("contains", 1, [True], False),
    ("contains", 1, "123", False),
    ("contains", "x", {"x": 1}, False),
    ("starts_with", "ent", "enterprise", True),
    ("starts_with", "ent", "Enterprise", False),
    ("starts_with", "1", 123, False),
    ("ends_with", "@acme.com", "a@acme.com", True),
    ("ends_with", "@acme.com", "a@acme.co", False),
    ("ends_with", "a", ["a"], False),
]


@pytest.mark.parametrize(("op", "value", "trait", "expected"), OPS)
def test_leaf_op_matches_trait_value(op, value, trait, expected):
    # Given a profile whose `plan` trait has a value, When a one-leaf rule tests it,
    # Then it matches exactly as the op's semantics say
    assert user_matches(leaf("plan", op, value), {"plan": trait}) is expected


@pytest.mark.parametrize("traits", [{}, {"plan": None}], ids=["absent", "null"])
@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "pro", False),
        ("in", ["pro"], False),
        ("gt", 1, False),
        ("lte", "2024-01-05", False),
        ("contains", "p", False),
        ("starts_with", "p", False),
        ("exists", NO_VALUE, False),
        ("missing", NO_VALUE, True),
        ("neq", "pro", True),
        ("nin", ["pro"], True),
    ],
)
def test_missing_trait_matches_only_missing_neq_and_nin(traits, op, value, expected):
    # Given a profile without a `plan` value, When a rule tests `plan`, Then only missing/neq/nin match
    assert user_matches(leaf("plan", op, value), traits) is expected


def test_evaluation_never_raises_on_odd_trait_values():
    # Given rules for every op and trait values of unexpected types
    rules = [
        leaf("x", "eq", 1), leaf("x", "neq", "a"), leaf("x", "in", [1, "a"]), leaf("x", "nin", [True]),
        leaf("x", "exists"), leaf("x", "missing"), leaf("x", "gt", 0), leaf("x", "lte", "2024-01-05"),
        leaf("x", "contains", "a"), leaf("x", "starts_with", "a"), leaf("x", "ends_with", "a"),
        leaf("x.y.z", "eq", 1),
    ]  # fmt: skip
    definitions = USER_SEGMENTS.validate_python([{"name": str(i), "rule": r} for i, r in enumerate(rules)])
    odd = [Decimal("NaN"), Decimal("sNaN"), float("inf"), {"y": [1]}, {1, 2}, "", "2024-13-45", object()]
    for value in odd:
        # When they are evaluated
        names = user_segment_names(definitions, traits={"x": value}, email=None, user_id=None, account_traits=None)
        # Then nothing raises and only "not equal"/"exists"-type rules match
        assert set(names) <= {"1", "3", "4"}, value


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (leaf("address.country", "eq", "FR"), True),
        (leaf("address.country", "eq", "DE"), False),
        (leaf("address.geo.lat", "gt", 48), True),
        (leaf("address.city", "missing"), True),
        (leaf("plan.tier", "exists"), False),  # `plan` is a string, not an object
        (leaf("address", "exists"), True),
    ],
)
def test_dotted_path_reads_nested_traits(rule, expected):
    # Given nested traits
    traits = {"plan": "pro", "address": {"country": "FR", "geo": {"lat": Decimal("48.85")}}}
    # When / Then
    assert user_matches(rule, traits) is expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (leaf("email", "ends_with", "@acme.com"), True),
        (leaf("email", "eq", "old@other.com"), False),  # the profile's email, not the `email` trait
        (leaf("user_id", "eq", "u-1"), True),
        (leaf("user_id", "eq", "u-2"), False),
        (leaf("account.plan", "eq", "enterprise"), True),
        (leaf("account.plan", "eq", "pro"), False),  # the user's own `plan` trait is not used
        (leaf("account.billing.seats", "gte", 10), True),
        (leaf("account", "eq", "acme"), True),  # bare `account` is an ordinary user trait
    ],
)
def test_user_rules_read_reserved_paths(rule, expected):
    # Given a user with an email, a user_id, own traits and a linked account
    traits = {"plan": "pro", "email": "old@other.com", "account": "acme"}
    account = {"plan": "enterprise", "billing": {"seats": Decimal("12")}}
    # When / Then
    assert user_matches(rule, traits, email="a@acme.com", user_id="u-1", account_traits=account) is expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (leaf("account.plan", "exists"), False),
        (leaf("account.plan", "eq", "pro"), False),
        (leaf("account.plan", "neq", "pro"), True),
        (leaf("email", "missing"), True),
        (leaf("user_id", "exists"), False),
    ],
)
def test_user_without_account_email_or_user_id_has_those_paths_missing(rule, expected):
    # Given an anonymous user with no linked account, When / Then
    assert user_matches(rule, {"plan": "pro"}) is expected


# --- composition and results -------------------------------------------------------------------

PAYING_NOT_FR = {
    "all": [
        {"any": [leaf("plan", "eq", "pro"), leaf("plan", "eq", "enterprise")]},
        {"not": leaf("country", "eq", "FR")},
    ]
}


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"plan": "pro", "country": "DE"}, True),
        ({"plan": "enterprise"}, True),
        ({"plan": "free", "country": "DE"}, False),
        ({"plan": "pro", "country": "FR"}, False),
        ({}, False),
    ],
)
def test_all_any_not_combine(traits, expected):
    # Given a rule "(plan is pro or enterprise) and country is not FR", When / Then
    assert user_matches(PAYING_NOT_FR, traits) is expected


def test_double_not_and_single_child_groups_are_transparent():
    rule = {"not": {"not": {"any": [{"all": [leaf("plan", "eq", "pro")]}]}}}
    assert user_matches(rule, {"plan": "pro"}) is True
    assert user_matches(rule, {"plan": "free"}) is False


def test_user_segment_names_are_the_matching_definitions_in_definition_order():
    # Given three definitions, two of which match, not in alphabetical order
    definitions = USER_SEGMENTS.validate_python(
        [
            {"name": "Zeta", "rule": leaf("plan", "exists")},
            {"name": "Alpha", "rule": leaf("plan", "eq", "free")},
            {"name": "Mid", "rule": leaf("email", "ends_with", "@acme.com")},
        ]
    )
    # When
    names = user_segment_names(
        definitions, traits={"plan": "pro"}, email="a@acme.com", user_id=None, account_traits=None
    )
    # Then
    assert names == ["Zeta", "Mid"]


def test_account_segments_loaded_from_json_match_dynamodb_decimals():
    # Given account segments loaded from JSON (floats/ints) and DynamoDB traits (Decimal)
    definitions = ACCOUNT_SEGMENTS.validate_json(
        """[{"name": "Big", "rule": {"all": [{"trait": "seats", "op": "gte", "value": 10},
                                            {"trait": "mrr", "op": "eq", "value": 99.9}]}},
            {"name": "Small", "rule": {"trait": "seats", "op": "lt", "value": 10}},
            {"name": "EU", "rule": {"trait": "hq.region", "op": "in", "value": ["eu-west", "eu-central"]}}]"""
    )
    traits = {"seats": Decimal("10"), "mrr": Decimal("99.9"), "hq": {"region": "eu-west"}}
    # When / Then
    assert account_segment_names(definitions, traits=traits) == ["Big", "EU"]
    assert account_segment_names(definitions, traits={"seats": Decimal("3")}) == ["Small"]


# --- validation --------------------------------------------------------------------------------

OK = leaf("plan", "exists")


@pytest.mark.parametrize(
    ("rule", "loc", "problem"),
    [
        (leaf("plan", "equals", 1), "0.rule.op", "Input should be 'eq', 'neq'"),
        (leaf("plan", "eq"), "0.rule", "op 'eq' requires a 'value'"),
        (leaf("plan", "gt"), "0.rule", "op 'gt' requires a 'value'"),
        (leaf("plan", "exists", True), "0.rule", "op 'exists' takes no 'value'"),
        (leaf("plan", "missing", None), "0.rule", "op 'missing' takes no 'value'"),
        (leaf("plan", "in", "pro"), "0.rule", "op 'in' requires a non-empty list"),
        (leaf("plan", "nin", {"a": 1}), "0.rule", "op 'nin' requires a non-empty list"),
        (leaf("plan", "in", []), "0.rule", "op 'in' requires a non-empty list"),
        (leaf("plan", "in", [["a"]]), "0.rule", "list items must be strings, numbers or booleans"),
        (leaf("plan", "gt", "soon"), "0.rule", "op 'gt' requires a number or an ISO-8601 date"),
        (leaf("plan", "lte", True), "0.rule", "op 'lte' requires a number or an ISO-8601 date"),
        (leaf("plan", "lt", ["2024-01-05"]), "0.rule", "op 'lt' requires a number or an ISO-8601"),
        (leaf("plan", "starts_with", 5), "0.rule", "op 'starts_with' requires a string"),
        (leaf("plan", "eq", None), "0.rule", "'value' must not be null"),
        (leaf("plan", "eq", ["pro"]), "0.rule", "op 'eq' requires a string, number or boolean"),
        (leaf("plan", "contains", {"a": 1}), "0.rule", "op 'contains' requires a string, number"),
        ({"all": []}, "0.rule.all", "List should have at least 1 item"),
        ({"any": [OK, {"any": []}]}, "0.rule.any.1.any", "List should have at least 1 item"),
        ({"all": None}, "0.rule.all", "must not be null"),
        ({**OK, "negate": True}, "0.rule.negate", "Extra inputs are not permitted"),
        ({"all": [OK], "any": [OK]}, "0.rule", "only one of 'all', 'any', 'not'"),
        ({"any": [OK], "not": OK}, "0.rule", "only one of 'all', 'any', 'not'"),
        ({"not": OK, "trait": "plan"}, "0.rule", "'not' cannot be combined with 'trait'/'op'/'value'"),
        ({"trait": "plan"}, "0.rule", "needs 'all', 'any', 'not', or a leaf's 'trait' and 'op'"),
        ({}, "0.rule", "needs 'all', 'any', 'not', or a leaf's 'trait' and 'op'"),
        (leaf("address..country", "exists"), "0.rule.trait", "trait path 'address..country'"),
        (leaf("", "exists"), "0.rule.trait", "trait path ''"),
        ({"all": [OK, {"not": leaf("plan", "bogus")}]}, "0.rule.all.1.not.op", "Input should be 'eq'"),
    ],
)
def test_invalid_rule_is_rejected_with_location_and_problem(rule, loc, problem):
    # Given an invalid rule, When the definitions are loaded, Then the error names where and what
    message = rejection(rule)
    assert f"\n{loc}\n" in message
    assert problem in message


@pytest.mark.parametrize(
    ("definitions", "loc", "problem"),
    [
        ([{"name": "", "rule": OK}], "0.name", "at least 1 character"),
        ([{"name": "   ", "rule": OK}], "0.name", "at least 1 character"),
        ([{"rule": OK}], "0.name", "Field required"),
        ([{"name": "S", "rule": OK, "enabled": True}], "0.enabled", "Extra inputs are not permitted"),
    ],
)
def test_invalid_segment_definition_is_rejected(definitions, loc, problem):
    with pytest.raises(ValidationError) as caught:
        USER_SEGMENTS.validate_python(definitions)
    assert f"\n{loc}\n" in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("adapter", [USER_SEGMENTS, ACCOUNT_SEGMENTS])
def test_duplicate_segment_names_are_rejected(adapter):
    # Given two definitions whose names only differ by surrounding spaces
    definitions = [
        {"name": "Paying", "rule": OK},
        {"name": "Other", "rule": OK},
        {"name": " Paying ", "rule": OK},
    ]
    # When / Then
    with pytest.raises(ValidationError, match=r"duplicate segment name 'Paying' \(items 0 and 2\)"):
        adapter.validate_python(definitions)


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        (leaf("email", "exists"), "rule.trait: 'email'"),
        (leaf("user_id", "eq", "u-1"), "rule.trait: 'user_id'"),
        ({"any": [OK, {"not": leaf("account.plan", "eq", "pro")}]}, "rule.any.1.not.trait: 'account.plan'"),
    ],
)
def test_account_segments_reject_user_only_paths(rule, where):
    # Given an account segment testing a user-only path, When loaded, Then it is rejected
    message = rejection(rule, ACCOUNT_SEGMENTS)
    assert "\n0.rule\n" in message
    assert f"{where} is only allowed in user segments" in message


def test_account_segments_accept_plain_and_dotted_trait_paths():
    rule = {"all": [leaf("plan", "eq", "pro"), leaf("billing.email", "exists"), leaf("account", "exists")]}
    definition = AccountSegmentDefinition.model_validate({"name": "Acct", "rule": rule})
    traits = {"plan": "pro", "billing": {"email": "b@acme.com"}, "account": "x"}
    assert account_segment_names([definition], traits=traits) == ["Acct"]
