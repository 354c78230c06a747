"""`make run`: the whole connector on 127.0.0.1, without Docker.

moto (DynamoDB + stream + SSM) -> the real handlers in-process -> a local Segment sink that
prints what would be sent. Stops cleanly on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from local_stack import aws
from local_stack.api import ApiServer, route_by_path
from local_stack.config import (
    STATE_ENV,
    STATE_PATH,
    ConfigError,
    LocalConfig,
    load_config,
    remove_state,
    settings_problems,
    write_state,
)
from local_stack.iam.deployment import authority_for
from local_stack.iam.enforce import ActingClient, enforce
from local_stack.iam.intrinsics import Deployment
from local_stack.lambda_api import AsyncConfig, LambdaApi
from local_stack.lambda_runtime import (
    ACCOUNT_ID,
    REGION,
    STACK_NAME,
    TABLE_NAME,
    LocalFunction,
    deployed_function_name,
    function_environment,
    function_names,
    load_function,
)
from local_stack.schedules import DEFAULT_RECOMPUTE_INTERVAL, RECOMPUTE_ENV, Schedule, interval_from, scheduled_inputs
from local_stack.settings_watcher import SettingsWatcher
from local_stack.stream import MappingSettings, StreamWorker
from local_stack.template import ROOT, load_template

HOST = "127.0.0.1"
FUNCTIONS = ("InboundFunction", "OutboundFunction", "ResyncFunction", "ConsoleFunction")  # loaded in this order
TEMPLATE_ENV = "TEMPLATE_FILE"  # another template (e.g. a shorter Timeout); default template.yaml at the root


class FunctionNotLoaded(Exception):
    """A function's handler could not be imported: the stack does not start."""


def say(line: str = "") -> None:
    print(line, flush=True)


def main(handler_files: Mapping[str, Path] | None = None) -> int:
    """Run until SIGINT/SIGTERM; `handler_files` ({logical id: file}) is for tests of this module."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    template_file = Path(os.environ.get(TEMPLATE_ENV) or ROOT / "template.yaml")
    try:
        template = load_template(template_file)
    except (OSError, ValueError) as error:
        print(f"local stack: cannot read the template {template_file} ({TEMPLATE_ENV}): {error}", file=sys.stderr)
        return 2
    try:
        config = load_config(template)
    except ConfigError as error:
        print(f"local stack: {error}", file=sys.stderr)
        return 2
    problems = settings_problems(config.settings)
    if problems:
        say(f"WARNING: the settings from {config.settings_source} are invalid; calls will be answered")
        say("500 settings_invalid (and outbound records retried) until they are fixed:")
        for problem in problems:
            say(f"  {problem}")

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    cleanups: list[Callable[[], Any]] = []
    try:
        return _run(template, template_file, config, stop, cleanups, handler_files or {})
    except FunctionNotLoaded as error:
        print(f"local stack: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C while stopping interrupts the clean-up; a second SIGTERM does not
        # (make forwards the SIGTERM its process group got, so the stack gets it twice).
        signal.signal(signal.SIGINT, previous[signal.SIGINT])
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as error:  # noqa: BLE001 - stop the rest anyway
                print(f"local stack: error while stopping: {error!r}", file=sys.stderr)
        signal.signal(signal.SIGTERM, previous[signal.SIGTERM])


def _run(
    template: dict[str, Any],
    template_path: Path,
    config: LocalConfig,
    stop: threading.Event,
    cleanups: list[Callable[[], Any]],
    handler_files: Mapping[str, Path],
) -> int:
    # Bind the API port first: a busy port is the most likely failure, so fail before the rest.
    try:
        api = ApiServer(HOST, config.port, _unavailable)
    except OSError as error:
        print(f"local stack: cannot listen on {HOST}:{config.port}: {error.strerror} (set PORT)", file=sys.stderr)
        return 1
    cleanups.append(api.server_close)

    moto = aws.MotoServer(HOST)
    endpoint = moto.start()
    cleanups.append(moto.stop)
    resources = aws.create_table(template, endpoint, TABLE_NAME)
    # Each function's calls are checked against its role as `sam deploy` would create it.
    enforce(authority_for(local_deployment(template, config.prefix), template_path))
    aws.put_parameters(
        endpoint,
        aws.connector_parameters(
            config.prefix,
            config.api_key,
            config.write_key,
            config.settings,
            config.shared_secret,
            config.admin_key,
            config.profile_token,
        ),
    )

    segment_url = config.segment_api_url
    if segment_url is None:
        from local_stack.segment_sink import SegmentSink

        sink = SegmentSink(host=HOST, out=sys.stdout).start()
        cleanups.append(sink.stop)
        segment_url = sink.url

    # The on-failure destinations (SQS queues) of the stream mapping and of asynchronous invokes.
    queues = aws.create_queues(template, endpoint)

    def destination(queue: str | None, logical_id: str) -> Callable[[dict[str, Any]], None] | None:
        return aws.sqs_destination(endpoint, queues[queue], logical_id) if queue in queues else None

    # Lambda's Invoke API, for the operator CLI (--local) and functions that invoke functions.
    lambdas = LambdaApi(HOST, out=sys.stdout)
    cleanups.append(lambdas.stop)

    # The functions' environment goes into os.environ before their modules are imported.
    functions: dict[str, LocalFunction] = {}
    for logical_id in FUNCTIONS:
        if logical_id not in template["Resources"]:
            continue
        environment = function_environment(
            template, logical_id, resources.table_name, endpoint, segment_url, lambdas.url
        )
        if "SPACE_ID" in environment:  # the SpaceId parameter: SPACE_ID here (default `local`)
            environment["SPACE_ID"] = config.space_id
        try:
            functions[logical_id] = load_function(template, logical_id, environment, handler_files.get(logical_id))
        except Exception as error:
            raise FunctionNotLoaded(
                f"{logical_id} could not be loaded (Runtime.ImportModuleError: {type(error).__name__}: {error})"
            ) from error
        senders = {queue: send for queue in queues if (send := destination(queue, logical_id)) is not None}
        lambdas.register(
            function_names(template, logical_id),
            functions[logical_id].call,
            async_config=AsyncConfig.from_template(template, logical_id, senders),
        )
    inbound, outbound = functions["InboundFunction"], functions["OutboundFunction"]

    mapping = MappingSettings.from_template(template, "OutboundFunction")
    worker = StreamWorker(
        # The event source mapping reads the stream with the function's role.
        ActingClient(aws.client("dynamodbstreams", endpoint), "OutboundFunction"),
        resources.stream_arn,
        mapping,
        outbound.invoke,
        forget_iterators=aws.forget_stream_iterators,
        on_failure=destination(mapping.on_failure, "OutboundFunction"),
        function_name=outbound.name,
    )
    worker.start()
    cleanups.append(lambda: worker.stop(timeout=10))

    # API Gateway's routes: the console's paths go to ConsoleFunction, everything else to inbound.
    console = functions.get("ConsoleFunction")
    api.invoke = route_by_path({"/console": console.invoke}, inbound.invoke) if console else inbound.invoke
    api.start()
    cleanups.append(api.shutdown)  # runs before server_close (cleanups run in reverse)
    lambdas.start()

    settings_name = f"{config.prefix}/settings"
    watcher = SettingsWatcher(
        aws.client("ssm", endpoint),
        settings_name,
        lambda event: _settings_changed(lambdas, settings_name, event),
        log=say,
    )
    watcher.start()
    cleanups.append(lambda: watcher.stop(timeout=5))

    # EventBridge's schedule of ResyncFunction (StaleCheck): a stuck resync resumes without anyone looking.
    schedule = Schedule(
        scheduled_inputs(template, "ResyncFunction"),
        lambda payload: lambdas.invoke_async("ResyncFunction", payload),
        interval_from(os.environ),
        log=say,
    )
    schedule.start()
    cleanups.append(lambda: schedule.stop(timeout=5))

    # EventBridge's schedule of OutboundFunction (Recompute): users whose event windows ended.
    recompute = Schedule(
        scheduled_inputs(template, "OutboundFunction"),
        lambda payload: lambdas.invoke_async("OutboundFunction", payload),
        interval_from(os.environ, RECOMPUTE_ENV, DEFAULT_RECOMPUTE_INTERVAL),
        log=say,
    )
    recompute.start()
    cleanups.append(lambda: recompute.stop(timeout=5))

    pid = os.getpid()
    write_state(
        {
            "pid": pid,
            "api_url": api.url,
            "aws_endpoint_url": endpoint,
            "lambda_endpoint_url": lambdas.url,
            "region": "us-east-1",
            "table_name": resources.table_name,
            "stream_arn": resources.stream_arn,
            "parameter_prefix": config.prefix,
            "segment_api_url": segment_url,
        }
    )
    cleanups.append(lambda: remove_state(pid))

    _banner(config, api.url, endpoint, resources.table_name, segment_url, lambdas.url)
    say(f"local stack ready on {api.url} (Ctrl-C to stop)")

    while not stop.wait(0.5):
        pass
    say("local stack: stopping")
    return 0


def local_deployment(template: Mapping[str, Any], prefix: str) -> Deployment:
    """The names this stack's resources have here (queues: <stack>-<logical id>, as aws.py makes them)."""
    functions = [
        logical_id
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]
    names = {"Table": TABLE_NAME, **{fn: deployed_function_name(template, fn) for fn in functions}}
    return Deployment(ACCOUNT_ID, REGION, STACK_NAME, {"ParameterPrefix": prefix}, names)


def _unavailable(event: dict[str, Any]) -> Any:
    return {"statusCode": 503, "body": '{"message": "Service Unavailable"}'}


def _settings_changed(lambdas: LambdaApi, name: str, event: dict[str, Any]) -> None:
    """EventBridge's rule: a settings change invokes ResyncFunction (Event)."""
    # The functions share this process and so one 30 s settings cache: a resync must read the new
    # document, as a fresh container would on AWS.
    from segment_connector.runtime import config as connector_config

    connector_config.clear_caches()
    lambdas.invoke_async("ResyncFunction", event)
    say(f"settings changed ({name}): ResyncFunction invoked to resync Segment (as EventBridge would)")


def _banner(
    config: LocalConfig,
    url: str,
    endpoint: str,
    table: str,
    segment_url: str,
    lambda_url: str,
) -> None:
    shared = "set (SHARED_SECRET)" if config.shared_secret else "not set"
    if config.segment_api_url:
        target = f"{segment_url} (SEGMENT_API_URL)"
    else:
        target = f"{segment_url} (local sink: outbound calls are printed below as `segment <- ...`)"
    write_key = "local-write-key (default)" if config.write_key_is_default else "(from WRITE_KEY)"
    admin_key = f"{config.admin_key} (default)" if config.admin_key_is_default else "(from ADMIN_KEY, not shown)"
    # A key of your own (API_KEY) is never printed: the commands below read it from the variable.
    api_key = f"{config.api_key} (default)" if config.api_key_is_default else "(from API_KEY, not shown)"
    key = _shell_quote(f"{config.api_key}:") if config.api_key_is_default else '"$API_KEY:"'
    default_token = config.profile_token_is_default
    profile_token = f"{config.profile_token} (default)" if default_token else "(from PROFILE_TOKEN, not shown)"
    token = _shell_quote(f"{config.profile_token}:") if default_token else '"$PROFILE_TOKEN:"'
    say("segment-connector local stack")
    say(f"  URL:            {url}")
    say(f"  API key:        {api_key}")
    say(f"  shared secret:  {shared}")
    say(f"  settings:       {config.settings_source}")
    for note in settings_notes(config):
        say(f"    note: {note}")
    say(f"  Segment target: {target}")
    say(f"  write key:      {write_key}")
    say(f"  Profile API:    {url}/v1/spaces/{config.space_id}/ (Segment-compatible; token: {profile_token})")
    say(f"  console:        {url}/console (sign in with the admin key: {admin_key})")
    say(f"  AWS emulator:   {endpoint} (table {table}, parameters under {config.prefix}/)")
    say(f"  Lambda API:     {lambda_url} ({', '.join(FUNCTIONS)})")
    state = STATE_PATH.relative_to(ROOT) if STATE_PATH.is_relative_to(ROOT) else STATE_PATH
    say(f"  state file:     {state}" + (f" ({STATE_ENV})" if os.environ.get(STATE_ENV) else ""))
    say("")
    say("Try it (copy and paste):")
    body = _shell_quote('{"type":"identify","userId":"u1","traits":{"email":"a@example.com"}}')
    say(f"  curl -s -u {key} -H 'Content-Type: application/json' -d {body} {url}/segment")
    say(f"  curl -s -u {key} {url}/v1/users/user_id:u1")
    say(f"  curl -s -u {key} {url}/v1/users/user_id:u1/events")
    say(f"  curl -s -u {token} {url}/v1/spaces/{config.space_id}/collections/users/profiles/user_id:u1/traits")
    say(f"  curl -s {url}/health")
    say("  .venv/bin/segment-connector status --local     # the operator CLI: settings, keys, users, replay, resync")
    say("")


def settings_notes(config: LocalConfig) -> list[str]:
    """The settings' status warnings, as the console's Dashboard shows them (the keys exist here):
    e.g. that events from Segment are not sent back (forward_events off), or that the User
    Filter sends nobody."""
    import json

    from segment_connector.ops.status import status_warnings

    try:
        document = json.loads(config.settings)
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    warnings = status_warnings(document, has_write_key=True, has_api_key=True, prefix=config.prefix)
    return [f"{warning.code}: {warning.message}" for warning in warnings]


def _shell_quote(text: str) -> str:
    return shlex.quote(text)


if __name__ == "__main__":
    sys.exit(main())
