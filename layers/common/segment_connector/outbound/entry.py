"""OutboundFunction: the table's stream -> Segment (and {"action": "replay"} for dead letters)."""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

# runtime.config first: it imports boto3, which then loads at the shallowest depth of the flow's
# import chain (see runtime/config.py; ~600-1,000 fewer page faults per cold start).
from segment_connector.runtime import config  # isort: skip

from segment_connector.outbound import handler as outbound
from segment_connector.runtime.logs import LOGGER_OPTIONS, function_logs, route_package_logs
from segment_connector.segment_api.delivery import ClientPool
from segment_connector.store.profile_store import ProfileStore, shared_store

logger = Logger(**LOGGER_OPTIONS)
route_package_logs(logger)
# Routes like /health publish no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", "No application metrics to publish")
metrics = Metrics()
clients = ClientPool()  # one SegmentClient (one HTTP session) per warm container


def store() -> ProfileStore:
    return shared_store(config.table_name())


@function_logs(logger)
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = outbound.handle(event, context, store(), clients)
    for name, value in result.metrics.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return result.response
