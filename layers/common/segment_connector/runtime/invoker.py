"""FunctionInvoker: the only code that invokes Lambda functions (a resync fans its work out; the
console asks OutboundFunction to replay dead letters; the operator CLI calls the functions)."""

from __future__ import annotations

import json
from typing import Any


class FunctionFailed(Exception):
    """An invocation ended in a function error (Lambda's FunctionError)."""

    def __init__(self, function: str, error_type: str, message: str):
        super().__init__(f"{function} failed: {error_type + ': ' if error_type else ''}{message}")
        self.function, self.error_type, self.error_message = function, error_type, message


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
        """Invoke and wait (RequestResponse): the function's JSON answer; FunctionFailed if it raised."""
        response = self.client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode("utf-8")
        )
        body = response["Payload"].read()
        answer = json.loads(body) if body else None
        if response.get("FunctionError"):
            error = answer if isinstance(answer, dict) else {}
            raise FunctionFailed(
                function_name,
                str(error.get("errorType") or response["FunctionError"]),
                str(error.get("errorMessage") or body.decode("utf-8", "replace")),
            )
        return answer
