"""The console's segment preview: a rule (not saved) on a sample of the stored profiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from segment_connector.domain.errors import BadRequest
from segment_connector.domain.explain import field_errors, summary
from segment_connector.domain.models.segment_rules import (
    AccountSegmentDefinition,
    UserSegmentDefinition,
    account_segment_names,
)
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.ops.console import SAMPLE_PER_SEGMENT, SAMPLE_SEGMENTS, json_object
from segment_connector.store.profile_store import ProfileStore

EVENT_SAMPLE_PER_SEGMENT = 60  # users per scan segment when the rule reads events (a Query each)
PREVIEW_EXAMPLES = 5


def preview(store: ProfileStore, stored_settings: Callable[[], ConnectorSettings], body: bytes) -> dict[str, Any]:
    """How many profiles of a sample a rule matches, and a few of them (`stored_settings`: the valid
    stored settings, read only for a user rule)."""
    from segment_connector.domain.models.items import Account

    request = json_object(body, "the body")
    kind = request.get("kind", "user")
    if kind not in ("user", "account"):
        raise BadRequest("kind must be user or account", [{"field": "kind", "error": f"got {kind!r}"}])
    rule = {"name": "preview", "rule": request.get("rule")}
    try:
        if kind == "user":
            user_definition = UserSegmentDefinition.model_validate(rule)
        else:
            account_definition = AccountSegmentDefinition.model_validate(rule)
    except ValidationError as error:
        problems = field_errors(error)
        raise BadRequest(f"the rule cannot be previewed: {summary(problems)}", problems) from None
    if kind == "user":
        return _preview_users(store, stored_settings(), user_definition)
    items = store.inventory.sample_kinds([kind], SAMPLE_PER_SEGMENT, SAMPLE_SEGMENTS)
    matched = [
        {"id": account.group_id, "traits": account.traits}
        for account in (Account.model_validate(item) for item in items)
        if account_segment_names([account_definition], traits=account.traits)
    ]
    return {"kind": kind, "sampled": len(items), "matched": len(matched), "examples": matched[:PREVIEW_EXAMPLES]}


def _preview_users(store: ProfileStore, stored: ConnectorSettings, definition: UserSegmentDefinition) -> dict[str, Any]:
    """The rule on a sample of users, with the stored settings' computed traits in place of
    received ones. A rule that reads events (an event leaf, or a trait leaf on a computed trait)
    reads each sampled user's events: one Query per event partition, so a smaller sample."""
    from segment_connector.domain.models.items import Account, UserProfile
    from segment_connector.domain.outbound_view import Rules
    from segment_connector.views import profiles

    fields = {name: getattr(stored, name) for name in type(stored).model_fields}
    settings = type(stored).model_construct(**{**fields, "segments": [definition]})  # nothing cached
    problems = _window_problems(definition, settings.event_retention_days)
    if problems:
        raise BadRequest(f"the rule cannot be previewed: {summary(problems)}", problems)
    reads = _reads_events(definition, settings)
    items = store.inventory.sample_kinds(
        ["user"], EVENT_SAMPLE_PER_SEGMENT if reads else SAMPLE_PER_SEGMENT, SAMPLE_SEGMENTS
    )
    users = [UserProfile.model_validate(item) for item in items]
    rules = Rules(settings)
    accounts: dict[str, Account] = {}
    if rules.uses_account_traits:
        accounts = store.profiles.accounts({user.account_id for user in users if user.account_id})
    matched = []
    for user in users:
        activity = profiles.user_activity(store, settings, user) if reads else None
        if rules.user_segments(user, accounts.get(user.account_id or ""), activity):
            traits = rules.user_traits(user, activity)
            matched.append({"id": user.uid, "user_id": user.user_id, "email": user.email, "traits": traits})
    return {"kind": "user", "sampled": len(items), "matched": len(matched), "examples": matched[:PREVIEW_EXAMPLES]}


def _reads_events(definition: UserSegmentDefinition, settings: ConnectorSettings) -> bool:
    """Whether a rule reads the user's events: an event leaf, or a trait leaf on a computed trait."""
    computed = {trait.name for trait in settings.computed_traits}
    return any(
        leaf.events is not None or (leaf.trait or "").split(".")[0] in computed or (leaf.trait or "") in computed
        for _, leaf in definition.rule.leaves()
    )


def _window_problems(definition: UserSegmentDefinition, retention_days: int) -> list[dict[str, str]]:
    """An event leaf looking further back than the stored settings keep events (as saving would say)."""
    return [
        {
            "field": f"{loc}.within_days",
            "error": f"{leaf.events.within_days} is more than event_retention_days ({retention_days}): "
            "older events are no longer stored",
        }
        for loc, leaf in definition.rule.leaves()
        if leaf.events is not None and (leaf.events.within_days or 0) > retention_days
    ]
