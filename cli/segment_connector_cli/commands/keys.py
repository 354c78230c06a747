"""`keys set NAME`: store a key as the SecureString <prefix>/<name>, never printing it."""

from __future__ import annotations

import getpass
import sys

from segment_connector_cli.context import Command
from segment_connector_cli.errors import CliError, aws_error
from segment_connector_cli.render import out


def _read_value(name: str) -> str:
    """From a prompt that does not echo on a terminal, else stdin (one trailing newline removed)."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        return getpass.getpass(f"value of {name} (not shown): ")
    value = stdin.read() if stdin is not None else ""
    return value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value


def keys_set(command: Command) -> int:
    target = command.target
    name = target.parameter(command.args.name)
    value = _read_value(name)
    if not value:
        raise CliError(f"empty value: {name} not written")
    try:
        # ParameterStore writes it under the stack's customer managed key when it has one (without
        # KeyId, an overwrite would move the key to aws/ssm, readable by any role allowed to get it).
        version = command.parameters().write(command.args.name, value, secure=True)
    except Exception as error:
        refused = aws_error(error)
        if refused is None:
            raise
        code, message = refused
        # Never echo the value, even there.
        raise CliError(f"{name} not written: {code}: {message.replace(value, '***')}") from None
    under = f" under {target.parameter_key}" if target.parameter_key else ""
    out(
        f"wrote SecureString {name}{under} (version {version}) in the {target.label}; the functions read keys again "
        "within 5 minutes"
    )
    return 0
