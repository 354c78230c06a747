"""DynamoDB as the bench models it: moto holds the state, each request waits a fixed latency, and
every request is recorded.

The hook is botocore's `BaseClient._make_api_call`, which every boto3 client call goes through,
so whatever client the connector builds and however it calls it (PutItem, BatchWriteItem, from
one thread or many), the bench sees and times it without re-implementing anything.

- Each DynamoDB request first sleeps `latency` seconds, outside any lock, so parallel writers
  overlap as they would against AWS. With `sleep=False` the latency is only added up (`waited`):
  exact for a run whose requests are sequential (`max_in_flight` == 1), and quicker.
- moto is not thread-safe: its request handling (moto's botocore stubber) runs under one lock,
  and the wall and CPU time spent there are summed (`moto_wall`, `moto_cpu`) so that a run can
  report the connector's own time with moto's taken out (the latency stands for AWS's side).
- With `images=True` (capacity runs), the items a write touches are read before (and, for
  updates, after) the write, under the same lock, with a direct moto call that is neither
  recorded nor delayed; its time is summed apart (`probe_wall`, `probe_cpu`). So are the full
  items behind a read with a ProjectionExpression (DynamoDB bills what it reads, not what it
  returns). Requests also ask moto for ReturnConsumedCapacity, kept for comparison.
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from bench.capacity import Call, TableModel

_CAPACITY_OPERATIONS = {
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "GetItem",
    "BatchGetItem",
    "BatchWriteItem",
    "Query",
    "Scan",
    "TransactWriteItems",
    "TransactGetItems",
}


class ModelledDynamoDB:
    def __init__(self, table: TableModel, latency: float = 0.0, images: bool = False, sleep: bool = True):
        self.table = table
        self.latency = latency
        self.images = images
        self.sleep = sleep
        self.recording = True
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.moto_wall = self.moto_cpu = self.probe_wall = self.probe_cpu = self.waited = 0.0
        self.in_flight = self.max_in_flight = 0
        self.per_thread: dict[int, int] = {}
        self._local = threading.local()
        self._saved: list[tuple[Any, str, Any]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ModelledDynamoDB:
        from moto.core.botocore_stubber import BotocoreStubber

        model = self
        make_api_call = BaseClient._make_api_call
        stub = BotocoreStubber.__call__

        def patched_make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if getattr(model._local, "probing", False) or client.meta.service_model.service_name != "dynamodb":
                return make_api_call(client, operation, params)
            return model._call(make_api_call, client, operation, params)

        def patched_stub(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            with model.lock:
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    return stub(stubber, event_name, request, **kwargs)
                finally:
                    if not getattr(model._local, "probing", False):
                        model.moto_wall += time.perf_counter() - wall
                        model.moto_cpu += time.thread_time() - cpu

        self._saved = [(BaseClient, "_make_api_call", make_api_call), (BotocoreStubber, "__call__", stub)]
        setattr(BaseClient, "_make_api_call", patched_make_api_call)  # noqa: B010 - patching a method on purpose
        setattr(BotocoreStubber, "__call__", patched_stub)  # noqa: B010 - patching a method on purpose
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in self._saved:
            setattr(owner, name, original)

    def reset(self) -> None:
        self.calls = []
        self.per_thread = {}
        self.moto_wall = self.moto_cpu = self.probe_wall = self.probe_cpu = self.waited = 0.0
        self.max_in_flight = self.in_flight

    @property
    def excluded_cpu(self) -> float:
        """CPU time of moto and of the probes: not the connector's, not AWS's either."""
        return self.moto_cpu + self.probe_cpu

    def modelled(self, wall: float, process_cpu: float) -> float:
        """The time the recorded work would take against AWS, on this machine's CPU.

        Sequential requests (never two in flight): the connector's CPU plus one latency per
        request - CPU time does not grow when other processes compete for the machine.
        Parallel requests: the wall time without moto's and the probes' CPU (plus any latency
        added up instead of slept); other processes' load inflates it.
        """
        if self.max_in_flight <= 1:
            return process_cpu - self.excluded_cpu + len(self.calls) * self.latency
        return wall - self.excluded_cpu + self.waited

    def floor(self, process_cpu: float) -> float:
        """A lower bound of `modelled` that other processes cannot inflate: the connector's CPU
        (its threads share one interpreter lock) or the busiest thread's latencies."""
        return max(process_cpu - self.excluded_cpu, max(self.per_thread.values(), default=0) * self.latency)

    # -- one request -------------------------------------------------------------------------

    def _call(self, make_api_call: Any, client: Any, operation: str, params: dict[str, Any]) -> Any:
        if not self.recording:
            return make_api_call(client, operation, params)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            thread = threading.get_ident()
            self.per_thread[thread] = self.per_thread.get(thread, 0) + 1
        try:
            if self.latency and self.sleep:
                time.sleep(self.latency)
            elif self.latency:
                with self.lock:
                    self.waited += self.latency
            call = Call(operation, params)
            sent = params
            if self.images and operation in _CAPACITY_OPERATIONS and "ReturnConsumedCapacity" not in params:
                sent = {**params, "ReturnConsumedCapacity": "TOTAL"}
            with self.lock if self.images else nullcontext():
                if self.images:
                    call.before = self._probe(client, operation, params)
                try:
                    call.response = make_api_call(client, operation, sent)
                except ClientError as error:
                    call.error = error.response.get("Error", {}).get("Code", "ClientError")
                    call.reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
                    raise
                finally:
                    if self.images and operation in ("UpdateItem", "TransactWriteItems"):
                        call.after = self._probe(client, operation, params, updated_only=True)
                    with self.lock:
                        self.calls.append(call)
            call.moto_units = _consumed(call.response) if self.images else None
            return call.response
        finally:
            with self.lock:
                self.in_flight -= 1

    def _probe(self, client: Any, operation: str, params: dict[str, Any], updated_only: bool = False) -> dict[str, Any]:
        """Current images of the items this request writes or checks (direct moto reads)."""
        targets = self._targets(operation, params, updated_only)
        images: dict[str, Any] = {}
        if not targets:
            return images
        wall, cpu = time.perf_counter(), time.thread_time()
        self._local.probing = True
        try:
            for table_name, key in targets:
                found = client.get_item(TableName=table_name, Key=key, ConsistentRead=True).get("Item")
                images[self.table.key_of(key)] = found
        finally:
            self._local.probing = False
            self.probe_wall += time.perf_counter() - wall
            self.probe_cpu += time.thread_time() - cpu
        return images

    def _targets(self, operation: str, params: dict[str, Any], updated_only: bool) -> list[tuple[str, dict[str, Any]]]:
        """(table, key) of each item a request writes (`updated_only`: that it updates in place)."""
        if operation in ("PutItem", "DeleteItem", "UpdateItem"):
            if updated_only and operation != "UpdateItem":
                return []
            return [(params["TableName"], self._key(params.get("Key") or params["Item"]))]
        if operation == "TransactWriteItems":
            return [
                (body["TableName"], self._key(body.get("Key") or body["Item"]))
                for action in params["TransactItems"]
                for kind, body in action.items()
                if not updated_only or kind == "Update"
            ]
        if updated_only:
            return []
        return self._read_targets(operation, params)

    def _read_targets(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if operation == "BatchWriteItem":
            return [
                (name, self._key(request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]))
                for name, requests in params["RequestItems"].items()
                for request in requests
            ]
        if operation == "GetItem" and "ProjectionExpression" in params:
            return [(params["TableName"], self._key(params["Key"]))]
        if operation == "BatchGetItem":
            return [
                (name, self._key(key))
                for name, request in params["RequestItems"].items()
                if "ProjectionExpression" in request
                for key in request["Keys"]
            ]
        return []

    def _key(self, item: dict[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.table.keys}


def _consumed(response: dict[str, Any]) -> float | None:
    consumed = response.get("ConsumedCapacity")
    if consumed is None:
        return None
    if isinstance(consumed, dict):
        consumed = [consumed]
    return float(sum(c.get("CapacityUnits", 0) for c in consumed))
