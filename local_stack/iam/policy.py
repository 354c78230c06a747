"""IAM's evaluation of identity policies: an explicit Deny wins, then an Allow, else denied.

Action/NotAction and Resource/NotResource with `*` and `?` wildcards (actions compared without
case). A Condition is evaluated only for the operators and keys given in the request context;
anything else cannot be decided, and then the statement does not grant and does deny:
conservative, so that a test never passes on a grant AWS might not give.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Statement:
    """One statement of a policy, intrinsics resolved. `sid` names it in reports."""

    sid: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, sid: str, raw: Mapping[str, Any]) -> Statement:
        return cls(
            sid=str(raw.get("Sid") or sid),
            effect=str(raw.get("Effect", "")),
            actions=_strings(raw.get("Action")),
            not_actions=_strings(raw.get("NotAction")),
            resources=_strings(raw.get("Resource")),
            not_resources=_strings(raw.get("NotResource")),
            condition=dict(raw.get("Condition") or {}),
        )

    def matches_action(self, action: str) -> bool:
        if self.actions:
            return any(_match(pattern, action, ignore_case=True) for pattern in self.actions)
        return bool(self.not_actions) and not any(
            _match(pattern, action, ignore_case=True) for pattern in self.not_actions
        )

    def matching_action_patterns(self, action: str) -> list[int]:
        """Indexes of the Action entries that match (for the report of grants never used)."""
        return [index for index, pattern in enumerate(self.actions) if _match(pattern, action, ignore_case=True)]

    def matches_resource(self, resource: str) -> bool:
        if self.resources:
            return any(_match(pattern, resource) for pattern in self.resources)
        return bool(self.not_resources) and not any(_match(pattern, resource) for pattern in self.not_resources)

    def matching_resource_patterns(self, resource: str) -> list[int]:
        return [index for index, pattern in enumerate(self.resources) if _match(pattern, resource)]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    granted_by: tuple[Statement, ...] = ()  # the Allow statements that grant it (empty if denied)
    denied_by: Statement | None = None  # an explicit (or undecidable) Deny
    reason: str = ""


def decide(statements: Sequence[Statement], action: str, resource: str, context: Mapping[str, str]) -> Decision:
    granting: list[Statement] = []
    for statement in statements:
        if not (statement.matches_action(action) and statement.matches_resource(resource)):
            continue
        outcome = condition_holds(statement.condition, context)
        if statement.effect == "Deny" and outcome is not False:
            return Decision(False, denied_by=statement, reason="explicit deny")
        if statement.effect == "Allow" and outcome is True:
            granting.append(statement)
    if granting:
        return Decision(True, granted_by=tuple(granting))
    return Decision(False, reason="no identity-based policy allows the action")


_OPERATORS = {
    "StringEquals": lambda value, wanted: value == wanted,
    "StringNotEquals": lambda value, wanted: value != wanted,
    "StringEqualsIgnoreCase": lambda value, wanted: value.lower() == wanted.lower(),
    "StringLike": lambda value, wanted: _match(wanted, value),
    "StringNotLike": lambda value, wanted: not _match(wanted, value),
}


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool | None:
    """True/False when every block can be decided from `context`; None when one cannot."""
    result = True
    for operator, block in condition.items():
        test = _OPERATORS.get(operator)
        if test is None or not isinstance(block, Mapping):
            return None
        for key, wanted in block.items():
            value = context.get(key.lower())
            if value is None:
                return None
            negated = operator.startswith("StringNot")
            checks = [test(value, str(item)) for item in _strings(wanted)]
            if not (all(checks) if negated else any(checks)):
                result = False
    return result


def statements_of(policy_name: str, document: Mapping[str, Any]) -> list[Statement]:
    raw = document.get("Statement", [])
    raw_list = [raw] if isinstance(raw, Mapping) else list(raw)
    return [Statement.parse(f"{policy_name}#{index}", item) for index, item in enumerate(raw_list)]


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(str(item) for item in value)
    return (str(value),)


def _match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _compiled(pattern, ignore_case).fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM knows only * and ? (no character classes as in fnmatch).
    expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(expression, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)
