"""segment-connector: a self-hosted Segment connector on AWS serverless."""

__version__ = "0.1.0"

# Outbound messages name this library in context.library and opt out of these destinations in
# `integrations`; inbound ignores messages that do either, so no configuration can loop.
LIBRARY_NAME = "segment-connector"
OPT_OUT_INTEGRATIONS = ("Hull", "segment-connector")
