"""The AWS emulator (moto server on loopback) and the resources template.yaml would create."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from local_stack import moto_patches
from local_stack.lambda_runtime import ACCOUNT_ID, REGION, STACK_NAME, local_aws_environment
from local_stack.template import table_definition, ttl_attribute


class MotoServer:
    """moto's server app on 127.0.0.1 and a free port, one request at a time.

    moto's in-memory backends are not thread-safe (a transaction deep-copies the table while
    another request writes to it), and here two functions and the API call it at once; real
    DynamoDB needs no such care. Its werkzeug request log is silenced.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.endpoint_url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_patches.apply()
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def one_at_a_time(environ: Any, start_response: Any) -> Any:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            self.host, self.port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()


def client(service: str, endpoint_url: str) -> Any:
    env = local_aws_environment(endpoint_url)
    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
        region_name=REGION,
    ).client(service, endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 2, "mode": "standard"}))


@dataclass(frozen=True)
class Resources:
    table_name: str
    stream_arn: str


def create_table(template: Mapping[str, Any], endpoint_url: str, table_name: str) -> Resources:
    """The DynamoDB table as template.yaml defines it (keys, indexes, stream), plus its TTL."""
    dynamodb = client("dynamodb", endpoint_url)
    description = dynamodb.create_table(**table_definition(dict(template), table_name))["TableDescription"]
    dynamodb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    attribute = ttl_attribute(dict(template))
    if attribute:
        dynamodb.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    stream_arn = (
        description.get("LatestStreamArn") or dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    )
    return Resources(table_name=table_name, stream_arn=stream_arn)


def put_parameters(endpoint_url: str, parameters: Mapping[str, tuple[str, str]]) -> None:
    """{name: (type, value)} into SSM Parameter Store (SecureString values are encrypted by moto)."""
    ssm = client("ssm", endpoint_url)
    for name, (kind, value) in parameters.items():
        ssm.put_parameter(Name=name, Type=kind, Value=value, Overwrite=True)


def connector_parameters(
    prefix: str,
    api_key: str,
    write_key: str,
    settings: str,
    shared_secret: str | None,
    admin_key: str | None = None,
    profile_token: str | None = None,
) -> dict[str, tuple[str, str]]:
    parameters = {
        f"{prefix}/api-key": ("SecureString", api_key),
        f"{prefix}/write-key": ("SecureString", write_key),
        f"{prefix}/settings": ("String", settings),
    }
    if shared_secret:
        parameters[f"{prefix}/shared-secret"] = ("SecureString", shared_secret)
    if admin_key:
        parameters[f"{prefix}/admin-key"] = ("SecureString", admin_key)
    if profile_token:
        parameters[f"{prefix}/profile-token"] = ("SecureString", profile_token)
    return parameters


def forget_stream_iterators(keep: Collection[str]) -> None:
    """Drop the shard iterators the in-process moto server holds, except those in `keep`.

    moto stores every iterator it hands out (GetRecords returns a new one each call) and never
    expires them: polling four times a second would grow memory by tens of MB an hour.
    """
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    backend = dynamodbstreams_backends[ACCOUNT_ID][REGION]
    backend.shard_iterators = {arn: it for arn, it in list(backend.shard_iterators.items()) if arn in keep}


def create_queues(template: Mapping[str, Any], endpoint_url: str) -> dict[str, str]:
    """The template's AWS::SQS::Queue resources (the on-failure destinations): {logical id: queue URL}."""
    sqs = client("sqs", endpoint_url)
    urls = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::SQS::Queue":
            continue
        props = resource.get("Properties") or {}
        attributes = {
            name: str(props[name]) for name in ("MessageRetentionPeriod", "VisibilityTimeout") if name in props
        }
        name = f"{STACK_NAME}-{logical_id}"  # CloudFormation: <stack>-<logical id>-<suffix>
        urls[logical_id] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return urls


def sqs_destination(endpoint_url: str, queue_url: str, logical_id: str) -> Callable[[dict[str, Any]], None]:
    """A sender of invocation records to an SQS destination: Lambda sends them with the function's
    execution role, so the SendMessage runs as `logical_id`."""
    from local_stack.iam.enforce import acting_as

    clients: list[Any] = []  # made on first use: most functions never fail that far

    def send(record: dict[str, Any]) -> None:
        if not clients:
            clients.append(client("sqs", endpoint_url))
        with acting_as(logical_id):
            clients[0].send_message(QueueUrl=queue_url, MessageBody=json.dumps(record, default=str))

    return send
