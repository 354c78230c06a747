"""FunctionInvoker: the only code that invokes Lambda functions (a resync fans its work out)."""

from __future__ import annotations

import json
from typing import Any


class FunctionInvoker:
    def __init__(self, client: Any = None):
        self._client = client

    def invoke_async(self, function_name: str, payload: dict[str, Any]) -> None:
        """Queue an invocation (InvocationType Event): Lambda retries it and sends its failure on."""
        if self._client is None:
            import boto3  # AWS_ENDPOINT_URL_LAMBDA points it at the local stack's emulation

            self._client = boto3.client("lambda")
        self._client.invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload).encode())
