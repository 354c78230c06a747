"""`resync [--wait]`: start a resync (ResyncFunction {"action": "start"}), and follow it."""

from __future__ import annotations

from segment_connector_cli.context import Command
from segment_connector_cli.errors import PROG, CliError
from segment_connector_cli.progress import follow_resync
from segment_connector_cli.render import dump, out


def start_resync(command: Command) -> int:
    function = command.target.resync_function
    job = command.invoke(function, {"action": "start", "reason": "manual"})
    if not isinstance(job, dict) or not job.get("id"):
        why = job.get("error") if isinstance(job, dict) and job.get("error") else f"{function} answered {job!r}"
        raise CliError(f"the resync did not start: {why}")
    if not command.json:
        out(f"resync {job['id']} started ({job.get('reason') or 'manual'})")
    if command.args.wait:
        job = follow_resync(command, job)
    if command.json:
        out(dump(job))
    elif not command.args.wait:
        out(f"`{PROG} status` shows its progress")
    return 1 if job.get("status") == "failed" else 0
