"""The table's stream read as Lambda's event source mapping would hand it to OutboundFunction.

Records come from moto's DynamoDB stream, are shaped like Lambda's event (`lambda_record`) and
pass the template's FilterCriteria (`event_filter`). A batch whose records are reported failed is
handed again from its lowest failed sequence number, as Lambda does with ReportBatchItemFailures.
`Connector` wires it to the inbound API and the Segment sink (the `connector` fixture in conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import requests

from harness import TABLE, Api, Aws, FakeTime
from local_stack import event_filter
from local_stack.lambda_runtime import LambdaContext
from local_stack.segment_sink import SegmentSink
from local_stack.stream import MappingSettings, StreamReader, failed_from, lambda_record
from local_stack.template import load_template
from segment_connector.segment_api.delivery import ClientPool

TEMPLATE = load_template()
MAPPING = MappingSettings.from_template(TEMPLATE, "OutboundFunction")
# botocore would pick an account-based streams endpoint that moto's mock does not route.
STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"
WRITE_KEY = "wk_outbound_test"
TIMEOUT = int(TEMPLATE["Resources"]["OutboundFunction"]["Properties"]["Timeout"])

Handler = Callable[[dict[str, Any], Any], Any]


def outbound_context() -> LambdaContext:
    return LambdaContext("OutboundFunction", 512, TIMEOUT)


class TableStream:
    def __init__(self, table_name: str):
        self.arn = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self.client = boto3.client("dynamodbstreams", endpoint_url=STREAMS_ENDPOINT)
        self.reader = StreamReader(self.client, self.arn)
        self.pending: list[dict[str, Any]] = []  # read, passed the filters, not yet done
        self.responses: list[Any] = []

    def read(self) -> list[dict[str, Any]]:
        """Move records written since the last read into `pending`; returns `pending`."""
        for record in self.reader.read(limit=100_000):
            shaped = lambda_record(record, self.arn)
            if event_filter.passes(MAPPING.patterns, shaped):
                self.pending.append(shaped)
        return self.pending

    def skip(self) -> None:
        """Forget what was written so far (the handler never sees it)."""
        self.read()
        self.pending.clear()

    def invoke(self, handler: Handler, records: list[dict[str, Any]] | None = None) -> Any:
        """Hand the pending records (or `records`) to the handler once, as one batch."""
        batch = self.read()[: MAPPING.batch_size] if records is None else records
        result = handler({"Records": batch}, outbound_context())
        self.responses.append(result)
        if records is None:
            index = failed_from(batch, result)
            done = len(batch) if index is None else index
            del self.pending[:done]
        return result

    def drain(self, handler: Handler, rounds: int = 5) -> list[Any]:
        """Invoke until nothing is pending (Entered/Left events come back as new records), stopping
        at the first invocation that reports failures; returns the responses."""
        results = []
        for _ in range(rounds):
            if not self.read():
                break
            results.append(self.invoke(handler))
            if (results[-1] or {}).get("batchItemFailures"):
                break
        return results


def failed_sequence_numbers(response: Any) -> list[str]:
    return [failure["itemIdentifier"] for failure in (response or {}).get("batchItemFailures", [])]


# -- the connector wired end to end (the `connector` fixture in conftest.py) -----------------------


def _loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy between the client and the loopback sink
    return session


class Connector:
    """Inbound API, the table's stream, OutboundFunction and the Segment sink, wired together."""

    def __init__(self, aws: Aws, api: Api, sink: SegmentSink, fake_time: FakeTime, module: Any):
        self.aws, self.api, self.sink, self.time, self.module = aws, api, sink, fake_time, module
        self.stream = TableStream(TABLE)
        self.use_client()

    def use_client(self, **client_options: Any) -> None:
        """A fresh warm container's client pool with the fake clock (and SegmentClient options)."""
        self.module.clients = ClientPool(
            sleep=self.time.sleep, clock=self.time.clock, session_factory=_loopback_session, **client_options
        )

    def settings(self, **overrides: Any) -> None:
        self.aws.set_settings(**overrides)

    def handler(self, event: dict[str, Any]) -> Any:
        return self.module.lambda_handler(event, outbound_context())

    def drain(self, rounds: int = 5) -> list[Any]:
        return self.stream.drain(self.module.lambda_handler, rounds)

    def invoke(self, records: list[dict[str, Any]] | None = None) -> Any:
        return self.stream.invoke(self.module.lambda_handler, records)

    def post(self, *messages: dict[str, Any], path: str = "/v1/batch") -> None:
        body = {"batch": list(messages)} if path == "/v1/batch" else messages[0]
        status, answer = self.api.post(path, body)
        assert status == 200, answer

    def sent(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Messages Segment accepted, in order (optionally of one type)."""
        return [m for m in self.sink.accepted_messages if kind is None or m.get("type") == kind]

    def tracks(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m["event"], m.get("properties", {})) for m in self.sent("track")]

    def dead_letters(self) -> list[dict[str, Any]]:
        return sorted(self.aws.items_of_kind("deadletter"), key=lambda item: item["sk"])


def emitted_metrics(stdout: str) -> dict[str, float]:
    """Sum of each metric in the CloudWatch EMF lines Powertools printed."""
    totals: dict[str, float] = {}
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for definition in document["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                values = document[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(
                    values if isinstance(values, list) else [values]
                )
    return totals
