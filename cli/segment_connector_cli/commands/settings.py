"""`settings show|validate|put`: the settings document (SSM String <prefix>/settings)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from segment_connector.ops.settings_document import (
    SETTINGS_PARAMETER,
    FieldError,
    parse_settings_text,
    size_errors,
    stored_text,
    write_settings,
)
from segment_connector.ops.status import StatusWarning, status_warnings
from segment_connector_cli.context import KEYS, Command
from segment_connector_cli.errors import PROG, CliError
from segment_connector_cli.render import dump, note, out, print_problems


def _read_file(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {name}: {getattr(error, 'strerror', None) or error}") from None


def _parse_settings_file(name: str) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The file's document and its errors: the functions' model's, and SSM's size limit (8 KB stored)."""
    document, errors = parse_settings_text(_read_file(name))
    if document is not None:
        errors = errors + size_errors(stored_text(document))
    return document, errors


def settings_show(command: Command) -> int:
    name = command.target.parameter(SETTINGS_PARAMETER)
    text = command.settings_text()
    if text is None:
        raise CliError(
            f"{name} does not exist in the {command.target.label}: create it with `{PROG} settings put FILE`"
        )
    document, errors = parse_settings_text(text)
    warnings = command.warnings(document or {})
    if command.json:
        out(
            dump(
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
    out(dump(document) if document is not None else text)
    if errors:
        note(f"{name} is invalid (the functions refuse it until it is fixed):")
    print_problems(errors, warnings, to_stderr=True)
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
        out(dump({"file": command.args.file, "valid": not errors, "errors": errors, "warnings": warnings}))
    else:
        out(
            f"{command.args.file}: {'invalid' if errors else 'valid'}"
            + (" (keys not checked: --offline)" if offline else "")
        )
        print_problems(errors, warnings, to_stderr=False)
    return 1 if errors else 0


def settings_put(command: Command) -> int:
    document, errors = _parse_settings_file(command.args.file)
    warnings = command.warnings(document or {})
    if errors or document is None:
        _refuse(command, document, errors, warnings)
    target = command.target
    name = target.parameter(SETTINGS_PARAMETER)
    text = stored_text(document)
    current, current_version = command.settings_parameter()
    # As the console: the same document stored again would be a new version and start a resync.
    written = current != text
    # The console's write (settings_document.write_settings): the same adapter, the same tier rule.
    version = write_settings(command.parameters(), text) if written else current_version
    if command.json:
        out(
            dump(
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
        return 0
    if written:
        out(
            f"wrote {name} (version {version}) in the {target.label}: the functions apply it within a minute, "
            "and a resync brings Segment up to date"
        )
    else:
        out(
            f"unchanged: {name} (version {version}) in the {target.label} already holds this document; "
            "nothing written, no resync"
        )
    print_problems([], warnings, to_stderr=False)
    return 0


def _refuse(
    command: Command, document: dict[str, Any] | None, errors: list[FieldError], warnings: list[StatusWarning]
) -> NoReturn:
    only_size = document is not None and errors == size_errors(stored_text(document))
    verdict = "too large for SSM" if only_size else "invalid"
    if command.json:
        out(
            dump(
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
        note(f"{command.args.file} is {verdict}:")
        print_problems(errors, warnings, to_stderr=True)
    raise CliError(f"{command.args.file} is {verdict}: nothing written")
