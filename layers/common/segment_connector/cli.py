"""`segment-connector`: the operator's command line, for a deployed stack or the local one.

    segment-connector status [--json]                       warnings, counts, the last resync
    segment-connector settings show|validate FILE|put FILE  the settings document
    segment-connector keys set api-key|write-key|shared-secret|admin-key
    segment-connector resync [--wait]                       bring Segment up to date
    segment-connector replay [--limit N] [--wait]           send dead letters again (in the background)
    segment-connector users get ID                          a profile, as the Profile API shows it

Every command takes `--local` (the stack of `make run`) or `--stack-name`/`--region`/`--profile`
(a deployed stack; the stack name defaults to samconfig.toml's). Reads go to DynamoDB and SSM
directly; resync and replay invoke the stack's functions (Lambda Invoke, RequestResponse).
No command prints a key, nor any part of one.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from segment_connector import __version__
from segment_connector.cli_target import FunctionFailed, Invoker, Target, TargetError, resolve
from segment_connector.settings_document import (
    SETTINGS_PARAMETER,
    FieldError,
    parse_settings_text,
    size_errors,
    stored_text,
    write_settings,
)
from segment_connector.status import StatusWarning, status_warnings

PROG = "segment-connector"
KEYS = ("api-key", "write-key", "shared-secret", "admin-key")
COUNTED_KINDS = {"users": "user", "accounts": "account", "events": "event"}
POLL_SECONDS = 2.0
REPLAY_WAIT_SECONDS = 900.0  # replay --wait stops following after this long (the replay goes on)
WAIT_SECONDS = 3600.0  # resync --wait gives up following after this long (--timeout)
BAR_WIDTH = 24


class CliError(Exception):
    """Ends the command: `segment-connector: error: <message>` on stderr, exit 1."""


def main(argv: Sequence[str] | None = None, *, invoker: Invoker | None = None) -> int:
    """The console script. `invoker` ((function name, payload) -> result) replaces Lambda Invoke (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        (getattr(args, "help_parser", None) or parser).print_help(sys.stderr)
        return 2
    try:
        return int(args.command(Command(args, invoker)) or 0)
    except (CliError, TargetError, FunctionFailed) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `segment-connector settings show | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written; exit quietly
        return 1
    except Exception as error:  # noqa: BLE001 - one line for the operator, not a traceback
        return _fail(_describe(error))


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def _describe(error: Exception) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    from segment_connector.errors import ConnectorError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        operation = getattr(error, "operation_name", "") or "AWS"
        return f"{operation}: {details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    if isinstance(error, ConnectorError):
        cause = error.__cause__
        return error.message + (f" ({_describe(cause)})" if isinstance(cause, Exception) else "")
    if isinstance(error, BotoCoreError):
        return str(error)
    return f"{type(error).__name__}: {error}"


# -- arguments -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors too end in one `segment-connector: error: ...` line (naming the command)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix(PROG).strip()
        self.exit(2, f"{PROG}: error: {command + ': ' if command else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Operate a segment-connector stack: deployed (CloudFormation outputs) or local "
        "(`make run`, with --local).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    target = _Parser(add_help=False)
    where = target.add_argument_group("target (default: the deployed stack named in samconfig.toml)")
    where.add_argument(
        "--local",
        action="store_true",
        help="the local stack of `make run` (its .local-stack/state.json, or $SEGMENT_CONNECTOR_STATE)",
    )
    where.add_argument("--stack-name", metavar="NAME", help="the deployed stack (default: samconfig.toml's stack_name)")
    where.add_argument("--region", help="its AWS region (default: samconfig.toml's, else your AWS configuration)")
    where.add_argument("--profile", help="AWS profile to use")
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    settings = commands.add_parser(
        "settings",
        help="show, validate or put the settings document",
        description="The settings document (SSM String <prefix>/settings).",
    )
    settings.set_defaults(help_parser=settings)
    actions = settings.add_subparsers(title="actions", metavar="ACTION")
    show = actions.add_parser(
        "show",
        parents=[target, as_json],
        help="the current document and its warnings",
        description="Print the current settings document (JSON on stdout; its errors and "
        "warnings on stderr, so that `settings show > settings.json` gives a file to edit).",
    )
    show.set_defaults(command=settings_show)
    validate = actions.add_parser(
        "validate",
        parents=[target, as_json],
        help="check a settings file",
        description="Validate a settings file with the functions' own model and print the "
        "status warnings it would raise. Exit 1 when it is invalid.",
    )
    validate.add_argument("file", metavar="FILE", help="settings JSON file (- for stdin)")
    validate.add_argument(
        "--offline", action="store_true", help="do not read the target: warnings assume that every key exists"
    )
    validate.set_defaults(command=settings_validate)
    put = actions.add_parser(
        "put",
        parents=[target, as_json],
        help="validate a settings file and store it",
        description="Validate a settings file, then write it to <prefix>/settings (String, "
        "overwritten, as the console writes it: a standard parameter up to 4 KB, an advanced one up "
        "to 8 KB). An invalid or larger file is refused: nothing is written, exit 1. The functions "
        "apply it within a minute and a resync brings Segment up to date.",
    )
    put.add_argument("file", metavar="FILE", help="settings JSON file (- for stdin)")
    put.set_defaults(command=settings_put)

    keys = commands.add_parser(
        "keys", help="store a key (SecureString)", description="The keys (SecureString parameters <prefix>/<name>)."
    )
    keys.set_defaults(help_parser=keys)
    key_actions = keys.add_subparsers(title="actions", metavar="ACTION")
    key_set = key_actions.add_parser(
        "set",
        parents=[target],
        help="store a key",
        description="Store a key as the SecureString <prefix>/<name> "
        "(overwritten). The value is read from a prompt that does not echo it when stdin is a terminal, else from "
        "stdin (one trailing newline removed): `openssl rand -hex 24 | segment-connector keys set api-key`. "
        "It is never printed.",
    )
    key_set.add_argument("name", choices=KEYS, metavar="NAME", help=" | ".join(KEYS))
    key_set.set_defaults(command=keys_set)

    status = commands.add_parser(
        "status",
        parents=[target, as_json],
        help="warnings, counts and the last resync",
        description="The status warnings, how many users, accounts, events and dead "
        "letters are stored (a scan of the table), and the last resync.",
    )
    status.set_defaults(command=show_status)

    resync = commands.add_parser(
        "resync",
        parents=[target, as_json],
        help="start a resync",
        description="Start a resync: every user and account in the filters is sent "
        "to Segment again (e.g. after restoring the table). With --wait, follow it until it "
        "ends; exit 1 if it failed or is still running after --timeout seconds.",
    )
    resync.add_argument("--wait", action="store_true", help="follow it with a progress bar until it ends")
    resync.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=WAIT_SECONDS,
        metavar="SECONDS",
        help=f"with --wait: stop following after this long (default {WAIT_SECONDS:.0f}); the resync goes on",
    )
    resync.add_argument("--interval", type=float, default=POLL_SECONDS, help=argparse.SUPPRESS)
    resync.set_defaults(command=start_resync)

    replay = commands.add_parser(
        "replay",
        parents=[target, as_json],
        help="send dead letters again",
        description="Start a replay of the dead-lettered outbound messages (OutboundFunction "
        '{"action": "replay"}): OutboundFunction works it page by page in the background, one replay at a '
        "time (a start while one runs shows that one). With --wait, follow it until it ends and print its "
        "counts and first errors; exit 1 if any letter still failed, the replay failed or stalled, or it is "
        "still running after --timeout seconds.",
    )
    replay.add_argument("--limit", type=_positive, metavar="N", help="only the N oldest dead letters")
    replay.add_argument("--wait", action="store_true", help="follow it until it ends")
    replay.add_argument("--timeout", type=float, default=REPLAY_WAIT_SECONDS, metavar="SECONDS", help=argparse.SUPPRESS)
    replay.add_argument("--interval", type=float, default=POLL_SECONDS, help=argparse.SUPPRESS)
    replay.set_defaults(command=replay_dead_letters)

    users = commands.add_parser("users", help="read profiles", description="Profiles, as the Profile API shows them.")
    users.set_defaults(help_parser=users)
    user_actions = users.add_subparsers(title="actions", metavar="ACTION")
    user_get = user_actions.add_parser(
        "get",
        parents=[target, as_json],
        help="one profile",
        description="A profile as the Profile API returns it (GET /v1/users/ID). A bare ID (u1) is looked up "
        "as a user_id, then an anonymous_id, then an email, as the console does.",
    )
    user_get.add_argument(
        "id",
        metavar="ID",
        help="user_id:<id>, anonymous_id:<id> or email:<address>, or a bare value tried as each of them (as the "
        "console's lookup)",
    )
    user_get.set_defaults(command=get_user)
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


# -- what every command shares -------------------------------------------------------------------


class Command:
    def __init__(self, args: argparse.Namespace, invoker: Invoker | None):
        self.args = args
        self._invoker = invoker
        self._target: Target | None = None
        if args.local and (args.stack_name or args.region or args.profile):
            raise CliError("--local does not take --stack-name, --region or --profile")

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve(
                local=self.args.local,
                stack_name=self.args.stack_name,
                region=self.args.region,
                profile=self.args.profile,
            )
        return self._target

    def invoke(self, function: str | None, payload: dict[str, Any]) -> Any:
        if not function:
            raise CliError(f"the {self.target.label} has no such function: deploy the current template")
        if self._invoker is not None:
            return self._invoker(function, payload)
        return self.target.invoke(function, payload)

    # -- SSM -------------------------------------------------------------------------------------

    def settings_text(self) -> str | None:
        return self.settings_parameter()[0]

    def settings_parameter(self) -> tuple[str | None, int | None]:
        """The stored settings text and its version (None, None when the parameter does not exist)."""
        ssm = self.target.client("ssm")
        try:
            parameter = ssm.get_parameter(Name=self.target.parameter("settings"))["Parameter"]
        except ssm.exceptions.ParameterNotFound:
            return None, None
        return str(parameter["Value"]), int(parameter["Version"])

    def existing_keys(self) -> set[str]:
        """Which of the keys exist (their names only: no value is read)."""
        ssm = self.target.client("ssm")
        names = {self.target.parameter(key): key for key in KEYS}
        found: set[str] = set()
        request: dict[str, Any] = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": list(names)}]}
        while True:
            response = ssm.describe_parameters(**request)
            found.update(names[p["Name"]] for p in response.get("Parameters", []) if p["Name"] in names)
            if not response.get("NextToken"):
                return found
            request["NextToken"] = response["NextToken"]

    def warnings(self, document: Mapping[str, Any], keys: set[str] | None = None) -> list[StatusWarning]:
        keys = self.existing_keys() if keys is None else keys
        return status_warnings(
            document,
            has_write_key="write-key" in keys,
            has_api_key="api-key" in keys,
            prefix=self.target.parameter_prefix,
        )

    def store(self) -> Any:
        from segment_connector.storage import ProfileStore

        return ProfileStore(self.target.table_name, self.target.client("dynamodb"))


def _out(text: str = "") -> None:
    print(text, flush=True)


def _note(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- settings ------------------------------------------------------------------------------------


def _read_file(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {name}: {getattr(error, 'strerror', None) or error}") from None


def _print_problems(errors: list[dict[str, str]], warnings: list[StatusWarning], *, to_stderr: bool) -> None:
    say = _note if to_stderr else _out
    for error in errors:
        say(f"  {error['field']}: {error['error']}")
    for warning in warnings:
        say(f"warning: {warning.code}: {warning.message}")


def _parse_settings_file(name: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The file's document and its errors: the functions' model's, and SSM's size limit (8 KB stored)."""
    document, errors = parse_settings_text(_read_file(name))
    if document is not None:
        errors = errors + size_errors(stored_text(document))
    return document, errors


def settings_show(command: Command) -> int:
    name = command.target.parameter("settings")
    text = command.settings_text()
    if text is None:
        raise CliError(
            f"{name} does not exist in the {command.target.label}: create it with `{PROG} settings put FILE`"
        )
    document, errors = parse_settings_text(text)
    warnings = command.warnings(document or {})
    if command.json:
        _out(
            _dump(
                {
                    "parameter": name,
                    "settings": document if document is not None else text,
                    "valid": not errors,
                    "errors": errors,
                    "warnings": warnings,
                }
            )
        )
        return 0
    _out(_dump(document) if document is not None else text)
    if errors:
        _note(f"{name} is invalid (the functions refuse it until it is fixed):")
    _print_problems(errors, warnings, to_stderr=True)
    return 0


def settings_validate(command: Command) -> int:
    document, errors = _parse_settings_file(command.args.file)
    offline = command.args.offline
    keys = set(KEYS) if offline else None
    warnings = (
        status_warnings(document or {}, has_write_key=True, has_api_key=True)
        if offline
        else command.warnings(document or {}, keys)
    )
    if command.json:
        _out(_dump({"file": command.args.file, "valid": not errors, "errors": errors, "warnings": warnings}))
    else:
        _out(
            f"{command.args.file}: {'invalid' if errors else 'valid'}"
            + (" (keys not checked: --offline)" if offline else "")
        )
        _print_problems(errors, warnings, to_stderr=False)
    return 1 if errors else 0


def settings_put(command: Command) -> int:
    document, errors = _parse_settings_file(command.args.file)
    target = command.target
    warnings = command.warnings(document or {})
    if errors or document is None:
        only_size = document is not None and errors == size_errors(stored_text(document))
        verdict = "too large for SSM" if only_size else "invalid"
        if command.json:
            _out(
                _dump(
                    {
                        "file": command.args.file,
                        "valid": False,
                        "errors": errors,
                        "warnings": warnings,
                        "written": False,
                    }
                )
            )
        else:
            _note(f"{command.args.file} is {verdict}:")
            _print_problems(errors, warnings, to_stderr=True)
        raise CliError(f"{command.args.file} is {verdict}: nothing written")
    from segment_connector.parameter_store import ParameterStore

    name = target.parameter(SETTINGS_PARAMETER)
    text = stored_text(document)
    current, current_version = command.settings_parameter()
    # As the console: the same document stored again would be a new version and start a resync.
    written = current != text
    # The console's write (settings_document.write_settings): the same tier rule, standard up to 4 KB.
    version = (
        write_settings(ParameterStore(target.parameter_prefix, target.client("ssm")), text)
        if written
        else current_version
    )
    if command.json:
        _out(
            _dump(
                {
                    "file": command.args.file,
                    "valid": True,
                    "errors": [],
                    "warnings": warnings,
                    "written": written,
                    "parameter": name,
                    "version": version,
                }
            )
        )
    elif not written:
        _out(
            f"unchanged: {name} (version {version}) in the {target.label} already holds this document; "
            "nothing written, no resync"
        )
        _print_problems([], warnings, to_stderr=False)
    else:
        _out(
            f"wrote {name} (version {version}) in the {target.label}: the functions apply it within a minute, "
            "and a resync brings Segment up to date"
        )
        _print_problems([], warnings, to_stderr=False)
    return 0


# -- keys ----------------------------------------------------------------------------------------


def keys_set(command: Command) -> int:
    target = command.target
    name = target.parameter(command.args.name)
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        value = getpass.getpass(f"value of {name} (not shown): ")
    else:
        value = stdin.read() if stdin is not None else ""
        value = value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value
    if not value:
        raise CliError(f"empty value: {name} not written")
    from botocore.exceptions import ClientError

    try:
        version = (
            target.client("ssm")
            # Under the stack's customer managed key when it has one (without KeyId, an overwrite
            # would move the key to aws/ssm, readable by any role allowed to get it).
            .put_parameter(
                Name=name,
                Value=value,
                Type="SecureString",
                Overwrite=True,
                **({"KeyId": target.parameter_key} if target.parameter_key else {}),
            )
            .get("Version")
        )
    except ClientError as error:
        details = error.response.get("Error", {})
        message = str(details.get("Message", "")).replace(value, "***")  # never echo the value, even there
        raise CliError(f"{name} not written: {details.get('Code', 'error')}: {message}") from None
    under = f" under {target.parameter_key}" if target.parameter_key else ""
    _out(
        f"wrote SecureString {name}{under} (version {version}) in the {target.label}; the functions read keys again "
        "within 5 minutes"
    )
    return 0


# -- status --------------------------------------------------------------------------------------


def show_status(command: Command) -> int:
    target = command.target
    text = command.settings_text()
    document, errors = (
        parse_settings_text(text)
        if text is not None
        else (None, [{"field": "(document)", "error": f"{target.parameter('settings')} does not exist"}])
    )
    warnings = command.warnings(document or {})
    store = command.store()
    counted = store.count_kinds(COUNTED_KINDS.values())
    counts = {label: counted[kind] for label, kind in COUNTED_KINDS.items()}
    counts["dead_letters"] = store.count_dead_letters()
    resync = _resync_status(command)
    from segment_connector.replay import public

    replay = public(store.replay_job())
    from datetime import UTC, datetime

    from segment_connector import deletions_pending

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
    if command.json:
        _out(_dump(report))
        return 0
    _out(f"{PROG} status of the {target.label}")
    if errors:
        _out(f"settings {target.parameter('settings')} are invalid (the functions refuse them):")
        for error in errors:
            _out(f"  {error['field']}: {error['error']}")
    _out("warnings: none" if not warnings else "warnings:")
    for warning in warnings:
        _out(f"  {warning.code}: {warning.message}")
    _out(
        f"stored: {_count(counts['users'], 'user')}, {_count(counts['accounts'], 'account')}, "
        f"{_count(counts['events'], 'event')}, {_count(counts['dead_letters'], 'dead letter')}"
        + (
            f" (`{PROG} replay` sends {'it' if counts['dead_letters'] == 1 else 'them'} again)"
            if counts["dead_letters"]
            else ""
        )
    )
    _out(f"GDPR deletions in progress: {_describe_deletions(deletions)}")
    _out(f"last resync: {_describe_job(resync)}")
    _out(f"last {_describe_replay(replay)}")
    return 0


def _describe_deletions(deletions: Mapping[str, Any]) -> str:
    if not deletions["in_progress"]:
        return "none"
    return f"{deletions['in_progress']} (the oldest received {deletions['oldest_age_seconds']} s ago)"


def _resync_status(command: Command) -> dict[str, Any]:
    try:
        job = command.invoke(command.target.resync_function, {"action": "status"})
    except (FunctionFailed, TargetError, CliError) as error:
        return {"status": "unknown", "error": str(error)}
    except Exception as error:  # noqa: BLE001 - the rest of the status is still worth printing
        return {"status": "unknown", "error": _describe(error)}
    return job if isinstance(job, dict) else {"status": "unknown", "error": f"unexpected answer {job!r}"}


def _describe_job(job: Mapping[str, Any]) -> str:
    status = job.get("status")
    if status == "unknown":
        return f"unknown ({job.get('error')})"
    if status == "none" or not job.get("id"):
        return "none yet"
    times = ", ".join(
        f"{label} {job[key]}" for label, key in (("started", "started_at"), ("finished", "finished_at")) if job.get(key)
    )
    return f"{status} ({job.get('reason') or 'no reason'}; {times}); {_progress(job)}"


def _progress(job: Mapping[str, Any]) -> str:
    return (
        f"segments {_int(job.get('segments_done'))}/{_int(job.get('segments'))}, "
        f"evaluated {_int(job.get('evaluated')):,}, changed {_int(job.get('changed')):,}, "
        f"sent {_int(job.get('sent')):,}, failed {_int(job.get('failed')):,}"
    )


def _count(number: int, singular: str, plural: str | None = None) -> str:
    """`1 user`, `2 users`, `1,024 dead letters`."""
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


# -- resync --------------------------------------------------------------------------------------


def start_resync(command: Command) -> int:
    function = command.target.resync_function
    job = command.invoke(function, {"action": "start", "reason": "manual"})
    if not isinstance(job, dict) or not job.get("id"):
        why = job.get("error") if isinstance(job, dict) and job.get("error") else f"{function} answered {job!r}"
        raise CliError(f"the resync did not start: {why}")
    if not command.json:
        _out(f"resync {job['id']} started ({job.get('reason') or 'manual'})")
    if command.args.wait:
        job = _follow(command, job)
    if command.json:
        _out(_dump(job))
    elif not command.args.wait:
        _out(f"`{PROG} status` shows its progress")
    return 1 if job.get("status") == "failed" else 0


def _follow(command: Command, job: dict[str, Any]) -> dict[str, Any]:
    bar = _ProgressBar()
    timeout = float(command.args.timeout)
    deadline = time.monotonic() + timeout
    try:
        while job.get("status") == "running":
            bar.show(job)
            if time.monotonic() >= deadline:
                bar.end()
                raise CliError(
                    f"stopped waiting for resync {job.get('id')} after {timeout:g} s: it is still running "
                    f"({_progress(job)}) and goes on; `{PROG} status` shows it, "
                    f"`--timeout SECONDS` waits longer"
                )
            time.sleep(max(0.0, command.args.interval))
            latest = command.invoke(command.target.resync_function, {"action": "status"})
            if not isinstance(latest, dict) or latest.get("status") == "none":
                raise CliError(f"lost the resync {job.get('id')}: {command.target.resync_function} answered {latest!r}")
            if latest.get("id") != job.get("id"):
                bar.end()
                _note(
                    f"resync {job.get('id')} was superseded by resync {latest.get('id')} "
                    f"({latest.get('reason') or 'no reason'}): following that one"
                )
            job = latest
    except KeyboardInterrupt:
        bar.end()
        _note(f"stopped following resync {job.get('id')}; it goes on (`{PROG} status` shows it)")
        raise
    finally:
        bar.end()
    if job.get("status") == "superseded":
        _note(f"resync {job.get('id')} was superseded by a newer one: `{PROG} status` shows it")
    if not command.json:
        _out(f"resync {job.get('id')} {job.get('status')}: {_progress(job)}")
    return job


class _ProgressBar:
    """Only when stdout is a terminal (a person watches): on a terminal stderr one line redrawn in
    place, else a line per change on stderr. With stdout redirected or piped, no bar at all."""

    def __init__(self) -> None:
        self.shown = _isatty(sys.stdout)
        self.tty = _isatty(sys.stderr)
        self.last = ""
        self.drawn = False

    def show(self, job: Mapping[str, Any]) -> None:
        if not self.shown:
            return
        total, done = _int(job.get("segments")), _int(job.get("segments_done"))
        filled = BAR_WIDTH * done // total if total else 0
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {_progress(job)}"
        if line == self.last:
            return
        self.last = line
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
            self.drawn = True
        else:
            _note(line)

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False
            self.last = ""


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


# -- replay --------------------------------------------------------------------------------------


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
        _out(f"replay {job.get('id')} {what}: {_count(_int(job.get('total')), 'dead letter')} to try")
    if command.args.wait:
        job = _follow_replay(command, job)
    if command.json:
        _out(_dump(job))
    else:
        _out(_describe_replay(job))
        for error in job.get("errors") or []:
            _out(f"  failed  {error.get('message_id')}: {error.get('reason')}")
    if not command.args.wait:
        return 0
    return 1 if job.get("status") != "done" or _int(job.get("failed")) else 0


def _follow_replay(command: Command, job: dict[str, Any]) -> dict[str, Any]:
    from segment_connector.replay import public

    deadline = time.monotonic() + float(command.args.timeout)
    while job.get("status") == "running":
        if time.monotonic() >= deadline:
            raise CliError(
                f"stopped waiting for replay {job.get('id')} after {command.args.timeout:g} s: it is still running "
                f"({_describe_replay(job)}); `{PROG} status` shows its progress"
            )
        time.sleep(command.args.interval)
        job = {"started": job.get("started"), **public(command.store().replay_job())}
    return job


def _describe_replay(job: Mapping[str, Any]) -> str:
    status = job.get("status")
    if status in (None, "none"):
        return "replay: none yet"
    counts = (
        f"tried {_int(job.get('tried')):,} of {_int(job.get('total')):,}: {_int(job.get('replayed')):,} replayed, "
        f"{_int(job.get('failed')):,} failed"
    )
    reason = f" ({job.get('reason')})" if job.get("reason") else ""
    return f"replay {status}{reason}; {counts}"


# -- users ---------------------------------------------------------------------------------------


def get_user(command: Command) -> int:
    from segment_connector.errors import BadRequest, NotFound
    from segment_connector.explain import summary
    from segment_connector.models.settings import ConnectorSettings
    from segment_connector.profiles import not_found_message, reference_candidates, user_view

    text = command.settings_text()
    _, errors = parse_settings_text(text or "{}")
    if errors:
        raise CliError(
            f"{command.target.parameter('settings')} cannot be used ({summary(errors)}): segments cannot be "
            f"computed; fix it with `{PROG} settings put FILE` (`{PROG} settings show` shows it)"
        )
    settings = ConnectorSettings.model_validate_json(text or "{}")
    store = command.store()
    candidates = reference_candidates(command.args.id)
    for kind, value in candidates:
        try:
            # The id as typed: parse_reference decodes a URL-encoded one, so encode it first.
            view = user_view(store, settings, f"{kind}:{quote(value, safe='')}")
        except NotFound:
            continue
        except BadRequest as error:
            raise CliError(error.message) from None
        _out(_dump(view))
        return 0
    raise CliError(not_found_message(command.args.id, candidates))


if __name__ == "__main__":
    sys.exit(main())
