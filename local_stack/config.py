"""The local stack's settings: environment variables, template defaults, the state file."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_stack.template import ROOT, parameter_default

DEFAULT_PORT = 3000
DEFAULT_API_KEY = "local-api-key"
DEFAULT_WRITE_KEY = "local-write-key"
DEFAULT_ADMIN_KEY = "local-admin-key"
DEFAULT_PROFILE_TOKEN = "local-profile-token"  # noqa: S105 - a local default, printed at start
DEFAULT_SPACE_ID = "local"  # its paths' space id (/v1/spaces/<SPACE_ID>/collections/...)
STATE_ENV = "SEGMENT_CONNECTOR_STATE"  # another state file (the operator CLI reads the same variable)
STATE_PATH = Path(os.environ.get(STATE_ENV) or ROOT / ".local-stack" / "state.json").absolute()
LOCAL_OVERRIDES = {"synchronized_segments": ["ALL"]}


class ConfigError(Exception):
    """A setting the local stack cannot start with (message is for the user)."""


@dataclass(frozen=True)
class LocalConfig:
    port: int
    api_key: str
    write_key: str
    shared_secret: str | None
    settings: str
    settings_source: str
    segment_api_url: str | None
    prefix: str
    admin_key: str = DEFAULT_ADMIN_KEY
    profile_token: str = DEFAULT_PROFILE_TOKEN
    space_id: str = DEFAULT_SPACE_ID

    @property
    def profile_token_is_default(self) -> bool:
        return self.profile_token == DEFAULT_PROFILE_TOKEN

    @property
    def api_key_is_default(self) -> bool:
        return self.api_key == DEFAULT_API_KEY

    @property
    def admin_key_is_default(self) -> bool:
        return self.admin_key == DEFAULT_ADMIN_KEY

    @property
    def write_key_is_default(self) -> bool:
        return self.write_key == DEFAULT_WRITE_KEY


def load_config(template: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> LocalConfig:
    raw_port = environ.get("PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw_port)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"PORT must be a port number, got {raw_port!r}") from None
    settings, source = settings_document(template, environ.get("CONNECTOR_SETTINGS") or None)
    return LocalConfig(
        port=port,
        api_key=environ.get("API_KEY") or DEFAULT_API_KEY,
        write_key=environ.get("WRITE_KEY") or DEFAULT_WRITE_KEY,
        shared_secret=environ.get("SHARED_SECRET") or None,
        settings=settings,
        settings_source=source,
        segment_api_url=environ.get("SEGMENT_API_URL") or None,
        prefix=parameter_default(dict(template), "ParameterPrefix"),
        admin_key=environ.get("ADMIN_KEY") or DEFAULT_ADMIN_KEY,
        profile_token=environ.get("PROFILE_TOKEN") or DEFAULT_PROFILE_TOKEN,
        space_id=environ.get("SPACE_ID") or DEFAULT_SPACE_ID,
    )


def settings_document(template: Mapping[str, Any], path: str | None) -> tuple[str, str]:
    """(settings JSON, where it came from): the file `path`, else SettingsParameter's Value."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"CONNECTOR_SETTINGS: cannot read {path}: {exc.strerror}") from None
        source = f"{path} (CONNECTOR_SETTINGS)"
    else:
        # The deployed default sends nobody (an empty User Filter); locally every user goes to
        # the sink, so a newcomer sees the whole round trip.
        defaults = json.loads(str(template["Resources"]["SettingsParameter"]["Properties"]["Value"]))
        text = json.dumps({**defaults, **LOCAL_OVERRIDES})
        source = 'template.yaml SettingsParameter, with synchronized_segments ["ALL"] for the local sink'
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # json_problem (segment_connector.domain.explain): line, column and what is wrong, in plain words
        raise ConfigError(
            f"settings from {source} are not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"settings from {source} must be a JSON object")
    return text, source


def write_state(state: Mapping[str, Any], path: Path = STATE_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def read_state(path: Path = STATE_PATH) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def remove_state(pid: int, path: Path = STATE_PATH) -> None:
    """Remove the state file if it is still this process's (another stack may have taken over)."""
    state = read_state(path)
    if state is not None and state.get("pid") != pid:
        return
    path.unlink(missing_ok=True)


def settings_problems(document: str) -> list[str]:
    """What the connector will reject in this settings document (empty when it is valid)."""
    layer = str(ROOT / "layers" / "common")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    from segment_connector.ops.settings_document import parse_settings_text

    _, errors = parse_settings_text(document)  # the same plain words as the CLI and the console
    return [f"{error['field']}: {error['error']}" for error in errors]
