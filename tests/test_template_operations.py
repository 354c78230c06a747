"""template.yaml's operations side: alarm topic, alarms, dashboard, logs and the inbound cost guard."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from local_stack.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
FUNCTIONS = sorted(name for name, res in RESOURCES.items() if res["Type"] == "AWS::Serverless::Function")
ALARMS = sorted(name for name, res in RESOURCES.items() if res["Type"] == "AWS::CloudWatch::Alarm")
TOPIC = {"Ref": "AlarmTopic"}
NO_VALUE = object()
PSEUDO_PARAMETERS = {"AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix"}
SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def props(logical_id: str) -> dict[str, Any]:
    return RESOURCES[logical_id]["Properties"]


def evaluate(node: Any, parameters: dict[str, str]) -> Any:
    """The value of a property for given stack parameters: Ref to parameters, Fn::If on conditions."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and value == "AWS::NoValue":
            return NO_VALUE
        if key == "Ref" and value in PARAMETERS:
            return parameters.get(value, PARAMETERS[value].get("Default"))
        if key == "Condition":
            return evaluate(TEMPLATE["Conditions"][value], parameters)
        if key == "Fn::Equals":
            return evaluate(value[0], parameters) == evaluate(value[1], parameters)
        if key == "Fn::Not":
            return not evaluate(value[0], parameters)
        if key == "Fn::If":
            condition, when_true, when_false = value
            chosen = when_true if evaluate(TEMPLATE["Conditions"][condition], parameters) else when_false
            return evaluate(chosen, parameters)
    return node


def condition_holds(name: str, parameters: dict[str, str]) -> bool:
    return bool(evaluate(TEMPLATE["Conditions"][name], parameters))


def function_property(logical_id: str, name: str) -> Any:
    """A function's property as SAM sees it: Globals.Function merged in (maps merge key by key)."""
    global_value = TEMPLATE.get("Globals", {}).get("Function", {}).get(name)
    own = props(logical_id).get(name)
    if isinstance(global_value, dict) and isinstance(own, dict):
        return {**global_value, **own}
    return own if own is not None else global_value


def sub_variables(text: str) -> set[str]:
    return {name for name in SUB_VARIABLE.findall(text) if not name.startswith("!")}


def substituted(text: str) -> str:
    """A !Sub string with each ${...} replaced by a placeholder (as CloudFormation would, with values)."""
    return SUB_VARIABLE.sub(lambda match: f"placeholder-{match.group(1).replace('::', '-')}", text)


def resolvable(variable: str) -> bool:
    name, _, attribute = variable.partition(".")
    return variable in PSEUDO_PARAMETERS or (not attribute and name in PARAMETERS) or name in RESOURCES


def dashboard() -> dict[str, Any]:
    return json.loads(substituted(props("Dashboard")["DashboardBody"]["Fn::Sub"]))


def widget(title: str) -> dict[str, Any]:
    widgets = {w["properties"]["title"]: w for w in dashboard()["widgets"]}
    assert title in widgets, f"no dashboard widget {title!r}: {sorted(widgets)}"
    return widgets[title]


def widget_metrics(title: str) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric, dimensions, options) of a widget's metric lines (expressions left out)."""
    lines = []
    for line in widget(title)["properties"]["metrics"]:
        options = line[-1] if isinstance(line[-1], dict) else {}
        fields = line[:-1] if options else line
        if not fields:
            continue
        namespace, metric, *dims = fields
        lines.append((namespace, metric, dict(zip(dims[::2], dims[1::2], strict=False)), options))
    return lines


def widget_expressions(title: str) -> list[dict[str, Any]]:
    return [line[0] for line in widget(title)["properties"]["metrics"] if len(line) == 1 and "expression" in line[0]]


# -- Alarm topic ---------------------------------------------------------------------------------


def test_alarm_topic_is_created_and_its_arn_is_an_output() -> None:
    # Given the template / Then it has an SNS topic and outputs its ARN
    assert RESOURCES["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert TEMPLATE["Outputs"]["AlarmTopicArn"]["Value"] == TOPIC


def test_alarm_email_is_optional_and_subscribes_only_when_set() -> None:
    # Given the AlarmEmail parameter, empty by default
    assert PARAMETERS["AlarmEmail"]["Default"] == ""
    subscription = RESOURCES["AlarmEmailSubscription"]
    # Then the e-mail subscription exists only under its condition, which holds only with an address
    assert subscription["Type"] == "AWS::SNS::Subscription"
    assert subscription["Condition"] == "HasAlarmEmail"
    assert not condition_holds("HasAlarmEmail", {})
    assert condition_holds("HasAlarmEmail", {"AlarmEmail": "ops@example.com"})
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}


@pytest.mark.parametrize(
    ("address", "accepted"),
    [("", True), ("ops@example.com", True), ("ops", False), ("two words@example.com", False)],
)
def test_alarm_email_pattern(address: str, accepted: bool) -> None:
    # Given the parameter's AllowedPattern / When an address is checked / Then only e-mails (or nothing) pass
    assert bool(re.fullmatch(PARAMETERS["AlarmEmail"]["AllowedPattern"], address)) is accepted


# -- Alarms --------------------------------------------------------------------------------------


FUNCTION_DIMENSION = "FunctionName"
EXPECTED_ALARMS = [
    # logical id, namespace, metric, dimensions, statistic, threshold
    ("DeadLetteredAlarm", "SegmentConnector", "MessagesDeadLettered", {"service": "outbound"}, "Sum", 0),
    (
        "IteratorAgeAlarm",
        "AWS/Lambda",
        "IteratorAge",
        {FUNCTION_DIMENSION: {"Ref": "OutboundFunction"}},
        "Maximum",
        300000,
    ),
    (
        "OutboundFailureQueueAlarm",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": ["OutboundFailureQueue", "QueueName"]}},
        "Maximum",
        0,
    ),
    (
        "ResyncFailureQueueAlarm",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": ["ResyncFailureQueue", "QueueName"]}},
        "Maximum",
        0,
    ),
    ("Api5xxAlarm", "AWS/ApiGateway", "5xx", {"ApiId": {"Ref": "HttpApi"}, "Stage": "$default"}, "Sum", 0),
    ("ResyncRunsFailedAlarm", "SegmentConnector", "ResyncRunsFailed", {"service": "resync"}, "Sum", 0),
    *[
        (
            f"{function.removesuffix('Function')}{metric}Alarm",
            "AWS/Lambda",
            metric,
            {FUNCTION_DIMENSION: {"Ref": function}},
            "Sum",
            0,
        )
        for function in ("InboundFunction", "OutboundFunction", "ResyncFunction")
        for metric in ("Errors", "Throttles")
    ],
]


@pytest.mark.parametrize(
    ("logical_id", "namespace", "metric", "dimensions", "statistic", "threshold"),
    EXPECTED_ALARMS,
    ids=[row[0] for row in EXPECTED_ALARMS],
)
def test_alarm_watches_the_right_metric(
    logical_id: str, namespace: str, metric: str, dimensions: dict[str, Any], statistic: str, threshold: int
) -> None:
    # Given the alarm
    alarm = props(logical_id)
    # Then it watches that metric of that resource, over 5 minutes, and fires above the threshold
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == dimensions
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == (statistic, 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (threshold, "GreaterThanThreshold")


def test_the_dimensions_point_at_resources_of_the_template() -> None:
    # Given every alarm's dimensions / Then each Ref or GetAtt names a resource of the stack
    for logical_id in ALARMS:
        alarm = props(logical_id)
        dimension_lists = [alarm.get("Dimensions", [])] + [
            m["MetricStat"]["Metric"].get("Dimensions", []) for m in alarm.get("Metrics", []) if "MetricStat" in m
        ]
        for dimensions in dimension_lists:
            for dimension in dimensions:
                value = dimension["Value"]
                if isinstance(value, dict):
                    target = value.get("Ref") or value["Fn::GetAtt"][0]
                    assert target in RESOURCES, (logical_id, dimension)


def test_every_function_has_an_errors_and_a_throttles_alarm() -> None:
    # Given the alarms on AWS/Lambda
    watched = {
        (props(a)["MetricName"], props(a)["Dimensions"][0]["Value"]["Ref"])
        for a in ALARMS
        if props(a).get("Namespace") == "AWS/Lambda"
    }
    # Then each function of the template has both
    for function in FUNCTIONS:
        assert {("Errors", function), ("Throttles", function)} <= watched


def test_dynamodb_throttles_alarm_sums_read_and_write_throttles_of_table_and_index() -> None:
    # Given the DynamoDB throttles alarm (metric math)
    alarm = props("DynamoDbThrottlesAlarm")
    queries = {m["Id"]: m for m in alarm["Metrics"]}
    expressions = [m for m in alarm["Metrics"] if "Expression" in m]
    # Then its one returned series adds up four metrics, each filled with 0 where it has no data
    assert len(expressions) == 1 and expressions[0]["ReturnData"] is True
    stats = {i: m["MetricStat"] for i, m in queries.items() if "MetricStat" in m}
    assert all(queries[i]["ReturnData"] is False for i in stats)
    assert all(f"FILL({i}, 0)" in expressions[0]["Expression"] for i in stats)
    watched = set()
    for stat in stats.values():
        metric = stat["Metric"]
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        assert (metric["Namespace"], dimensions["TableName"], stat["Stat"], stat["Period"]) == (
            "AWS/DynamoDB",
            {"Ref": "Table"},
            "Sum",
            300,
        )
        watched.add((metric["MetricName"], dimensions.get("GlobalSecondaryIndexName")))
    indexes = [i["IndexName"] for i in props("Table")["GlobalSecondaryIndexes"]]
    assert watched == {(m, i) for m in ("ReadThrottleEvents", "WriteThrottleEvents") for i in [None, *indexes]}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_every_alarm_notifies_the_topic_and_missing_data_is_no_breach() -> None:
    # Given every alarm of the template / Then it notifies the topic, going off and back to OK
    assert len(ALARMS) >= len(EXPECTED_ALARMS) + 1
    for logical_id in ALARMS:
        alarm = props(logical_id)
        assert alarm["AlarmActions"] == [TOPIC], logical_id
        assert alarm["OKActions"] == [TOPIC], logical_id
        # nothing happened (no dead letter, no invocation, an idle queue) is not a problem
        assert alarm["TreatMissingData"] == "notBreaching", logical_id


# -- Dashboard -----------------------------------------------------------------------------------


def test_dashboard_is_named_after_the_stack_and_its_body_is_json() -> None:
    # Given the dashboard resource
    dashboard_props = props("Dashboard")
    assert dashboard_props["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-connector"}
    body = dashboard_props["DashboardBody"]["Fn::Sub"]
    # Then every ${...} names a parameter, a pseudo parameter or a resource (attribute)
    unresolved = sorted(v for v in sub_variables(body) if not resolvable(v))
    assert not unresolved
    # And with them substituted, the body is JSON with widgets that all have a place and a size
    widgets = dashboard()["widgets"]
    assert widgets
    for w in widgets:
        assert {"type", "x", "y", "width", "height", "properties"} <= set(w)
        assert w["x"] + w["width"] <= 24


def test_dashboard_messages_received_is_the_sum_of_inbound_outcomes() -> None:
    # Given the Messages widget
    lines = {
        options["id"]: (namespace, metric, dims) for namespace, metric, dims, options in widget_metrics("Messages")
    }
    (received,) = [e for e in widget_expressions("Messages") if e["label"] == "received"]
    # Then "received" adds up every inbound outcome, each a SegmentConnector metric of service inbound
    outcomes = {"Stored", "Duplicate", "Unchanged", "Ignored", "Rejected"}
    summed = set(re.findall(r"FILL\((\w+), 0\)", received["expression"]))
    assert {lines[i][1] for i in summed} == {f"Messages{o}" for o in outcomes}
    assert all(lines[i][0] == "SegmentConnector" and lines[i][2] == {"service": "inbound"} for i in summed)
    # And stored, rejected, duplicate, sent and dead-lettered are plotted too
    shown = {
        (metric, dims["service"])
        for namespace, metric, dims, options in widget_metrics("Messages")
        if options.get("visible", True)
    }
    assert {
        ("MessagesStored", "inbound"),
        ("MessagesRejected", "inbound"),
        ("MessagesDuplicate", "inbound"),
        ("MessagesSent", "outbound"),
        ("MessagesDeadLettered", "outbound"),
    } <= shown


API = {"ApiId": "placeholder-HttpApi", "Stage": "$default"}


def test_dashboard_api_latency_percentiles_and_errors() -> None:
    # Given the API widgets / Then latency p50 and p99 and the 4xx and 5xx counts of the stage
    latency = {
        (metric, options["stat"]) for _, metric, dims, options in widget_metrics("API latency (ms)") if dims == API
    }
    assert {("Latency", "p50"), ("Latency", "p99")} <= latency
    errors = {
        metric
        for namespace, metric, dims, _ in widget_metrics("API requests, 4xx and 5xx")
        if namespace == "AWS/ApiGateway" and dims == API
    }
    assert {"4xx", "5xx"} <= errors


@pytest.mark.parametrize(
    ("title", "metric", "stat"),
    [
        ("Function duration p99 (ms)", "Duration", "p99"),
        ("Function errors", "Errors", "Sum"),
        ("Function throttles", "Throttles", "Sum"),
        ("Function concurrency", "ConcurrentExecutions", "Maximum"),
    ],
)
def test_dashboard_plots_each_function(title: str, metric: str, stat: str) -> None:
    # Given a function widget / Then it has that metric of every function of the template
    plotted = {
        dims["FunctionName"]
        for namespace, name, dims, _ in widget_metrics(title)
        if (namespace, name) == ("AWS/Lambda", metric)
    }
    assert plotted == {f"placeholder-{f}" for f in FUNCTIONS}
    assert widget(title)["properties"]["stat"] == stat


def test_dashboard_iterator_age_dynamodb_queues_and_resync() -> None:
    # Given the dashboard / Then the stream's iterator age, with the alarm's threshold drawn
    age = widget("Stream iterator age (ms)")
    assert [(m, d) for _, m, d, _ in widget_metrics("Stream iterator age (ms)")] == [
        ("IteratorAge", {"FunctionName": "placeholder-OutboundFunction"})
    ]
    assert age["properties"]["annotations"]["horizontal"][0]["value"] == props("IteratorAgeAlarm")["Threshold"]
    # And the table's consumed capacity and throttles
    table = "placeholder-Table"
    capacity = {m for _, m, d, _ in widget_metrics("DynamoDB consumed capacity") if d == {"TableName": table}}
    assert capacity == {"ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits"}
    throttles = {m for _, m, d, _ in widget_metrics("DynamoDB throttles") if d == {"TableName": table}}
    assert throttles == {"ReadThrottleEvents", "WriteThrottleEvents"}
    # And both failure queues
    queues = {d["QueueName"] for _, m, d, _ in widget_metrics("Failure queues (messages)")}
    assert queues == {"placeholder-OutboundFailureQueue.QueueName", "placeholder-ResyncFailureQueue.QueueName"}
    # And the resync's progress
    resync = {
        m for n, m, d, _ in widget_metrics("Resync progress") if n == "SegmentConnector" and d == {"service": "resync"}
    }
    assert {"ResyncEvaluated", "ResyncChanged", "ResyncSent", "ResyncFailed"} <= resync


def test_dashboard_alarm_widget_lists_every_alarm() -> None:
    # Given the Alarms widget / Then it shows the state of each alarm of the template
    assert set(widget("Alarms")["properties"]["alarms"]) == {f"placeholder-{a}.Arn" for a in ALARMS}


def test_dashboard_url_output() -> None:
    url = TEMPLATE["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "${Dashboard}" in url and all(resolvable(v) for v in sub_variables(url))


# -- Logs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_logs_are_json_in_a_log_group_kept_30_days(function: str) -> None:
    # Given the function's logging configuration (Globals merged in)
    logging_config = function_property(function, "LoggingConfig")
    # Then Lambda writes JSON lines
    assert logging_config["LogFormat"] == "JSON"
    # And they land in a log group of the stack with 30-day retention: the one LogGroup names, or else
    # the one named like the function's default group /aws/lambda/<function name>
    if "LogGroup" in logging_config:
        group = RESOURCES[logging_config["LogGroup"]["Ref"]]
    else:
        (group,) = [
            r
            for r in RESOURCES.values()
            if r["Type"] == "AWS::Logs::LogGroup"
            and r["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
        ]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == 30


def test_resync_log_group_name_does_not_depend_on_the_function() -> None:
    # Given the resync function pointing at its log group / Then that group's name is not built from
    # the function (that would be a circular dependency)
    assert function_property("ResyncFunction", "LoggingConfig")["LogGroup"] == {"Ref": "ResyncLogGroup"}
    assert "ResyncFunction" not in json.dumps(props("ResyncLogGroup"))


@pytest.mark.parametrize(
    ("log_level", "lambda_level"), [("DEBUG", "DEBUG"), ("INFO", "INFO"), ("WARNING", "INFO"), ("ERROR", "INFO")]
)
def test_lambda_log_level_never_drops_the_metric_lines(log_level: str, lambda_level: str) -> None:
    # Given the LogLevel parameter (Powertools follows Lambda's application log level when set)
    level = TEMPLATE["Globals"]["Function"]["LoggingConfig"]["ApplicationLogLevel"]
    assert level == {"Fn::FindInMap": ["ApplicationLogLevels", {"Ref": "LogLevel"}, "Level"]}
    assert log_level in PARAMETERS["LogLevel"]["AllowedValues"]
    # Then DEBUG lets debug lines through, and no value filters above INFO, the level Lambda gives
    # the EMF metric lines (they carry no "level" key)
    assert TEMPLATE["Mappings"]["ApplicationLogLevels"][log_level]["Level"] == lambda_level


ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "status": "$context.status",
    "integrationLatency": "$context.integrationLatency",
    "responseLatency": "$context.responseLatency",
    "routeKey": "$context.routeKey",
    "sourceIp": "$context.identity.sourceIp",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "protocol": "$context.protocol",
    "userAgent": "$context.identity.userAgent",
}


def test_http_api_access_logs_are_json_without_credentials_or_bodies() -> None:
    # Given the HTTP API's access log settings
    settings = props("HttpApi")["AccessLogSettings"]
    # When a request's line is written (each $context variable replaced by a value)
    line_format = settings["Format"]
    assert "\n" not in line_format  # API Gateway takes a single-line format
    fields = json.loads(line_format)
    # Then it is a JSON object with the request id, status, latencies, route, caller and protocol
    assert {k: fields.get(k) for k in ACCESS_LOG_FIELDS} == ACCESS_LOG_FIELDS
    assert all(isinstance(v, str) for v in fields.values())  # quoted: a "-" for a missing value stays JSON
    # And nothing of the Authorization header, any other header or the body
    for key, value in fields.items():
        for forbidden in ("authorization", "header", "body", "requestoverride", "authorizer"):
            assert forbidden not in key.lower() and forbidden not in value.lower(), (key, value)
    # And the lines go to their own log group, kept 30 days
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    assert props("HttpApiAccessLogGroup")["RetentionInDays"] == 30


def test_every_log_group_is_kept_30_days() -> None:
    groups = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::Logs::LogGroup"]
    assert {"InboundLogGroup", "OutboundLogGroup", "ResyncLogGroup", "HttpApiAccessLogGroup"} <= set(groups)
    assert all(props(g)["RetentionInDays"] == 30 for g in groups)


# -- Cost guard ----------------------------------------------------------------------------------


def test_inbound_reserved_concurrency_is_unset_by_default() -> None:
    # Given the default parameters / Then InboundFunction has no reserved concurrency at all
    assert PARAMETERS["InboundReservedConcurrency"]["Default"] == ""
    assert evaluate(props("InboundFunction")["ReservedConcurrentExecutions"], {}) is NO_VALUE


def test_inbound_reserved_concurrency_is_set_through_the_parameter() -> None:
    # When the parameter is given / Then it becomes InboundFunction's reserved concurrency
    value = evaluate(props("InboundFunction")["ReservedConcurrentExecutions"], {"InboundReservedConcurrency": "50"})
    assert value == "50"
    # And only that function is limited
    assert all("ReservedConcurrentExecutions" not in props(f) for f in FUNCTIONS if f != "InboundFunction")
    assert "ReservedConcurrentExecutions" not in TEMPLATE["Globals"]["Function"]


@pytest.mark.parametrize(
    ("value", "accepted"), [("", True), ("1", True), ("250", True), ("0", False), ("-1", False), ("ten", False)]
)
def test_inbound_reserved_concurrency_pattern(value: str, accepted: bool) -> None:
    # Given the AllowedPattern / Then empty or a positive whole number; 0 would switch the API off
    assert bool(re.fullmatch(PARAMETERS["InboundReservedConcurrency"]["AllowedPattern"], value)) is accepted


# -- the settings parameter ------------------------------------------------------------------------

# What the stack created <prefix>/settings with. Operators change the document afterwards (CLI,
# console); CloudFormation writes the template's Value again whenever it differs from the last
# deployed template, so a new default here would overwrite every operator's settings on their
# next `sam deploy`. Change defaults in ConnectorSettings instead (missing keys take them).
FIRST_SETTINGS = (
    '{"handle_pages": true, "handle_screens": true, "handle_accounts": false, '
    '"ignore_segment_userId": false, "synchronized_segments": [], "send_events": ["ALL"]}'
)


def test_the_settings_parameter_value_never_changes() -> None:
    assert props("SettingsParameter")["Value"] == FIRST_SETTINGS


# -- the resync's schedule -------------------------------------------------------------------------


def test_resync_has_a_schedule_asking_for_status_every_5_to_15_minutes() -> None:
    # Given ResyncFunction's events / Then one schedule invokes it with {"action": "status"}: the
    # request that resumes a segment stuck for STALE_SECONDS (resync.handle) and writes nothing else
    events = props("ResyncFunction")["Events"]
    schedules = [event["Properties"] for event in events.values() if event["Type"] in ("Schedule", "ScheduleV2")]
    assert len(schedules) == 1
    (schedule,) = schedules
    assert json.loads(schedule["Input"]) == {"action": "status"}
    expression = schedule.get("Schedule") or schedule["ScheduleExpression"]
    match = re.fullmatch(r"rate\((\d+) minutes\)", expression)
    assert match is not None and 5 <= int(match.group(1)) <= 15
    assert schedule.get("Enabled", True) is True and schedule.get("State", "ENABLED") == "ENABLED"
