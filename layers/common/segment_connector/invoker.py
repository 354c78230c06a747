"""FunctionInvoker: the only code that invokes Lambda functions (a resync fans its work out; the
console asks OutboundFunction to replay dead letters)."""

from __future__ import annotations

import json
from typing import Any


class FunctionFailed(Exception):
    """The invoked function raised (Lambda's FunctionError); the message is its error."""


class FunctionInvoker:
    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # AWS_ENDPOINT_URL_LAMBDA points it at the local stack's emulation

            self._client = boto3.client("lambda")
        return self._client

    def invoke_async(self, function_name: str, payload: dict[str, Any]) -> None:
        """Queue an invocation (InvocationType Event): Lambda retries it and sends its failure on."""
        self.client.invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload).encode())

    def invoke(self, function_name: str, payload: dict[str, Any]) -> Any:
        """Invoke and wait (RequestResponse): the function's answer; FunctionFailed if it raised."""
        response = self.client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
        )
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = answer.get("errorMessage") if isinstance(answer, dict) else None
            raise FunctionFailed(str(message or response["FunctionError"]))
        return answer
