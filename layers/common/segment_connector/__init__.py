"""segment-connector: a self-hosted Segment connector on AWS serverless."""

__version__ = "0.1.0"
