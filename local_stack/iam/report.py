"""`make iam`: per function, the actions its role grants, the ones its calls used, and the grants
never used; non-zero on a denied call or an unused grant that iam-allowlist.yaml does not excuse."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from local_stack.iam.policy import Statement, _match
from local_stack.iam.roles import Role


@dataclass(frozen=True)
class Excuse:
    function: str
    action: str
    resource: str
    reason: str

    def covers(self, function: str, action: str, resource: str | None) -> bool:
        return (
            _match(self.function, function)
            and _match(self.action, action, ignore_case=True)
            and (resource is None or _match(self.resource, resource))
        )


@dataclass(frozen=True)
class Unused:
    function: str
    statement: str
    action: str  # the Action entry as written
    resource: str | None  # a Resource entry never matched (None: the whole action was never used)
    excuse: Excuse | None


@dataclass
class FunctionReport:
    function: str
    granted: list[str]
    used: list[str]
    denied: list[str]
    unused: list[Unused]


def load_calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_allowlist(path: Path) -> list[Excuse]:
    if not path.exists():
        return []
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    excuses = []
    for entry in entries:
        if not str(entry.get("reason") or "").strip():
            raise ValueError(f"{path}: every entry needs a one-line reason: {entry}")
        excuses.append(
            Excuse(
                function=str(entry.get("function", "*")),
                action=str(entry["action"]),
                resource=str(entry.get("resource", "*")),
                reason=str(entry["reason"]).strip(),
            )
        )
    return excuses


def build_reports(
    roles: Mapping[str, Role], calls: Iterable[Mapping[str, Any]], excuses: Sequence[Excuse]
) -> list[FunctionReport]:
    used_actions: dict[str, set[str]] = defaultdict(set)
    denied: dict[str, set[str]] = defaultdict(set)
    used_entries: set[tuple[str, str, str, int]] = set()  # (function, statement, "a"/"r", index)
    for call in calls:
        function = str(call["function"])
        if not call["allowed"]:
            denied[function].add(f"{call['action']} on {call['resource']}")
            continue
        used_actions[function].add(str(call["action"]))
        for grant in call.get("granted_by", []):
            for index in grant.get("actions", []):
                used_entries.add((function, grant["statement"], "a", index))
            for index in grant.get("resources", []):
                used_entries.add((function, grant["statement"], "r", index))
    reports = []
    for function in sorted(set(roles) | set(denied)):
        role = roles.get(function)
        statements = role.statements if role else ()
        reports.append(
            FunctionReport(
                function=function,
                granted=sorted({action for s in statements if s.effect == "Allow" for action in s.actions}),
                used=sorted(used_actions[function]),
                denied=sorted(denied[function]),
                unused=[
                    u for s in statements if s.effect == "Allow" for u in _unused(function, s, used_entries, excuses)
                ],
            )
        )
    return reports


def _unused(
    function: str, statement: Statement, used: set[tuple[str, str, str, int]], excuses: Sequence[Excuse]
) -> list[Unused]:
    found = []
    for index, action in enumerate(statement.actions):
        if (function, statement.sid, "a", index) not in used:
            excuse = next((e for e in excuses if e.covers(function, action, None)), None)
            found.append(Unused(function, statement.sid, action, None, excuse))
    for index, resource in enumerate(statement.resources):
        if (function, statement.sid, "r", index) not in used:
            excuse = next((e for e in excuses if any(e.covers(function, a, resource) for a in statement.actions)), None)
            found.append(Unused(function, statement.sid, "|".join(statement.actions), resource, excuse))
    return found


def render(reports: Sequence[FunctionReport]) -> tuple[str, bool]:
    """The table and whether everything holds (no denied call, no unexcused unused grant)."""
    lines: list[str] = []
    ok = True
    for report in reports:
        lines.append(f"{report.function}")
        lines.append(f"  granted: {', '.join(report.granted) or '-'}")
        lines.append(f"  used:    {', '.join(report.used) or '-'}")
        for denial in report.denied:
            ok = False
            lines.append(f"  DENIED:  {denial}")
        for unused in report.unused:
            what = unused.action if unused.resource is None else f"{unused.action} on {unused.resource}"
            if unused.excuse is None:
                ok = False
                lines.append(f"  UNUSED:  {what} ({unused.statement}): remove it, or test what needs it")
            else:
                lines.append(f"  unused, allowed: {what} ({unused.excuse.reason})")
    return "\n".join(lines), ok
