"""Stream worker: what Lambda's DynamoDB event source mapping does, against the emulated stream.

Reads the table's stream from TRIM_HORIZON, drops records that no FilterCriteria pattern
matches, invokes the function with batches of at most BatchSize records, and honours
ReportBatchItemFailures: a batch is retried from its lowest failed sequence number (records
before it are done) with exponential backoff, at most MaximumRetryAttempts times. A function
error (an exception, a timeout) fails the whole batch; with BisectBatchOnFunctionError the batch
is split in two and each half retried (splitting does not use up retries). Records older than
MaximumRecordAgeInSeconds are not sent again. Given-up records' metadata (shard, sequence
numbers) goes to the OnFailure destination, as Lambda sends it. Not emulated:
MaximumBatchingWindowInSeconds (records are handed on as soon as they are read),
ParallelizationFactor.
"""

from __future__ import annotations

import base64
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_stack import event_filter
from local_stack.lambda_runtime import ACCOUNT_ID, REGION, LambdaError, local_function_name

POLL_SECONDS = 0.25
HOUSEKEEPING_POLLS = 240  # about once a minute when idle


@dataclass(frozen=True)
class MappingSettings:
    batch_size: int = 100
    maximum_retry_attempts: int = -1  # -1: until the record expires (Lambda's default)
    patterns: tuple[dict[str, Any], ...] = ()
    report_batch_item_failures: bool = False
    bisect_on_function_error: bool = False
    maximum_record_age_seconds: int = -1  # -1: until the record expires
    on_failure: str | None = None  # the logical id of the OnFailure destination

    @classmethod
    def from_template(cls, template: Mapping[str, Any], logical_id: str) -> MappingSettings:
        """Settings of the function's (only) DynamoDB event, as template.yaml declares them."""
        events = template["Resources"][logical_id]["Properties"].get("Events", {})
        streams = [event["Properties"] for event in events.values() if event.get("Type") == "DynamoDB"]
        if len(streams) != 1:
            raise ValueError(f"{logical_id} must have exactly one DynamoDB event, found {len(streams)}")
        props = streams[0]
        return cls(
            batch_size=int(props.get("BatchSize", 100)),
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
            patterns=tuple(event_filter.compile_filters(props.get("FilterCriteria"))),
            report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            bisect_on_function_error=bool(props.get("BisectBatchOnFunctionError", False)),
            maximum_record_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
            on_failure=_resource_of((props.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")),
        )


def _resource_of(reference: Any) -> str | None:
    if isinstance(reference, dict) and "Fn::GetAtt" in reference:
        return str(reference["Fn::GetAtt"][0])
    return str(reference) if reference else None


def failure_record(
    records: list[dict[str, Any]], stream_arn: str, condition: str, attempts: int, error: str, function_name: str
) -> dict[str, Any]:
    """What Lambda sends to a stream mapping's on-failure destination: the batch's metadata, not
    its records (Lambda Developer Guide, "Retaining discarded records for a DynamoDB event source")."""
    arrivals = [record["dynamodb"].get("ApproximateCreationDateTime") for record in records]

    def iso(seconds: Any) -> str | None:
        if not isinstance(seconds, (int, float)):
            return None
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "DDBStreamBatchInfo": {
            "shardId": records[0].get("shardId", "shardId-local"),
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": iso(arrivals[0]),
            "approximateArrivalOfLastRecord": iso(arrivals[-1]),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
        "error": error,  # not in Lambda's record: why, for whoever reads the local queue
    }


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record (as boto3 returns it) in the shape Lambda passes to the function."""
    shaped = _jsonable(dict(record))
    shaped["eventSource"] = "aws:dynamodb"
    shaped["eventSourceARN"] = stream_arn
    shaped.setdefault("awsRegion", REGION)
    shaped.setdefault("eventVersion", "1.1")
    return shaped


def _jsonable(value: Any) -> Any:
    # boto3 turns B/BS values into bytes and ApproximateCreationDateTime into a datetime;
    # Lambda's JSON has base64 strings and epoch seconds.
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


def sequence_number(record: Mapping[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


def failed_from(records: list[dict[str, Any]], result: Any) -> int | None:
    """Index of the first record to retry given the handler's result; None when all succeeded.

    Like Lambda: no response, an empty one or an empty/null `batchItemFailures` is success;
    a malformed response or an empty or unknown itemIdentifier fails the whole batch; otherwise
    the batch is checkpointed before the lowest failed sequence number.
    """
    if result is None:
        return None
    if not isinstance(result, Mapping):
        return 0
    failures = result.get("batchItemFailures")
    if not failures:
        return None
    if not isinstance(failures, list):
        return 0
    positions = {record["dynamodb"]["SequenceNumber"]: index for index, record in enumerate(records)}
    lowest = len(records)
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or identifier not in positions:
            return 0
        lowest = min(lowest, positions[identifier])
    return lowest


class StreamReader:
    """Reads a stream's new records, asking for a fresh iterator after the last one read each time.

    moto replaces a table's stream shard when it rolls back a failed transaction (a deduplicated
    identify is one), so an iterator held across reads would go on reading a dead shard and see
    nothing ever again.
    """

    def __init__(self, streams_client: Any, stream_arn: str):
        self._streams = streams_client
        self._arn = stream_arn
        self._last: dict[str, str] = {}  # shard id -> last sequence number read

    def read(self, limit: int) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            shard_id = shard["ShardId"]
            position = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._last[shard_id]}
                if shard_id in self._last
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self._streams.get_shard_iterator(StreamArn=self._arn, ShardId=shard_id, **position)[
                "ShardIterator"
            ]
            while iterator and len(records) < limit:
                response = self._streams.get_records(ShardIterator=iterator, Limit=min(1000, limit - len(records)))
                batch = response.get("Records", [])
                if not batch:
                    break
                self._last[shard_id] = batch[-1]["dynamodb"]["SequenceNumber"]
                records.extend(batch)
                iterator = response.get("NextShardIterator")
        return records


class StreamWorker(threading.Thread):
    """Polls the stream every POLL_SECONDS and invokes `invoke({"Records": batch})`."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        settings: MappingSettings,
        invoke: Callable[[dict[str, Any]], Any],
        log: Callable[[str], None] | None = None,
        poll_seconds: float = POLL_SECONDS,
        backoff_seconds: tuple[float, float] = (0.5, 8.0),
        forget_iterators: Callable[[list[str]], None] | None = None,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        function_name: str = local_function_name("OutboundFunction"),
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(name="stream-worker", daemon=True)
        self._streams = streams_client
        self._stream_arn = stream_arn
        self._settings = settings
        self._invoke = invoke
        self._log = log or (lambda line: print(line, flush=True))
        self._poll = poll_seconds
        self._backoff = backoff_seconds
        self._forget_iterators = forget_iterators
        self._on_failure = on_failure
        self._function_name = function_name
        self._clock = clock
        self._polls = 0
        self._stop_event = threading.Event()
        self._reader = StreamReader(streams_client, stream_arn)
        self._pending: list[dict[str, Any]] = []
        self.delivered = 0
        self.given_up = 0

    def stop(self, timeout: float | None = None) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._read()
                self._housekeeping()
                if self._pending:
                    batch = self._pending[: self._settings.batch_size]
                    del self._pending[: len(batch)]
                    self._process(batch)
                    continue
            except Exception:  # noqa: BLE001 - keep polling whatever went wrong
                self._log("stream worker: error while reading the stream (retrying):")
                traceback.print_exc()
                sys.stderr.flush()
            self._stop_event.wait(self._poll)

    def _read(self) -> None:
        """Move new stream records that pass the filters into the pending list."""
        while (room := self._settings.batch_size - len(self._pending)) > 0:
            records = self._reader.read(room)
            if not records:
                return
            for record in records:
                shaped = lambda_record(record, self._stream_arn)
                if event_filter.passes(self._settings.patterns, shaped):  # filtered records don't count
                    self._pending.append(shaped)

    def _housekeeping(self) -> None:
        """Every HOUSEKEEPING_POLLS polls, let the emulator forget the iterators it handed out."""
        self._polls += 1
        if self._forget_iterators is not None and self._polls % HOUSEKEEPING_POLLS == 0:
            self._forget_iterators([])  # the reader holds no iterator between reads

    def _process(self, batch: list[dict[str, Any]]) -> None:
        # (records, retries so far, invocations so far); halves of a bisected batch come back here.
        work: list[tuple[list[dict[str, Any]], int, int]] = [(batch, 0, 0)]
        while work and not self._stop_event.is_set():
            records, retries, attempts = work.pop()
            records = self._drop_expired(records, attempts)
            if not records:
                continue
            index, error, function_error = self._invoke_once(records)
            attempts += 1
            self.delivered += len(records) if index is None else index
            if index is None:
                continue
            records = records[index:]
            if function_error and self._settings.bisect_on_function_error and len(records) > 1:
                half = len(records) // 2
                self._log(f"stream worker: {error}; the batch of {len(records)} is split in two and retried")
                work.append((records[half:], retries, attempts))
                work.append((records[:half], retries, attempts))  # the first half first
                continue
            limit = self._settings.maximum_retry_attempts
            if 0 <= limit <= retries:
                self._give_up(records, "RetryAttemptsExhausted", attempts, f"after {retries} retries ({error})")
                continue
            retries += 1
            delay = min(self._backoff[0] * 2 ** (retries - 1), self._backoff[1])
            of = f" of {limit}" if limit >= 0 else ""
            self._log(
                f"stream worker: {error}; retry {retries}{of} in {delay:g} s "
                f"from sequence number {records[0]['dynamodb']['SequenceNumber']}"
            )
            self._stop_event.wait(delay)
            work.append((records, retries, attempts))

    def _invoke_once(self, records: list[dict[str, Any]]) -> tuple[int | None, str | None, bool]:
        """(index of the first record to retry or None, why, whether it was a function error)."""
        try:
            result = self._invoke({"Records": records})
        except LambdaError as exc:  # a timeout, a response too large: Lambda's own words, no traceback
            return 0, f"function error: {exc.error_type}: {exc}", True
        except Exception as exc:  # noqa: BLE001 - a function error fails the whole batch
            traceback.print_exc()
            sys.stderr.flush()
            return 0, f"function error: {type(exc).__name__}: {exc}", True
        index = failed_from(records, result) if self._settings.report_batch_item_failures else None
        return index, None if index is None else f"{len(records) - index} record(s) reported as failed", False

    def _drop_expired(self, records: list[dict[str, Any]], attempts: int) -> list[dict[str, Any]]:
        """Records older than MaximumRecordAgeInSeconds are given up, never sent again."""
        limit = self._settings.maximum_record_age_seconds
        if limit < 0:
            return records
        now = self._clock()
        fresh = [r for r in records if now - float(r["dynamodb"].get("ApproximateCreationDateTime", now)) <= limit]
        if len(fresh) < len(records):
            expired = [r for r in records if r not in fresh]
            self._give_up(expired, "RecordAgeExceeded", attempts, f"older than {limit} s")
        return fresh

    def _give_up(self, records: list[dict[str, Any]], condition: str, attempts: int, why: str) -> None:
        self.given_up += len(records)
        first, last = records[0]["dynamodb"]["SequenceNumber"], records[-1]["dynamodb"]["SequenceNumber"]
        where = "its metadata went to the on-failure destination"
        if self._on_failure is None:
            where = "no on-failure destination"
        else:
            record = failure_record(records, self._stream_arn, condition, attempts, why, self._function_name)
            try:
                self._on_failure(record)
            except Exception as error:  # noqa: BLE001 - Lambda counts it as a destination delivery failure
                where = f"the on-failure destination refused its metadata: {error!r}"
        self._log(
            f"stream worker: gave up a batch of {len(records)} record(s) {why}; "
            f"sequence numbers {first}..{last}: {where}"
        )
