"""Each function's execution role, as `sam deploy` creates it, for one local deployment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_stack.iam.intrinsics import NO_VALUE, Deployment, Resolver
from local_stack.iam.policy import Statement, statements_of
from local_stack.iam.translate import translated_template

MANAGED_POLICIES: dict[str, Any] = json.loads(
    Path(__file__).with_name("managed_policies.json").read_text(encoding="utf-8")
)


@dataclass(frozen=True)
class Role:
    function: str  # the function's logical id
    statements: tuple[Statement, ...]
    unknown_managed_policies: tuple[str, ...] = ()  # grant nothing here (their documents are not known)


def function_roles(template_text: str, deployment: Deployment) -> dict[str, Role]:
    """{function logical id: its role}, from SAM's translation of the template."""
    translated = translated_template(template_text)
    resolver = Resolver(translated, deployment)
    resources = translated.get("Resources", {})
    roles: dict[str, Role] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        role_ref = (resource.get("Properties") or {}).get("Role")
        role_id = _role_logical_id(role_ref)
        if role_id is None or role_id not in resources:
            continue
        roles[logical_id] = _role(logical_id, resources[role_id].get("Properties") or {}, resolver)
    return roles


def _role_logical_id(reference: Any) -> str | None:
    if isinstance(reference, Mapping) and "Fn::GetAtt" in reference:
        target = reference["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".", 1)[0])
    return None


def _role(function: str, properties: Mapping[str, Any], resolver: Resolver) -> Role:
    """Statements are named <policy>#<index in the template>: the same statement keeps its name in
    every deployment, whether or not a condition (Fn::If) leaves others out."""
    statements: list[Statement] = []
    for policy in properties.get("Policies") or []:
        name = str(resolver.resolve(policy.get("PolicyName")))
        raw = (policy.get("PolicyDocument") or {}).get("Statement", [])
        for index, item in enumerate([raw] if isinstance(raw, Mapping) else raw):
            resolved = resolver.resolve(item)
            if resolved is not NO_VALUE:
                statements.append(Statement.parse(f"{name}#{index}", resolved))
    unknown: list[str] = []
    for arn in resolver.resolve(properties.get("ManagedPolicyArns") or []):
        document = MANAGED_POLICIES.get(str(arn))
        if document is None:
            unknown.append(str(arn))
            continue
        statements.extend(statements_of(str(arn).rsplit("/", 1)[-1], document))
    return Role(function, tuple(statements), tuple(unknown))
