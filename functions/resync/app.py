"""ResyncFunction: settings changes -> Segment (the resync flow: segment_connector.resync.entry)."""

from segment_connector.resync import entry

lambda_handler = entry.lambda_handler
