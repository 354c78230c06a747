"""OutboundFunction: the table's stream -> Segment, and replays of dead letters (the outbound
flow: segment_connector.outbound.entry)."""

from segment_connector.outbound import entry

lambda_handler = entry.lambda_handler
