"""One Webhooks (Actions) batch delivered to the real handler, on a freshly seeded table."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.capacity import Call
from bench.dynamodb_model import ModelledDynamoDB
from bench.stack import InboundStack

SEED_CHUNK = 100
LAMBDA_VCPU_MB = 1769  # Lambda gives one vCPU at 1,769 MB, proportionally less below


@dataclass
class BatchRun:
    writers: int
    messages: int
    body_bytes: int
    status: int
    answer: dict[str, Any]
    refused: str | None  # the deployed limits' answer, when the body had to be let through
    wall: float
    modelled: float  # see ModelledDynamoDB.modelled
    floor: float  # see ModelledDynamoDB.floor
    moto_wall: float
    moto_cpu: float
    connector_cpu: float
    calls: list[Call]
    max_in_flight: int
    log_bytes: int
    other_cpu: float

    def cpu_at(self, memory_mb: int) -> float:
        """The connector's CPU time stretched to Lambda's CPU share at `memory_mb`."""
        return self.connector_cpu * max(1.0, LAMBDA_VCPU_MB / memory_mb)


@contextlib.contextmanager
def limits_lifted(body_bytes: int, messages: int) -> Iterator[list[str]]:
    """Raise the inbound's size limits (if it has them) to let this body through."""
    from segment_connector.inbound import delivery as inbound

    lifted = []
    saved = {}
    for name, needed in (("MAX_BODY_BYTES", body_bytes), ("MAX_BATCH_MESSAGES", messages)):
        limit = getattr(inbound, name, None)
        if isinstance(limit, int) and limit < needed:
            saved[name] = limit
            setattr(inbound, name, needed)
            lifted.append(f"{name} {limit:,} -> {needed:,}")
    try:
        yield lifted
    finally:
        for name, value in saved.items():
            setattr(inbound, name, value)


def run_batch(
    seed: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    writers: int | None,
    model: ModelledDynamoDB,
    settings: dict[str, Any] | None = None,
) -> BatchRun:
    body = json.dumps(batch, separators=(",", ":")).encode()
    with InboundStack(settings, writers=writers) as stack:
        model.recording = False
        for start in range(0, len(seed), SEED_CHUNK):
            answer = stack.post(seed[start : start + SEED_CHUNK])
            if answer.status != 200:
                raise RuntimeError(f"seeding failed: {answer.status} {answer.body}")
        refused = None
        model.recording = True
        model.reset()
        answer = stack.post(body)
        if answer.status == 413:
            refused = (answer.body or {}).get("error", "413")
            with limits_lifted(len(body), len(batch)):
                model.reset()
                answer = stack.post(body)
        model.recording = False
        return BatchRun(
            writers=stack.writers,
            messages=len(batch),
            body_bytes=len(body),
            status=answer.status,
            answer=answer.body or {},
            refused=refused,
            wall=answer.seconds,
            modelled=model.modelled(answer.seconds, answer.cpu),
            floor=model.floor(answer.cpu),
            moto_wall=model.moto_wall,
            moto_cpu=model.moto_cpu,
            connector_cpu=answer.cpu - model.excluded_cpu,
            calls=list(model.calls),
            max_in_flight=model.max_in_flight,
            log_bytes=answer.log_bytes,
            other_cpu=answer.other_cpu,
        )
