"""Log lines reach the function's log: Powertools JSON with the service, level and correlation ids.

On Lambda the runtime puts a handler on the root logger before the function's module is imported,
and Powertools' Logger then adds its SuppressFilter to it (records whose logger name contains the
service name are dropped there). `function_log` does the same, with the template's service names
and log level, and reads what the function writes to stdout.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from harness import PREFIX, basic
from local_stack.api import build_event
from local_stack.lambda_runtime import LambdaContext
from segment_connector.runtime import config
from stream_helpers import WRITE_KEY, outbound_context

# -- outbound -------------------------------------------------------------------------------------


def test_outbound_package_lines_are_json_with_service_level_request_id_and_record_ids(
    connector, message, function_log, monkeypatch
):
    # Given OutboundFunction as deployed, records dead-lettered at their first failure, and a track
    # that Segment rejects in the stream
    connector.module = function_log.cold_start("OutboundFunction")
    connector.use_client()
    monkeypatch.setenv("DEAD_LETTER_AFTER_ATTEMPTS", "1")
    connector.settings(synchronized_segments=["ALL"])
    connector.sink.script((400, {}, {"error": "invalid event"}))
    connector.post(message("track", userId="u1", event="Bought"))
    (record,) = connector.stream.read()
    # When the record is handled
    context = outbound_context()
    connector.module.lambda_handler({"Records": [record]}, context)
    # Then the client's and the dead letter's lines are in the function's log as JSON
    (client_line,) = function_log.find("segment: 0 delivered, 0 failed, 1 rejected")
    (letter_line,) = function_log.find("kept as a dead letter")
    (letter,) = connector.dead_letters()
    for line in (client_line, letter_line):
        assert line["service"] == "outbound" and line["level"] == "WARNING"
        assert line["function_request_id"] == context.aws_request_id
    # with the record's sequence number and the message's id
    assert letter_line["sequence_number"] == record["dynamodb"]["SequenceNumber"]
    assert letter_line["message_id"] == letter["message_id"]
    assert "HTTP 400" in letter_line["message"]
    # When a replay of the dead letter is started (another invocation)
    replay = outbound_context()
    queued: list[Any] = []

    class Queued:  # Lambda's queue of asynchronous invocations: the replay's work is not run here
        def invoke_async(self, name: str, payload: Any) -> None:
            queued.append((name, payload))

    monkeypatch.setattr("segment_connector.outbound.replay.invoker", Queued)
    assert connector.module.lambda_handler({"action": "replay"}, replay)["started"] is True
    # Then its INFO line is there too, with that invocation's request id
    (info,) = function_log.find("started: 1 dead letter(s) to try")
    assert (info["level"], info["function_request_id"]) == ("INFO", replay.aws_request_id)
    # and no line went to the runtime's root handler, none twice, and no key was written
    messages = [line["message"] for line in function_log.lines()]
    assert len(messages) == len(set(messages)) == 3
    assert function_log.runtime.getvalue() == ""
    assert WRITE_KEY not in json.dumps(function_log.lines())


def test_a_record_that_will_be_retried_is_logged_with_its_sequence_number(connector, message, function_log):
    # Given OutboundFunction as deployed and Segment unavailable
    connector.module = function_log.cold_start("OutboundFunction")
    connector.use_client()
    connector.settings(synchronized_segments=["ALL"])
    connector.sink.responder = lambda path, body: (503, {}, {"error": "unavailable"})
    connector.post(message("track", userId="u1", event="Bought"))
    (record,) = connector.stream.read()
    # When the record fails
    context = outbound_context()
    connector.module.lambda_handler({"Records": [record]}, context)
    # Then the outbound module's line (its logger name contains the service name) is in the log
    (line,) = function_log.find("1 of 1 records failed and will be retried")
    assert (line["service"], line["level"]) == ("outbound", "WARNING")
    assert line["function_request_id"] == context.aws_request_id
    assert line["sequence_number"] == record["dynamodb"]["SequenceNumber"]
    assert function_log.runtime.getvalue() == ""


def test_a_missing_write_key_is_logged_once_per_cold_start(connector, message, aws, function_log):
    # Given no write key
    aws.ssm.delete_parameter(Name=f"{PREFIX}/write-key")
    config.clear_caches()
    connector.settings(synchronized_segments=["ALL"])
    connector.module = function_log.cold_start("OutboundFunction")
    connector.use_client()
    # When two batches are handled by the same warm container
    connector.post(message("track", userId="u1", event="A"))
    connector.drain()
    connector.post(message("track", userId="u2", event="B"))
    connector.drain()
    # Then it is logged once, naming the parameter and not its value
    (line,) = function_log.find("no write key")
    assert (line["service"], line["level"]) == ("outbound", "WARNING")
    assert f"{PREFIX}/write-key" in line["message"] and line["function_request_id"]
    # When a new container starts / Then it says so again
    connector.module = function_log.cold_start("OutboundFunction")
    connector.use_client()
    connector.post(message("track", userId="u1", event="C"))
    connector.drain()
    assert len(function_log.find("no write key")) == 2
    assert function_log.runtime.getvalue() == ""


# -- inbound --------------------------------------------------------------------------------------


def call_inbound(module: Any, path: str, body: Any) -> tuple[int, LambdaContext]:
    headers = [("content-type", "application/json"), ("authorization", basic())]
    context = LambdaContext("InboundFunction", 512, 10)
    response = module.lambda_handler(build_event("POST", path, headers, json.dumps(body).encode()), context)
    return response["statusCode"], context


def test_inbound_lines_are_json_with_service_level_and_request_id(aws, message, function_log, monkeypatch):
    # Given InboundFunction as deployed, and a package module that logs while a message is received
    module = function_log.cold_start("InboundFunction")
    read_settings = config.load_settings

    def load_settings():
        logging.getLogger("segment_connector.inbound.ingest").info("settings read", extra={"message_id": "m-1"})
        return read_settings()

    monkeypatch.setattr(config, "load_settings", load_settings)
    # When a message is delivered
    status, context = call_inbound(module, "/v1/track", message("track", userId="u1", event="A"))
    # Then the package's INFO line is in the function's log as JSON
    assert status == 200
    (line,) = function_log.find("settings read")
    assert (line["service"], line["level"]) == ("inbound", "INFO")
    assert (line["function_request_id"], line["message_id"]) == (context.aws_request_id, "m-1")
    # When the API key is missing (a 500 Segment retries)
    aws.ssm.delete_parameter(Name=f"{PREFIX}/api-key")
    config.clear_caches()
    status, context = call_inbound(module, "/v1/track", message("track", userId="u1", event="B"))
    # Then the handler's warning is there, with that request's id
    assert status == 500
    (line,) = function_log.find("request failed")
    assert (line["service"], line["level"], line["status"]) == ("inbound", "WARNING", 500)
    assert line["function_request_id"] == context.aws_request_id
    # and nothing went to the runtime's root handler
    assert function_log.runtime.getvalue() == ""


# -- several functions in one process (the local stack) --------------------------------------------

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_each_function_s_package_lines_carry_its_own_service_in_one_process(
    aws, connector, message, function_log, monkeypatch
):
    # Given OutboundFunction and then InboundFunction loaded in one process (as `make run` does:
    # the last function loaded used to own every package line)
    connector.module = function_log.cold_start("OutboundFunction")
    connector.use_client()
    inbound = function_log.cold_start("InboundFunction")
    connector.settings(synchronized_segments=["ALL"])
    connector.sink.responder = lambda path, body: (503, {}, {"error": "unavailable"})
    read_settings = config.load_settings

    def load_settings():
        logging.getLogger("segment_connector.inbound.ingest").info("inbound settings read")
        return read_settings()

    monkeypatch.setattr(config, "load_settings", load_settings)
    # When inbound receives a message and outbound handles its record
    assert call_inbound(inbound, "/v1/track", message("track", userId="u1", event="A"))[0] == 200
    monkeypatch.setattr(config, "load_settings", read_settings)
    (record,) = connector.stream.read()
    connector.module.lambda_handler({"Records": [record]}, outbound_context())
    # Then each package line names the function that wrote it
    (inbound_line,) = function_log.find("inbound settings read")
    (outbound_line,) = function_log.find("1 of 1 records failed and will be retried")
    assert inbound_line["service"] == "inbound"
    assert outbound_line["service"] == "outbound"
    assert function_log.runtime.getvalue() == ""


def test_log_lines_have_one_time_format_milliseconds_and_z(aws, message, function_log, monkeypatch):
    # Given InboundFunction as deployed
    module = function_log.cold_start("InboundFunction")
    aws.ssm.delete_parameter(Name=f"{PREFIX}/api-key")
    config.clear_caches()
    # When it logs (a 500: no API key)
    call_inbound(module, "/v1/track", message("track", userId="u1", event="A"))
    # Then every line's timestamp is UTC with milliseconds and Z, as every stored time
    lines = function_log.lines()
    assert lines and all(TIME.match(line["timestamp"]) for line in lines), [line["timestamp"] for line in lines]
