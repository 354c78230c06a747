"""What IAM checks for one API call: (action, resource ARN, condition context) per permission.

Only the calls this project's functions make (and the ones Lambda makes with a function's role:
the stream reads, the on-failure destinations) are described; any other call is checked as
`service:Operation` on `*`, which a least-privilege role will not grant: conservative.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Place:
    account: str
    region: str
    partition: str = "aws"

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account}:{resource}"


# botocore service names -> IAM service prefixes (where they differ)
_PREFIXES = {"dynamodbstreams": "dynamodb"}

_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def needs(service: str, operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    prefix = _PREFIXES.get(service, service)
    describe = _DESCRIBERS.get((prefix, operation))
    if describe is not None:
        return describe(operation, params, place)
    return [Need(f"{prefix}:{operation}", "*")]


def _table(place: Place, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return place.arn("dynamodb", f"table/{name}")


def _dynamodb_single(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    resource = _table(place, str(params.get("TableName", "")))
    if params.get("IndexName"):
        resource = f"{resource}/index/{params['IndexName']}"
    return [Need(f"dynamodb:{operation}", resource)]


def _dynamodb_batch(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    return [Need(f"dynamodb:{operation}", _table(place, str(name))) for name in params.get("RequestItems", {})]


def _dynamodb_transact(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    """TransactWriteItems/TransactGetItems: IAM checks each item's own action on its table."""
    found: dict[tuple[str, str], Need] = {}
    for item in params.get("TransactItems", []):
        for kind, request in item.items():
            need = Need(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", _table(place, str(request.get("TableName", ""))))
            found[(need.action, need.resource)] = need
    return list(found.values())


def _dynamodb_stream(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    arn = params.get("StreamArn")
    return [Need(f"dynamodb:{operation}", str(arn) if arn else "*")]


def _dynamodb_shard_iterator(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    # A shard iterator names no stream in the request; IAM checks the stream it belongs to, which
    # the local stream worker only asks for through ARNs it was given: `*` is checked instead.
    return [Need(f"dynamodb:{operation}", "*")]


def _ssm_parameter_arn(place: Place, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return place.arn("ssm", "parameter" + (name if name.startswith("/") else f"/{name}"))


def _ssm_named(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    return [Need(f"ssm:{operation}", _ssm_parameter_arn(place, str(params.get("Name", ""))))]


def _ssm_many(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    return [Need(f"ssm:{operation}", _ssm_parameter_arn(place, str(name))) for name in params.get("Names", [])]


def _ssm_unscoped(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    """DescribeParameters supports no resource-level permission: only `Resource: "*"` grants it."""
    return [Need(f"ssm:{operation}", "*")]


def _lambda_invoke(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    name = str(params.get("FunctionName", ""))
    if name.startswith("arn:"):
        arn = name
    else:
        bare, _, qualifier = name.partition(":")
        arn = place.arn("lambda", f"function:{bare}") + (f":{qualifier}" if qualifier else "")
    if params.get("Qualifier"):
        arn = f"{arn}:{params['Qualifier']}"
    return [Need("lambda:InvokeFunction", arn)]


def _sqs_queue(operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    url = str(params.get("QueueUrl", "")).rstrip("/")
    parts = url.split("/")
    account, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (place.account, url)
    return [Need(f"sqs:{operation}", f"arn:{place.partition}:sqs:{place.region}:{account}:{name}")]


_DESCRIBERS: dict[tuple[str, str], Callable[[str, Mapping[str, Any], Place], list[Need]]] = {
    **{
        ("dynamodb", op): _dynamodb_single
        for op in (
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "Scan",
            "DescribeTable",
            "DescribeTimeToLive",
        )
    },
    ("dynamodb", "BatchGetItem"): _dynamodb_batch,
    ("dynamodb", "BatchWriteItem"): _dynamodb_batch,
    ("dynamodb", "TransactWriteItems"): _dynamodb_transact,
    ("dynamodb", "TransactGetItems"): _dynamodb_transact,
    ("dynamodb", "DescribeStream"): _dynamodb_stream,
    ("dynamodb", "GetShardIterator"): _dynamodb_stream,
    ("dynamodb", "GetRecords"): _dynamodb_shard_iterator,
    ("dynamodb", "ListStreams"): _dynamodb_shard_iterator,
    ("ssm", "GetParameter"): _ssm_named,
    ("ssm", "GetParameterHistory"): _ssm_named,
    ("ssm", "PutParameter"): _ssm_named,
    ("ssm", "DeleteParameter"): _ssm_named,
    ("ssm", "GetParameters"): _ssm_many,
    ("ssm", "DescribeParameters"): _ssm_unscoped,
    ("lambda", "Invoke"): _lambda_invoke,
    ("sqs", "SendMessage"): _sqs_queue,
    ("sqs", "SendMessageBatch"): _sqs_queue,
}
