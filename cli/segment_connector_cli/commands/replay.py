"""`replay [--limit N] [--wait]`: send the dead letters again (OutboundFunction {"action": "replay"})."""

from __future__ import annotations

from typing import Any

from segment_connector_cli.context import Command
from segment_connector_cli.errors import CliError
from segment_connector_cli.progress import follow_replay
from segment_connector_cli.render import as_int, count, describe_replay, dump, out


def replay_dead_letters(command: Command) -> int:
    """Start a replay (or show the running one); with --wait, follow it to its end."""
    payload: dict[str, Any] = {"action": "replay"}
    if command.args.limit is not None:
        payload["limit"] = command.args.limit
    job = command.invoke(command.target.outbound_function, payload)
    if not isinstance(job, dict):
        raise CliError(f"{command.target.outbound_function} answered {job!r}")
    if not command.json:
        what = "started" if job.get("started") else "is running already (this one is shown)"
        out(f"replay {job.get('id')} {what}: {count(as_int(job.get('total')), 'dead letter')} to try")
    if command.args.wait:
        job = follow_replay(command, job)
    if command.json:
        out(dump(job))
    else:
        out(describe_replay(job))
        for error in job.get("errors") or []:
            out(f"  failed  {error.get('message_id')}: {error.get('reason')}")
    if not command.args.wait:
        return 0
    return 1 if job.get("status") != "done" or as_int(job.get("failed")) else 0
