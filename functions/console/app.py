"""ConsoleFunction: the operator console's page and API (the ops flow: segment_connector.ops.entry)."""

from pathlib import Path

from segment_connector.ops import entry

entry.serve_files_from(Path(__file__).parent / "static")
lambda_handler = entry.lambda_handler
