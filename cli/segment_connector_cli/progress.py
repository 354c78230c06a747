"""Following a resync or a replay to its end; the resync's progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from segment_connector_cli.context import Command
from segment_connector_cli.errors import PROG, CliError
from segment_connector_cli.render import as_int, describe_replay, note, out, progress

BAR_WIDTH = 24


class ProgressBar:
    """Only when stdout is a terminal (a person watches): on a terminal stderr one line redrawn in
    place, else a line per change on stderr. With stdout redirected or piped, no bar at all."""

    def __init__(self) -> None:
        self.shown = isatty(sys.stdout)
        self.tty = isatty(sys.stderr)
        self.last = ""
        self.drawn = False

    def show(self, job: Mapping[str, Any]) -> None:
        if not self.shown:
            return
        total, done = as_int(job.get("segments")), as_int(job.get("segments_done"))
        filled = BAR_WIDTH * done // total if total else 0
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress(job)}"
        if line == self.last:
            return
        self.last = line
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
            self.drawn = True
        else:
            note(line)

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False
            self.last = ""


def isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def follow_resync(command: Command, job: dict[str, Any]) -> dict[str, Any]:
    """Poll ResyncFunction's status until the job ends (or --timeout), following a newer one that supersedes it."""
    bar = ProgressBar()
    timeout = float(command.args.timeout)
    deadline = time.monotonic() + timeout
    try:
        while job.get("status") == "running":
            bar.show(job)
            if time.monotonic() >= deadline:
                bar.end()
                raise CliError(
                    f"stopped waiting for resync {job.get('id')} after {timeout:g} s: it is still running "
                    f"({progress(job)}) and goes on; `{PROG} status` shows it, "
                    f"`--timeout SECONDS` waits longer"
                )
            time.sleep(max(0.0, command.args.interval))
            job = _next_status(command, job, bar)
    except KeyboardInterrupt:
        bar.end()
        note(f"stopped following resync {job.get('id')}; it goes on (`{PROG} status` shows it)")
        raise
    finally:
        bar.end()
    if job.get("status") == "superseded":
        note(f"resync {job.get('id')} was superseded by a newer one: `{PROG} status` shows it")
    if not command.json:
        out(f"resync {job.get('id')} {job.get('status')}: {progress(job)}")
    return job


def _next_status(command: Command, job: dict[str, Any], bar: ProgressBar) -> dict[str, Any]:
    latest = command.invoke(command.target.resync_function, {"action": "status"})
    if not isinstance(latest, dict) or latest.get("status") == "none":
        raise CliError(f"lost the resync {job.get('id')}: {command.target.resync_function} answered {latest!r}")
    if latest.get("id") != job.get("id"):
        bar.end()
        note(
            f"resync {job.get('id')} was superseded by resync {latest.get('id')} "
            f"({latest.get('reason') or 'no reason'}): following that one"
        )
    return latest


def follow_replay(command: Command, job: dict[str, Any]) -> dict[str, Any]:
    """Read the replay job from the table until it ends (or --timeout)."""
    from segment_connector.outbound.replay import public

    deadline = time.monotonic() + float(command.args.timeout)
    while job.get("status") == "running":
        if time.monotonic() >= deadline:
            raise CliError(
                f"stopped waiting for replay {job.get('id')} after {command.args.timeout:g} s: it is still running "
                f"({describe_replay(job)}); `{PROG} status` shows its progress"
            )
        time.sleep(command.args.interval)
        job = {"started": job.get("started"), **public(command.store().replay.job())}
    return job
