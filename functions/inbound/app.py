"""InboundFunction: Segment deliveries, the Tracking API and the Profile API. The routes and
their wiring are the inbound flow's (segment_connector.inbound.entry)."""

from segment_connector.inbound import entry

lambda_handler = entry.lambda_handler
