"""SegmentClient: the only code that talks HTTP to Segment's Tracking API (batching + retries)."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # requests is imported when a client is made: no cost for invocations that send nothing
    import requests

HELD_BACK = "held back: an earlier message of the same user was not delivered"
USER_AGENT = "segment-connector/1.0 (+python-requests)"
BACKOFF_BASE = 0.2  # seconds; doubles per attempt
BACKOFF_CAP = 5.0
RETRY_AFTER_CAP = 60.0
# A request never gets less than this as timeout, even when the deadline is closer: callers
# should keep at least this much margin between `deadline` and the Lambda's real end.
MIN_TIMEOUT = 1.0
BODY_EXCERPT = 200


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # transient: may succeed later
    rejected: dict[str, str] = field(default_factory=dict)  # permanent
    requests: int = 0


class _Outcome(NamedTuple):
    kind: str  # "ok" | "retry" | "permanent" | "failed"
    reason: str = ""
    retry_after: float | None = None
    splittable: bool = True  # a permanent 4xx that a smaller batch might not get


_Item = tuple[str, bytes]  # (messageId, serialized message)


@dataclass
class _Budget:
    """One send(): its deadline, and until when transient errors are retried."""

    deadline: float
    retry_until: float


class SegmentClient:
    def __init__(
        self,
        write_key: str,
        api_url: str,
        *,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_batch_bytes: int = 475_000,
        max_batch_messages: int = 2_500,
        max_message_bytes: int = 32_000,
    ) -> None:
        if not write_key:
            raise ValueError("write_key is required")
        self._write_key = write_key
        self._url = api_url.rstrip("/") + "/v1/batch"
        import requests

        self._session = session if session is not None else requests.Session()
        self._timeouts = (connect_timeout, read_timeout)
        self._sleep = sleep
        self._clock = clock
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_messages = max_batch_messages
        self.max_message_bytes = max_message_bytes

    def __repr__(self) -> str:  # no write key
        return f"SegmentClient(url={self._url!r})"

    def send(
        self,
        messages: list[dict[str, Any]],
        *,
        deadline: float,
        order: Mapping[str, str] | None = None,
        retry_for: float | None = None,
    ) -> DeliveryReport:
        """Send in as few requests as possible, in order.

        `order` maps messageIds to a key (a user) whose order must hold: once a message of that
        key is not delivered, its later messages are not sent but reported failed (HELD_BACK).
        `retry_for`: seconds of retrying 429/5xx/network errors in this call, all requests
        together (default: until the deadline); past them, a request that fails is not retried
        (Segment looks down): the caller lets its own retries come later, rather than wait here.
        """
        items = [_encode(message) for message in messages]  # raises before any request is made
        report = DeliveryReport()
        sendable = []
        for message_id, raw in items:
            if len(raw) > self.max_message_bytes:
                report.rejected[message_id] = f"message exceeds {self.max_message_bytes // 1000} KB"
            else:
                sendable.append((message_id, raw))
        blocked: set[str] = set()
        budget = _Budget(deadline, deadline if retry_for is None else min(deadline, self._clock() + retry_for))
        for batch in self._pack(sendable):
            if order is not None:
                held = [message_id for message_id, _ in batch if order.get(message_id) in blocked]
                report.failed.update(dict.fromkeys(held, HELD_BACK))
                batch = [item for item in batch if item[0] not in held]
            if batch:
                self._deliver(batch, budget, report)
            if order is not None:
                # A failed message without a key holds nothing back (None must not enter the set:
                # every other message without a key would then look blocked).
                blocked.update(key for message_id in report.failed if (key := order.get(message_id)) is not None)
        if report.failed or report.rejected:
            logger.warning(
                "segment: %d delivered, %d failed, %d rejected in %d requests",
                len(report.delivered),
                len(report.failed),
                len(report.rejected),
                report.requests,
            )
        return report

    def _pack(self, items: list[_Item]) -> list[list[_Item]]:
        """Greedy in-order packing: optimal for contiguous batches under a size and count limit."""
        overhead = len(_body([]))  # {"batch":[],"sentAt":"..."}: sentAt has a fixed length
        batches: list[list[_Item]] = [[]]
        size = overhead
        for item in items:
            current = batches[-1]
            if current and (len(current) >= self.max_batch_messages or size + 1 + len(item[1]) > self.max_batch_bytes):
                batches.append(current := [])
                size = overhead
            size += len(item[1]) + (1 if current else 0)  # "," between messages
            current.append(item)
        return [batch for batch in batches if batch]

    def _deliver(self, batch: list[_Item], budget: _Budget, report: DeliveryReport) -> None:
        outcome = self._post(batch, budget, report)
        ids = [message_id for message_id, _ in batch]
        if outcome.kind == "ok":
            report.delivered.extend(ids)
        elif outcome.kind == "permanent" and outcome.splittable and len(batch) > 1:
            # Bisect so that one bad message does not take the others down with it.
            half = len(batch) // 2
            self._deliver(batch[:half], budget, report)
            self._deliver(batch[half:], budget, report)
        elif outcome.kind == "permanent":
            report.rejected.update(dict.fromkeys(ids, outcome.reason))
        else:
            report.failed.update(dict.fromkeys(ids, outcome.reason))

    def _post(self, batch: list[_Item], budget: _Budget, report: DeliveryReport) -> _Outcome:
        deadline = budget.deadline
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return _Outcome("failed", "deadline reached before sending")
            connect, read = (min(limit, max(remaining, MIN_TIMEOUT)) for limit in self._timeouts)
            timeout = (connect, read)
            report.requests += 1
            outcome = self._attempt(_body(batch), timeout)
            attempt += 1
            if outcome.kind != "retry":
                return outcome
            wait = _backoff(attempt)
            if outcome.retry_after is not None:
                wait = max(wait, min(outcome.retry_after, RETRY_AFTER_CAP))
            if self._clock() + wait >= deadline:
                return _Outcome("failed", f"{outcome.reason} (gave up after {attempt} attempts: deadline)")
            if self._clock() + wait >= budget.retry_until:
                return _Outcome("failed", f"{outcome.reason} (gave up after {attempt} attempts: Segment looks down)")
            self._sleep(wait)

    def _attempt(self, body: bytes, timeout: tuple[float, float]) -> _Outcome:
        import requests

        try:
            response = self._session.post(
                self._url,
                data=body,
                auth=(self._write_key, ""),
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                timeout=timeout,
                allow_redirects=False,  # a redirect would turn the POST into a GET and may drop auth
            )
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            return _Outcome("retry", f"network error: {type(exc).__name__}")
        except requests.RequestException as exc:  # e.g. invalid URL: retrying will not help now
            return _Outcome("failed", f"request error: {type(exc).__name__}")
        status = response.status_code
        reason = f"HTTP {status}: {self._excerpt(response.text)}"
        if 200 <= status < 300:
            return _Outcome("ok")
        if status in (408, 429) or status >= 500:
            return _Outcome("retry", reason, _parse_retry_after(response.headers.get("Retry-After")))
        if 400 <= status < 500:
            # 401/403 are about the write key, not about a message: bisecting would only multiply requests.
            return _Outcome("permanent", reason, splittable=status not in (401, 403))
        return _Outcome("failed", reason)  # 1xx/3xx: unexpected, not retried

    def _excerpt(self, text: str) -> str:
        text = re.sub(r"\s+", " ", text).strip().replace(self._write_key, "***")
        return text[:BODY_EXCERPT] + ("..." if len(text) > BODY_EXCERPT else "")


def _encode(message: dict[str, Any]) -> _Item:
    message_id = message.get("messageId") if isinstance(message, dict) else None
    if not message_id or not isinstance(message_id, str):
        raise ValueError("every message needs a string messageId")
    try:
        text = json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"message {message_id} is not JSON serializable: {exc}") from exc
    try:
        raw = text.encode()  # UTF-8, as Segment measures its 32 KB / 500 KB limits
    except UnicodeEncodeError:  # a lone surrogate (inbound replaces them; older items may hold one)
        logger.warning(
            "segment: message %s holds lone surrogates, sent as U+FFFD", message_id, extra={"message_id": message_id}
        )
        raw = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
    return message_id, raw


def _sent_at() -> bytes:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


def _body(batch: list[_Item]) -> bytes:
    """Assembled from the already serialized messages: they are encoded once, whatever the retries."""
    return b'{"batch":[' + b",".join(raw for _, raw in batch) + b'],"sentAt":"' + _sent_at() + b'"}'


def _backoff(attempt: int) -> float:
    """0.2 s, 0.4 s, 0.8 s ... capped at 5 s, with "equal jitter" (between half and all of it)."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds or HTTP-date; None when absent or unparseable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
