"""`status`: the status warnings, what the table holds, GDPR deletions in progress, the last resync and
the last replay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segment_connector.ops.settings_document import SETTINGS_PARAMETER, parse_settings_text
from segment_connector_cli.context import Command
from segment_connector_cli.errors import PROG, CliError, describe
from segment_connector_cli.render import count, describe_job, describe_replay, dump, out
from segment_connector_cli.target import FunctionFailed, TargetError

COUNTED_KINDS = {"users": "user", "accounts": "account", "events": "event"}


def show_status(command: Command) -> int:
    report = _report(command)
    if command.json:
        out(dump(report))
        return 0
    target = command.target
    counts = report["counts"]
    out(f"{PROG} status of the {target.label}")
    if "settings_errors" in report:
        out(f"settings {target.parameter(SETTINGS_PARAMETER)} are invalid (the functions refuse them):")
        for error in report["settings_errors"]:
            out(f"  {error['field']}: {error['error']}")
    out("warnings: none" if not report["warnings"] else "warnings:")
    for warning in report["warnings"]:
        out(f"  {warning.code}: {warning.message}")
    out(
        f"stored: {count(counts['users'], 'user')}, {count(counts['accounts'], 'account')}, "
        f"{count(counts['events'], 'event')}, {count(counts['dead_letters'], 'dead letter')}"
        + (
            f" (`{PROG} replay` sends {'it' if counts['dead_letters'] == 1 else 'them'} again)"
            if counts["dead_letters"]
            else ""
        )
    )
    out(f"GDPR deletions in progress: {_describe_deletions(report['deletions'])}")
    out(f"last resync: {describe_job(report['resync'])}")
    out(f"last {describe_replay(report['replay'])}")
    return 0


def _describe_deletions(deletions: Mapping[str, Any]) -> str:
    if not deletions["in_progress"]:
        return "none"
    return f"{deletions['in_progress']} (the oldest received {deletions['oldest_age_seconds']} s ago)"


def _report(command: Command) -> dict[str, Any]:
    import time
    from datetime import UTC, datetime

    from segment_connector.ops.status import computed_trait_names
    from segment_connector.store import deletions_pending
    from segment_connector.views.jobs import replay_view
    from segment_connector.views.profiles import received_trait_names

    target = command.target
    text = command.settings_text()
    document, errors = (
        parse_settings_text(text)
        if text is not None
        else (None, [{"field": "(document)", "error": f"{target.parameter(SETTINGS_PARAMETER)} does not exist"}])
    )
    store = command.store()
    # computed_trait_shadows: the computed traits' names users send too, in a sample of the profiles
    received = received_trait_names(store, computed_trait_names(document or {}))
    warnings = command.warnings(document or {}, received_traits=received)
    counted = store.inventory.count_kinds(COUNTED_KINDS.values())
    counts = {label: counted[kind] for label, kind in COUNTED_KINDS.items()}
    counts["dead_letters"] = store.inventory.count_dead_letters()
    resync = _resync_status(command)
    replay = replay_view(store.replay.job(), time.time())
    deletions = deletions_pending.in_progress(store).public(datetime.now(UTC))
    report: dict[str, Any] = {
        "warnings": warnings,
        "counts": counts,
        "deletions": deletions,
        "resync": resync,
        "replay": replay,
    }
    if errors:
        report["settings_errors"] = errors
    return report


def _resync_status(command: Command) -> dict[str, Any]:
    try:
        job = command.invoke(command.target.resync_function, {"action": "status"})
    except (FunctionFailed, TargetError, CliError) as error:
        return {"status": "unknown", "error": str(error)}
    except Exception as error:  # noqa: BLE001 - the rest of the status is still worth printing
        return {"status": "unknown", "error": describe(error)}
    return job if isinstance(job, dict) else {"status": "unknown", "error": f"unexpected answer {job!r}"}
