"""Run-time configuration: environment (read at call time), settings and secrets from SSM."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

# boto3 before Powertools' parameters, which import it two modules further down. Every handler's
# entry imports this module before any other that loads boto3 (Outbound's and Resync's put it first),
# so botocore and urllib3, whose imports compile regular expressions (a deep recursion), load at the
# shallowest depth our import chain allows. Deeper, that recursion kept crossing a boundary of
# CPython's frame stack, which maps and unmaps a 16 KB chunk on each crossing: 600 to 1,400 page
# faults per cold start (docs/design.md, Cold start).
import boto3
from aws_lambda_powertools.utilities import parameters

from segment_connector.domain.errors import SettingsInvalid

if TYPE_CHECKING:
    from segment_connector.domain.models.settings import ConnectorSettings

SETTINGS_MAX_AGE = 30  # seconds: a settings change applies within a minute, no redeploy
SECRET_MAX_AGE = 300
DEFAULT_SPACE_ID = "local"  # without SPACE_ID (the local stack's default)

_absent: dict[str, float] = {}
_parsed: tuple[str, ConnectorSettings] | None = None


def table_name() -> str:
    return os.environ["TABLE_NAME"]


def inbound_writers() -> int:
    """How many users' messages of one delivery are written side by side (template: 16)."""
    return max(1, int(os.environ.get("INBOUND_WRITERS", "1")))


def space_id() -> str:
    """The space id of the Segment-compatible Profile API's paths (the SpaceId template parameter)."""
    return os.environ.get("SPACE_ID") or DEFAULT_SPACE_ID


def parameter_name(suffix: str) -> str:
    return f"{os.environ.get('PARAMETER_PREFIX', '/segment-connector').rstrip('/')}/{suffix}"


def load_settings() -> ConnectorSettings:
    global _parsed
    raw = parameters.get_parameter(parameter_name("settings"), max_age=SETTINGS_MAX_AGE)
    if _parsed is None or _parsed[0] != raw:
        _parsed = (raw, parse_settings(raw))
    return _parsed[1]


def parse_settings(raw: str | None) -> ConnectorSettings:
    """A settings document -> ConnectorSettings; SettingsInvalid naming the fields in plain words."""
    # Imported on the first settings read, not at a cold start: the rules' models and difflib cost
    # InboundFunction ~8 ms of init that /health and the Profile API's reads never need.
    from pydantic import ValidationError

    from segment_connector.domain.explain import field_errors, json_problem
    from segment_connector.domain.models.settings import ConnectorSettings

    try:
        json.loads(raw or "{}")
    except json.JSONDecodeError as error:
        details = [{"field": "(document)", "error": json_problem(error)}]
        raise SettingsInvalid(_unusable(details), details) from None
    try:
        return ConnectorSettings.model_validate_json(raw or "{}")
    except ValidationError as error:
        details = field_errors(error)
        raise SettingsInvalid(_unusable(details), details) from None


def _unusable(details: list[dict[str, str]]) -> str:
    from segment_connector.domain.explain import summary

    return (
        f"the connector settings {parameter_name('settings')} cannot be used ({summary(details)}): "
        "fix them in the console or with `segment-connector settings put`"
    )


def current_settings_document() -> str:
    """The settings document as stored now (no cache): what a resync brings Segment to."""
    return parameters.get_parameter(parameter_name("settings"), force_fetch=True) or "{}"


def oldest_valid_settings_document() -> str | None:
    """The oldest version of the settings document still in the parameter's history that is
    valid (what the stack was deployed with, before any save), if any."""
    pages = boto3.client("ssm").get_paginator("get_parameter_history").paginate(Name=parameter_name("settings"))
    versions = sorted((v for page in pages for v in page.get("Parameters", [])), key=lambda v: v["Version"])
    for version in versions:
        try:
            parse_settings(version["Value"])
        except SettingsInvalid:
            continue
        return str(version["Value"])
    return None


def get_secret(suffix: str, max_age: int = SECRET_MAX_AGE) -> str | None:
    """A SecureString under the prefix, or None when it does not exist (absence cached too)."""
    name = parameter_name(suffix)
    if _absent.get(name, 0) > time.monotonic():
        return None
    try:
        value = parameters.get_parameter(name, decrypt=True, max_age=max_age)
    except parameters.exceptions.GetParameterError as error:
        if "ParameterNotFound" not in repr(error.__cause__ or error):
            raise
        _absent[name] = time.monotonic() + max_age
        return None
    return value or None


def segment_api_url(settings: ConnectorSettings) -> str:
    """Where outbound sends: SEGMENT_API_URL when the deployment sets it (the SegmentApiUrl template
    parameter; the local stack's sink; the tests), else the settings' segment_api_url, which can only
    be one of Segment's own endpoints (models.settings.SEGMENT_API_URLS)."""
    return os.environ.get("SEGMENT_API_URL", "").rstrip("/") or settings.api_url


def clear_caches() -> None:
    global _parsed
    parameters.clear_caches()
    _absent.clear()
    _parsed = None
