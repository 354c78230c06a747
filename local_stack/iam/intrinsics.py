"""CloudFormation intrinsic functions, resolved for one local deployment of the stack."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = object()  # AWS::NoValue: the property is left out


@dataclass(frozen=True)
class Deployment:
    """Where the stack is deployed and what each resource is called there.

    `names`: a resource's physical id (`!Ref`): the table's name, a function's name, a queue's
    URL. `attributes`: `!GetAtt` values; anything else is derived from the names (ARNs).
    """

    account: str
    region: str
    stack_name: str
    parameters: Mapping[str, str]
    names: Mapping[str, str]
    attributes: Mapping[str, str] = field(default_factory=dict)
    partition: str = "aws"

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/local"
            ),
        }.get(name)


class Unresolvable(Exception):
    """An intrinsic that names something this deployment does not know."""


class Resolver:
    def __init__(self, template: Mapping[str, Any], deployment: Deployment):
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self.conditions: Mapping[str, Any] = template.get("Conditions", {})
        self.mappings: Mapping[str, Any] = template.get("Mappings", {})
        self.defaults = {
            name: str(spec["Default"]) for name, spec in template.get("Parameters", {}).items() if "Default" in spec
        }
        self.deployment = deployment

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            function = _FUNCTIONS.get(key)
            if function is not None:
                return function(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.conditions[name]))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        pseudo = self.deployment.pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.deployment.parameters:
            return self.deployment.parameters[name]
        if name in self.defaults:
            return self.defaults[name]
        if name in self.deployment.names:
            return self.deployment.names[name]
        if name in self.resources:
            return self._physical_id(name)
        raise Unresolvable(f"!Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        key = f"{logical_id}.{attribute}"
        if key in self.deployment.attributes:
            return self.deployment.attributes[key]
        resource_type = self.resources.get(logical_id, {}).get("Type", "")
        d = self.deployment
        name = str(self.ref(logical_id))
        arn_prefix = f"arn:{d.partition}"
        if resource_type == "AWS::DynamoDB::Table":
            table = f"{arn_prefix}:dynamodb:{d.region}:{d.account}:table/{name}"
            if attribute == "Arn":
                return table
            if attribute == "StreamArn":
                return f"{table}/stream/local"
        if resource_type in ("AWS::Lambda::Function", "AWS::Serverless::Function") and attribute == "Arn":
            return f"{arn_prefix}:lambda:{d.region}:{d.account}:function:{name}"
        if resource_type == "AWS::SQS::Queue":
            queue_name = name.rstrip("/").rsplit("/", 1)[-1]
            if attribute == "Arn":
                return f"{arn_prefix}:sqs:{d.region}:{d.account}:{queue_name}"
            if attribute == "QueueName":
                return queue_name
        if resource_type == "AWS::KMS::Key" and attribute == "Arn":
            return f"{arn_prefix}:kms:{d.region}:{d.account}:key/{name}"
        if resource_type == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"{arn_prefix}:logs:{d.region}:{d.account}:log-group:{name}:*"
        if resource_type == "AWS::IAM::Role" and attribute == "Arn":
            return f"{arn_prefix}:iam::{d.account}:role/{name}"
        raise Unresolvable(f"!GetAtt {key}")

    def _physical_id(self, logical_id: str) -> str:
        """A name CloudFormation would generate (stack-logicalid-suffix), or the declared one."""
        resource = self.resources[logical_id]
        properties = resource.get("Properties") or {}
        d = self.deployment
        for key in ("FunctionName", "TableName", "QueueName", "TopicName", "RoleName", "Name", "LogGroupName"):
            if key in properties:
                return str(self.resolve(properties[key]))
        if resource.get("Type") == "AWS::SQS::Queue":
            return f"https://sqs.{d.region}.amazonaws.com/{d.account}/{d.stack_name}-{logical_id}"
        if resource.get("Type") == "AWS::SNS::Topic":
            return f"arn:{d.partition}:sns:{d.region}:{d.account}:{d.stack_name}-{logical_id}"
        return f"{d.stack_name}-{logical_id}"


def _ref(resolver: Resolver, argument: Any) -> Any:
    return resolver.ref(str(argument))


def _get_att(resolver: Resolver, argument: Any) -> str:
    logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
    return resolver.get_att(str(logical_id), str(resolver.resolve(attribute)))


def _sub(resolver: Resolver, argument: Any) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
    values = {name: resolver.resolve(value) for name, value in variables.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in values:
            return str(values[name])
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return resolver.get_att(logical_id, attribute)
        return str(resolver.ref(name))

    return re.sub(r"\$\{([^}]+)\}", replace, text)


def _join(resolver: Resolver, argument: Any) -> str:
    delimiter, items = argument
    return str(delimiter).join(str(item) for item in resolver.resolve(items))


def _select(resolver: Resolver, argument: Any) -> Any:
    index, items = argument
    return resolver.resolve(items)[int(resolver.resolve(index))]


def _split(resolver: Resolver, argument: Any) -> list[str]:
    delimiter, text = argument
    return str(resolver.resolve(text)).split(str(delimiter))


def _if(resolver: Resolver, argument: Any) -> Any:
    name, when_true, when_false = argument
    return resolver.resolve(when_true if resolver.condition(name) else when_false)


def _find_in_map(resolver: Resolver, argument: Any) -> Any:
    name, first, second = (resolver.resolve(part) for part in argument)
    return resolver.mappings[name][first][second]


def _equals(resolver: Resolver, argument: Any) -> bool:
    left, right = (resolver.resolve(part) for part in argument)
    return bool(left == right)


def _not(resolver: Resolver, argument: Any) -> bool:
    return not resolver.resolve(argument[0])


def _and(resolver: Resolver, argument: Any) -> bool:
    return all(resolver.resolve(part) for part in argument)


def _or(resolver: Resolver, argument: Any) -> bool:
    return any(resolver.resolve(part) for part in argument)


def _condition(resolver: Resolver, argument: Any) -> bool:
    return resolver.condition(str(argument))


_FUNCTIONS = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::FindInMap": _find_in_map,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": _and,
    "Fn::Or": _or,
    "Condition": _condition,
}
