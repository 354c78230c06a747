"""The arguments: every command, its flags and its help (argparse)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from segment_connector import __version__
from segment_connector_cli.commands.keys import keys_set
from segment_connector_cli.commands.replay import replay_dead_letters
from segment_connector_cli.commands.resync import start_resync
from segment_connector_cli.commands.settings import settings_put, settings_show, settings_validate
from segment_connector_cli.commands.status import show_status
from segment_connector_cli.commands.users import get_user
from segment_connector_cli.context import KEYS
from segment_connector_cli.errors import PROG

POLL_SECONDS = 2.0
REPLAY_WAIT_SECONDS = 900.0  # replay --wait stops following after this long (the replay goes on)
WAIT_SECONDS = 3600.0  # resync --wait gives up following after this long (--timeout)

type Commands = argparse._SubParsersAction[_Parser]  # what add_subparsers returns


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
    _add_settings(commands, target, as_json)
    _add_keys(commands, target, as_json)
    _add_status(commands, target, as_json)
    _add_resync(commands, target, as_json)
    _add_replay(commands, target, as_json)
    _add_users(commands, target, as_json)
    return parser


def _add_settings(commands: Commands, target: _Parser, as_json: _Parser) -> None:
    """`settings show|validate|put`."""
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


def _add_keys(commands: Commands, target: _Parser, as_json: _Parser) -> None:
    """`keys set NAME`."""
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


def _add_status(commands: Commands, target: _Parser, as_json: _Parser) -> None:
    """`status`."""
    status = commands.add_parser(
        "status",
        parents=[target, as_json],
        help="warnings, counts and the last resync",
        description="The status warnings, how many users, accounts, events and dead "
        "letters are stored (a scan of the table), and the last resync.",
    )
    status.set_defaults(command=show_status)


def _add_resync(commands: Commands, target: _Parser, as_json: _Parser) -> None:
    """`resync [--wait]`."""
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


def _add_replay(commands: Commands, target: _Parser, as_json: _Parser) -> None:
    """`replay [--limit N] [--wait]`."""
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


def _add_users(commands: Commands, target: _Parser, as_json: _Parser) -> None:
    """`users get ID`."""
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
