"""segment_api_url: only Segment's own endpoints come from the settings; any other URL (a proxy,
the local sink) comes from the deployment (SegmentApiUrl -> SEGMENT_API_URL), never from the
console or the CLI, since outbound sends the write key and user data there."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness import PREFIX, TEMPLATE, Api, Aws
from segment_connector.domain.errors import SettingsInvalid
from segment_connector.domain.models.settings import SEGMENT_API_URLS
from segment_connector.runtime import config
from stream_helpers import failed_sequence_numbers

ELSEWHERE = ["https://collector.example.com", "http://127.0.0.1:9999", "https://api.segment.io.evil.example"]


def settings_in_ssm(aws: Aws) -> str:
    return str(aws.ssm.get_parameter(Name=f"{PREFIX}/settings")["Parameter"]["Value"])


@pytest.mark.parametrize("url", ELSEWHERE)
def test_a_settings_document_with_another_url_is_refused_naming_the_field_and_both_endpoints(url: str) -> None:
    # Given a settings document that points outbound at another host / When it is read
    with pytest.raises(SettingsInvalid) as raised:
        config.parse_settings(json.dumps({"segment_api_url": url}))
    # Then the error names the field and the two allowed values, in plain words
    (detail,) = raised.value.details
    assert detail["field"] == "segment_api_url"
    assert "https://api.segment.io" in detail["error"] and "https://events.eu1.segmentapis.com" in detail["error"]
    assert "SegmentApiUrl" in detail["error"] and not detail["error"].startswith("Value error")


@pytest.mark.parametrize("url", [*SEGMENT_API_URLS, "https://events.eu1.segmentapis.com/"])
def test_segments_own_endpoints_are_accepted(url: str) -> None:
    assert config.parse_settings(json.dumps({"segment_api_url": url})).api_url == url.rstrip("/")


@pytest.mark.parametrize("url", ELSEWHERE)
def test_the_console_cannot_save_another_url(aws: Aws, console_api: Api, url: str) -> None:
    # Given the stored settings
    before = settings_in_ssm(aws)
    # When the console saves a document whose segment_api_url is another host
    status, answer = console_api.put("/console/api/settings", {"segment_api_url": url})
    # Then it is a 400 naming the field, and nothing is saved
    assert status == 400 and answer["code"] == "settings_invalid"
    assert [e["field"] for e in answer["details"]] == ["segment_api_url"]
    assert settings_in_ssm(aws) == before


def test_outbound_never_sends_to_a_url_from_the_settings(
    connector: Any, message: Any, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the deployment sets no SEGMENT_API_URL, and someone stored settings that name another host
    connector.settings(synchronized_segments=["ALL"])
    connector.post(message("track", userId="u1", event="A"))
    aws.ssm.put_parameter(
        Name=f"{PREFIX}/settings",
        Value=json.dumps({"synchronized_segments": ["ALL"], "segment_api_url": connector.sink.url}),
        Type="String",
        Overwrite=True,
    )
    config.clear_caches()
    monkeypatch.delenv("SEGMENT_API_URL")
    # When outbound handles the record
    response = connector.invoke()
    # Then nothing reaches that host (the write key stays home): the record waits for valid settings
    assert connector.sink.requests == []
    assert failed_sequence_numbers(response) != []


def test_the_template_passes_segment_api_url_to_the_functions_that_send() -> None:
    # Given the template / Then SegmentApiUrl (default empty) reaches outbound and resync only
    parameter = TEMPLATE["Parameters"]["SegmentApiUrl"]
    assert parameter["Default"] == ""
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        sends = name in ("OutboundFunction", "ResyncFunction")
        assert (variables.get("SEGMENT_API_URL") == {"Ref": "SegmentApiUrl"}) is sends, name
