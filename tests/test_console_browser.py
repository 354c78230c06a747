"""The console (issue 8) in a real browser: headless Chromium driven by Playwright, against the local
stack started as a subprocess (`python -m local_stack`, one for the module).

Setup data goes in the way Segment sends it (POST /segment with the API key) or through the console
API with the admin key; what is checked is what the page shows and what the stack then holds.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from harness import WAIT_SECONDS, Stack, chromium_missing, free_port
from local_stack.segment_sink import Response as SinkResponse
from local_stack.segment_sink import SegmentSink
from local_stack.template import ROOT

if chromium_missing():
    pytest.skip(str(chromium_missing()), allow_module_level=True)

pytestmark = pytest.mark.e2e

ADMIN_KEY = "local-admin-key"
API_KEY = "local-api-key"  # the local stack's default
CONSOLE_APP = ROOT / "functions" / "console" / "app.py"
DEAD_PREFIX = "dead-"
XSS_VALUE = "<img src=x onerror=alert(1)>"
XSS_TRAIT = "<img src=x onerror=alert(2)>"
XSS_EVENT = "<svg onload=alert(3)>Clicked"
EXPECT_MS = WAIT_SECONDS * 1000
expect.set_options(timeout=EXPECT_MS)  # a bound on waiting, never a timing assertion
COUNT = re.compile(r"^\d[\d,]*$")


def tag() -> str:
    return uuid.uuid4().hex[:8]


# -- the stack and the API, outside the browser ------------------------------------------------------


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's state file (its AWS endpoint): this module's own, not the developer's `make run`."""
    return tmp_path_factory.mktemp("console-stack") / "state.json"


class Segment:
    """Segment for this module's stack: answers 400 (a permanent rejection, so a dead letter) to a
    request carrying a message of a user whose id starts with `dead-`, while `rejecting`."""

    def __init__(self) -> None:
        self.rejecting = True
        self.sink = SegmentSink(responder=self.respond)

    def respond(self, path: str, body: Any) -> SinkResponse | None:
        messages = body.get("batch", [body]) if isinstance(body, dict) else []
        if self.rejecting and any(
            isinstance(message, dict) and str(message.get("userId", "")).startswith(DEAD_PREFIX) for message in messages
        ):
            return (400, {}, {"error": "rejected by the test's Segment"})
        return None


@pytest.fixture(scope="module")
def segment() -> Iterator[Segment]:
    stand_in = Segment()
    with stand_in.sink:
        yield stand_in


@pytest.fixture(scope="module")
def stack(state_file: Path, segment: Segment) -> Iterator[Stack]:
    if not CONSOLE_APP.exists():
        pytest.skip("functions/console/app.py not written yet")
    running = Stack(
        [sys.executable, "-m", "local_stack"],
        free_port(),
        {"ADMIN_KEY": ADMIN_KEY, "SEGMENT_CONNECTOR_STATE": str(state_file), "SEGMENT_API_URL": segment.sink.url},
    )
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill()


def admin(stack: Stack, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        f"{stack.url}/console/api{path}",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=WAIT_SECONDS,
    )


def settings_of(stack: Stack) -> dict[str, Any]:
    answer = admin(stack, "GET", "/settings")
    assert answer.status_code == 200, answer.text
    return answer.json()["settings"]


def put_settings(stack: Stack, **changes: Any) -> dict[str, Any]:
    document = {**settings_of(stack), **changes}
    answer = admin(stack, "PUT", "/settings", document)
    assert answer.status_code == 200, answer.text
    return answer.json()


def define_segment(stack: Stack, name: str, rule: dict[str, Any]) -> None:
    current = settings_of(stack)
    put_settings(stack, segments=[*current["segments"], {"name": name, "rule": rule}])


def stored_secret(state_file: Path, name: str) -> str:
    """A SecureString as the stack's SSM holds it (boto3 against its AWS endpoint)."""
    state = json.loads(state_file.read_text())
    ssm = boto3.client(
        "ssm",
        endpoint_url=state["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    value: str = ssm.get_parameter(Name=f"{state['parameter_prefix']}/{name}", WithDecryption=True)["Parameter"][
        "Value"
    ]
    return value


def deliver(stack: Stack, message: dict[str, Any]) -> None:
    body = {"messageId": f"m-{uuid.uuid4()}", "timestamp": "2026-01-01T00:00:00.000Z", **message}
    answer = requests.post(f"{stack.url}/segment", json=body, auth=(API_KEY, ""), timeout=WAIT_SECONDS)
    assert answer.status_code == 200, answer.text


def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll until `check` returns something truthy (a bound on waiting, never a timing assertion)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# -- the page -------------------------------------------------------------------------------------


@dataclass
class Console:
    """One browser context (its own sessionStorage) on the stack's /console, with what it logged."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    dialogs: list[str] = field(default_factory=list)

    def open(self) -> Page:
        self.page.goto(f"{self.url}/console")
        return self.page

    def by(self, testid: str) -> Any:
        return self.page.get_by_test_id(testid)

    def sign_in(self, key: str = ADMIN_KEY) -> None:
        self.by("signin-key").fill(key)
        self.by("signin-submit").click()

    def signed_in(self) -> Page:
        self.open()
        self.sign_in()
        expect(self.by("webhook-url")).to_contain_text("/segment", timeout=EXPECT_MS)
        return self.page

    def tab(self, name: str) -> None:
        self.by(f"tab-{name}").click()
        expect(self.by(f"tab-{name}")).to_have_attribute("aria-selected", "true")

    def option(self, field_name: str, value: str) -> Any:
        """The option for `value` in the multi-select `setting-<field_name>`."""
        return self.by(f"setting-{field_name}").locator(f'option[value="{css(value)}"]')

    def settings_loaded(self) -> None:
        """The settings (re)read since the tab was shown: the form is no longer busy."""
        expect(self.by("settings-form")).to_have_attribute("aria-busy", "false", timeout=EXPECT_MS)
        expect(self.option("synchronized_segments", "ALL")).to_have_count(1)

    def save_settings(self) -> Any:
        self.by("settings-save").click()
        result = self.by("settings-result")
        expect(result).not_to_have_text("Saving…", timeout=EXPECT_MS)
        return result


def css(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@pytest.fixture
def console(browser: Browser, stack: Stack) -> Iterator[Console]:
    with console_in(browser, stack) as opened:
        yield opened


@contextmanager
def console_in(browser: Browser, stack: Stack, **context_options: Any) -> Iterator[Console]:
    """A Console in a browser context of its own (`context_options`: Playwright's, e.g. timezone_id)."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
    page = context.new_page()
    page.set_default_timeout(EXPECT_MS)
    opened = Console(page, stack.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.errors.append(message.text)

    def on_dialog(dialog: Dialog) -> None:
        opened.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda error: opened.errors.append(f"pageerror: {error}"))
    page.on("dialog", on_dialog)
    try:
        yield opened
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Kept for looking at the page after a run (/tmp/console-<name>.png)."""
    page.screenshot(path=str(Path("/tmp") / f"console-{name}.png"), full_page=True)


# -- 1. sign-in -------------------------------------------------------------------------------------


def test_sign_in_then_the_dashboard_shows_what_to_paste_into_segment(console: Console, stack: Stack) -> None:
    # Given the console opened without a key
    page = console.open()
    expect(console.by("signin-key")).to_be_visible()
    expect(console.by("tab-dashboard")).to_be_hidden()

    # When a wrong key is tried: an error, still on the sign-in form, nothing kept
    console.sign_in("not-the-admin-key")
    expect(console.by("signin-message")).to_contain_text("wrong")
    expect(console.by("signin-key")).to_be_visible()
    expect(console.by("tab-dashboard")).to_be_hidden()
    assert page.evaluate("window.sessionStorage.length") == 0

    # When the right key is given: the dashboard, the key in sessionStorage only (no cookie)
    console.sign_in()
    expect(console.by("tab-dashboard")).to_have_attribute("aria-selected", "true")
    expect(console.by("signin-key")).to_be_hidden()
    # Then the webhook URL and the exact Authorization header to paste into Segment
    expect(console.by("webhook-url")).to_have_text(f"{stack.url}/segment")
    expected_header = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    expect(console.by("auth-header")).to_have_text(expected_header)
    assert console.by("auth-header").text_content() == expected_header
    assert page.evaluate("Object.values(window.sessionStorage)") == [ADMIN_KEY]
    assert page.context.cookies() == []
    for name in ("users", "accounts", "events", "dead_letters"):
        expect(console.by(f"count-{name}")).to_have_text(COUNT)
    screenshot(page, "dashboard")

    # When the copy buttons are pressed: the exact values are on the clipboard
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    for testid, value in (("webhook-url", f"{stack.url}/segment"), ("auth-header", expected_header)):
        console.by(f"copy-{testid}").click()
        expect(console.by("copy-status")).to_have_text("Copied to the clipboard.")
        assert page.evaluate("navigator.clipboard.readText()") == value
        page.evaluate("document.getElementById('copy-status').textContent = ''")

    # When signing out: back to the sign-in form, the key gone
    console.by("signout").click()
    expect(console.by("signin-key")).to_be_visible()
    assert page.evaluate("window.sessionStorage.length") == 0
    page.reload()
    expect(console.by("signin-key")).to_be_visible()
    expect(console.by("webhook-url")).to_be_hidden()


def test_without_an_admin_key_sign_in_says_how_to_set_one(console: Console, stack: Stack) -> None:
    # Given a stack with no admin key: the API answers 503 not_configured (as ConsoleFunction does
    # while <prefix>/admin-key does not exist; the local stack always has one, so the answer is stubbed)
    answer = {
        "error": "the console has no admin key",
        "code": "not_configured",
        "message": "the console has no admin key: create the SecureString /segment-connector/admin-key "
        "(segment-connector keys set admin-key; ADMIN_KEY for make run)",
    }
    console.page.route(
        "**/console/api/**", lambda route: route.fulfill(status=503, json=answer, headers={"X-Stub": "1"})
    )
    page = console.open()
    # When someone signs in
    console.sign_in("any-key")
    # Then the page says how to set one, stays on the sign-in form and keeps nothing
    message = console.by("signin-message")
    expect(message).to_contain_text("segment-connector keys set admin-key")
    expect(message).to_contain_text("ADMIN_KEY")
    expect(console.by("signin-key")).to_be_visible()
    expect(console.by("tab-dashboard")).to_be_hidden()
    assert page.evaluate("window.sessionStorage.length") == 0


def test_dead_letters_are_listed_with_their_reasons_and_replayed(
    console: Console, stack: Stack, segment: Segment
) -> None:
    # Given every user sent, and Segment rejecting this one: a dead letter
    put_settings(stack, synchronized_segments=["ALL"])
    user = f"{DEAD_PREFIX}{tag()}"
    segment.rejecting = True
    deliver(stack, {"type": "identify", "userId": user, "traits": {"plan": "pro"}})

    def letter() -> dict[str, Any] | None:
        letters = admin(stack, "GET", "/dashboard").json()["dead_letters"]
        return next((item for item in letters if item["user_id"] == user), None)

    stored = eventually(letter, "the dead letter")
    # When the dashboard is shown: the letter with its reason, and the count
    page = console.signed_in()
    row = console.by("dead-letters").locator("tr", has_text=user)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(stored["reason"])
    expect(row).to_contain_text(stored["message_id"])
    expect(console.by("count-dead_letters")).not_to_have_text("0")
    screenshot(page, "dead-letters")

    # When Segment accepts it again and the replay button is pressed: the numbers, the letter gone
    segment.rejecting = False
    console.by("replay").click()
    # (the replay is a background job: the page shows its progress until it is done)
    expect(console.by("replay-result")).to_contain_text(re.compile(r"Replay done: .*replayed [1-9]"))
    expect(console.by("replay-result")).to_contain_text("failed 0")
    expect(row).to_have_count(0)
    assert letter() is None
    assert any(
        message.get("userId") == user and 200 <= request.status < 300
        for request in segment.sink.requests
        for message in request.messages
    )


# -- the dashboard while a job runs (issue 14) --------------------------------------------------------


def stack_dynamodb(state_file: Path) -> tuple[Any, str]:
    """The stack's DynamoDB (boto3 against its AWS endpoint) and its table's name."""
    state = json.loads(state_file.read_text())
    client = boto3.client(
        "dynamodb",
        endpoint_url=state["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, str(state["table_name"])


RESYNC_ITEM_KEY = {"pk": {"S": "resync"}, "sk": {"S": "job"}}


def page_eventually(page: Page, check: Callable[[], Any], what: str) -> Any:
    """`eventually` waiting in the page (Playwright delivers its events, e.g. requests, meanwhile)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(200)
    return result


def put_resync_job(state_file: Path, **fields: Any) -> None:
    """The resync job item as ResyncFunction writes it (without a `progress` map: the stale check
    leaves such a job alone)."""
    client, table = stack_dynamodb(state_file)
    item = {**RESYNC_ITEM_KEY, "kind": {"S": "resync"}}
    for name, value in fields.items():
        item[name] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
    client.put_item(TableName=table, Item=item)


def test_while_a_resync_runs_the_page_polls_its_status_only_and_reads_the_dashboard_when_it_ends(
    console: Console, stack: Stack, state_file: Path
) -> None:
    client, table = stack_dynamodb(state_file)
    saved = client.get_item(TableName=table, Key=RESYNC_ITEM_KEY, ConsistentRead=True).get("Item")
    job = {"id": f"test-{tag()}", "reason": "test", "started_at": "2026-01-01T00:00:00.000Z", "segments": 4}
    try:
        # Given a running resync, one of its four scan segments done
        put_resync_job(state_file, **job, status="running", segments_done=1)
        calls: list[str] = []
        console.page.on(
            "request",
            lambda request: (
                calls.append(request.url.split("/console/api", 1)[1]) if "/console/api/" in request.url else None
            ),
        )
        # When the dashboard is shown
        console.signed_in()
        # Then it shows the job's progress, and the counts with their age
        expect(console.by("resync-status")).to_have_text("running")
        expect(console.by("resync-progress")).to_have_attribute("value", "1")
        expect(console.by("counts-age")).to_contain_text(re.compile(r"counted \d+ s ago"))
        # And while it runs, only its status is read again (no count, no scan)
        page_eventually(console.page, lambda: calls.count("/status") >= 2, "two status polls")
        first_poll = calls.index("/status")
        assert set(calls[first_poll:]) == {"/status"}, calls
        # When a segment more is done: the page shows it
        put_resync_job(state_file, **job, status="running", segments_done=3)
        expect(console.by("resync-progress")).to_have_attribute("value", "3")
        assert set(calls[first_poll:]) == {"/status"}, calls
        # When the job ends
        put_resync_job(state_file, **job, status="done", segments_done=4, finished_at="2026-01-01T00:01:00.000Z")
        # Then the whole dashboard is read once more, its counts shown, and the polling stops
        expect(console.by("resync-status")).to_have_text("done")
        expect(console.by("resync-progress")).to_be_hidden()
        page_eventually(console.page, lambda: "/dashboard" in calls[first_poll:], "the dashboard read again")
        expect(console.by("count-users")).to_have_text(COUNT)
        expect(console.by("counts-age")).to_contain_text(re.compile(r"counted \d+ s ago"))
        settled = len(calls)
        console.page.wait_for_timeout(4000)  # longer than a poll's interval: no read follows
        assert calls[settled:] == [], calls
        assert calls[first_poll:].count("/dashboard") == 1, calls
    finally:
        if saved:
            client.put_item(TableName=table, Item=saved)
        else:
            client.delete_item(TableName=table, Key=RESYNC_ITEM_KEY)


# -- 2. the User Filter -----------------------------------------------------------------------------

RESYNC_LINE = "ResyncFunction invoked"  # the local stack's EventBridge rule, on each settings change


def resync_id(stack: Stack) -> str | None:
    answer = admin(stack, "GET", "/dashboard")
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()["resync"]
    return job.get("id")


def next_resync(stack: Stack, previous: str | None) -> str:
    """The id of the resync started after `previous` (each settings change starts a job of its own)."""
    return str(eventually(lambda: (job := resync_id(stack)) != previous and job, "a new resync"))


def resync_lines(stack: Stack) -> int:
    return sum(RESYNC_LINE in line for line in stack.lines)


def test_changing_the_user_filter_saves_it_updates_the_warnings_and_starts_a_resync(
    console: Console, stack: Stack
) -> None:
    # Given a defined segment (its own resync over) and the console signed in
    segment = f"Filter {tag()}"
    job = resync_id(stack)
    define_segment(stack, segment, {"trait": "plan", "op": "eq", "value": f"plan-{tag()}"})
    job = next_resync(stack, job)
    page = console.signed_in()

    # When the User Filter is emptied and saved (a native multi-select: Playwright's select_option)
    console.tab("settings")
    console.settings_loaded()
    user_filter = console.by("setting-synchronized_segments")
    expect(user_filter).to_have_values(["ALL"])
    expect(user_filter.locator("option").first).to_have_text("ALL")
    user_filter.select_option([])
    expect(user_filter).to_have_values([])
    expect(console.save_settings()).to_contain_text("A resync started")
    # Then the parameter holds no filter, and the dashboard warns that nobody is sent
    assert settings_of(stack)["synchronized_segments"] == []
    expect(console.by("settings-result").locator('[data-code="no_users_in_filter"]')).to_have_count(1)
    console.tab("dashboard")
    expect(console.by("warnings").locator('[data-code="no_users_in_filter"]')).to_have_count(1)
    job = next_resync(stack, job)

    # When the segment is chosen and saved
    console.tab("settings")
    console.settings_loaded()
    expect(user_filter).to_have_values([])
    expect(console.option("synchronized_segments", segment)).to_have_text(segment)
    user_filter.select_option([segment])
    expect(user_filter).to_have_values([segment])
    lines = resync_lines(stack)
    result = console.save_settings()
    # Then the page says a resync started, the parameter changed, the warning is gone
    expect(result).to_contain_text("A resync started")
    assert settings_of(stack)["synchronized_segments"] == [segment]
    console.tab("dashboard")
    expect(console.by("warnings").locator('[data-code="no_users_in_filter"]')).to_have_count(0)
    # (either "No warnings." or the warnings there are: the status was rendered)
    shown = console.page.locator('[data-testid="warnings-none"]:visible, [data-testid="warnings"] [data-code]')
    expect(shown.first).to_be_visible()
    # And the resync started: the stack invoked ResyncFunction, and the dashboard shows the new job
    eventually(lambda: resync_lines(stack) > lines, "ResyncFunction invoked")
    started = next_resync(stack, job)
    console.by("dashboard-refresh").click()
    expect(console.by("resync-details")).to_contain_text(started)
    expect(console.by("resync-status")).not_to_have_text("none yet")
    screenshot(page, "dashboard-after-save")

    # When the page is shown again: the saved filter is selected
    console.tab("settings")
    console.settings_loaded()
    expect(user_filter).to_have_values([segment])

    # When a field is invalid (a trait path with a space): its error next to it, nothing saved
    attributes = console.by("setting-synchronized_properties")
    attributes.select_option([])
    console.by("add-synchronized_properties").fill("not a path")
    console.by("add-synchronized_properties-button").click()
    expect(attributes).to_have_values(["not a path"])
    expect(console.option("synchronized_properties", "not a path")).to_have_text("not a path")
    result = console.save_settings()
    expect(result).to_contain_text("Not saved")
    expect(result).to_contain_text("synchronized_properties")
    expect(console.by("error-synchronized_properties")).to_be_visible()
    expect(console.by("error-synchronized_segments")).to_be_hidden()
    assert "not a path" not in settings_of(stack)["synchronized_properties"]
    screenshot(page, "settings-error")

    # When ALL is chosen with the segment: only ALL is saved, and shown
    console.tab("settings")
    console.settings_loaded()
    user_filter.select_option(["ALL", segment])
    expect(user_filter).to_have_values(["ALL", segment])
    expect(console.save_settings()).to_contain_text("Saved")
    assert settings_of(stack)["synchronized_segments"] == ["ALL"]
    expect(user_filter).to_have_values(["ALL"])


def test_event_and_attribute_lists_keep_saved_names_and_add_new_ones(console: Console, stack: Stack) -> None:
    # Given saved names that no user sent (not in the catalogue), and a defined segment
    event = f"Unseen Event {tag()}"
    trait = f"unseen_{tag()}"
    put_settings(stack, send_events=["page", event], synchronized_properties=[trait])
    console.signed_in()
    # When the settings tab is shown
    console.tab("settings")
    console.settings_loaded()
    events = console.by("setting-send_events")
    attributes = console.by("setting-synchronized_properties")
    # Then the saved names are selected options (ALL first, then page and screen), a hint under each list
    expect(events).to_have_values(["page", event])
    expect(events.locator("option").first).to_have_text("ALL")
    expect(console.option("send_events", "screen")).to_have_count(1)
    expect(attributes).to_have_values([trait])
    expect(console.page.locator("#panel-settings")).to_contain_text("Click a name to choose it")
    for name in ("synchronized_segments", "synchronized_properties", "send_events"):
        assert console.by(f"setting-{name}").evaluate("node => node.tagName + ':' + node.multiple") == "SELECT:true"
        expect(console.by(f"setting-{name}")).to_have_accessible_name(re.compile(r"\S"))

    # When a name is added (with ALL chosen before): it is a selected option, ALL is no longer chosen
    added = f"Added Event {tag()}"
    events.select_option(["ALL"])
    console.by("add-send_events").fill(added)
    console.by("add-send_events-button").click()
    expect(events).to_have_values([added])
    expect(console.option("send_events", event)).to_have_count(1)  # still listed, not chosen
    events.select_option(["screen", event, added])
    attributes.select_option([])
    expect(console.save_settings()).to_contain_text("Saved")
    # Then the saved lists are what was chosen
    saved = settings_of(stack)
    assert sorted(saved["send_events"]) == sorted(["screen", event, added])
    assert saved["synchronized_properties"] == []
    # And ALL chosen among events saves ALL alone
    events.select_option(["ALL", "page"])
    expect(console.save_settings()).to_contain_text("Saved")
    assert settings_of(stack)["send_events"] == ["ALL"]
    expect(events).to_have_values(["ALL"])


def test_forward_events_shows_the_loop_warning(console: Console, stack: Stack) -> None:
    # Given the settings tab
    console.signed_in()
    console.tab("settings")
    console.settings_loaded()
    before = settings_of(stack)
    toggle = console.by("setting-forward_events")
    assert not toggle.is_checked()
    expect(console.by("forward-events-warning")).to_be_hidden()
    # When forward_events is switched on: the loop warning, on the page and (saved) on the dashboard
    toggle.check()
    expect(console.by("forward-events-warning")).to_be_visible()
    expect(console.save_settings()).to_contain_text("Saved")
    # (the whole document is saved: what the form does not edit is kept)
    assert settings_of(stack) == {**before, "forward_events": True}
    console.tab("dashboard")
    expect(console.by("warnings").locator('[data-code="forward_events_loop"]')).to_have_count(1)
    # When switched off again, the warning goes
    console.tab("settings")
    console.settings_loaded()
    console.by("setting-forward_events").uncheck()
    expect(console.by("forward-events-warning")).to_be_hidden()
    expect(console.save_settings()).to_contain_text("Saved")
    console.tab("dashboard")
    expect(console.by("warnings").locator('[data-code="forward_events_loop"]')).to_have_count(0)


def test_the_write_key_is_stored_and_never_shown(console: Console, stack: Stack, state_file: Path) -> None:
    # Given the settings tab (the local stack starts with a write key)
    page = console.signed_in()
    console.tab("settings")
    console.settings_loaded()
    expect(console.by("write-key-status")).to_have_text("set")
    try:
        # When an empty key is submitted: refused on the page
        console.by("write-key-save").click()
        expect(console.by("write-key-result")).to_contain_text("Enter the write key")
        # When a new key is saved
        new_key = f"wk-{tag()}"
        console.by("setting-write_key").fill(new_key)
        console.by("write-key-save").click()
        # Then SSM holds it, the page says "set" and shows it nowhere (the input is emptied)
        expect(console.by("write-key-result")).to_have_text("Write key saved.")
        expect(console.by("setting-write_key")).to_have_value("")
        expect(console.by("write-key-status")).to_have_text("set")
        assert stored_secret(state_file, "write-key") == new_key
        assert new_key not in page.content()
        assert admin(stack, "GET", "/settings").json()["write_key_set"] is True
    finally:
        # The stack's own key again (replacing it is the same path)
        console.by("setting-write_key").fill("local-write-key")
        console.by("write-key-save").click()
        expect(console.by("write-key-result")).to_have_text("Write key saved.")
    assert stored_secret(state_file, "write-key") == "local-write-key"


# -- 3. segment rules ---------------------------------------------------------------------------------


def test_rule_preview_counts_matching_users_and_shows_errors_then_saves_the_segment(
    console: Console, stack: Stack
) -> None:
    # Given users, two of them on a plan of their own
    plan = f"plan-{tag()}"
    users = [f"prev-{tag()}" for _ in range(3)]
    for index, user in enumerate(users):
        deliver(
            stack,
            {"type": "identify", "userId": user, "traits": {"plan": plan if index < 2 else "other"}},
        )
    page = console.signed_in()
    console.tab("segments")
    console.by("segment-new-user").click()

    # When a rule is typed: the preview counts the matches among the sampled users and lists them
    console.by("segment-rule").fill(f'{{"trait": "plan", "op": "eq", "value": "{plan}"}}')
    preview = console.by("segment-preview")
    expect(preview).to_contain_text("sampled users match")
    expect(preview.locator(".preview-count strong")).to_have_text("2")
    expect(preview).to_contain_text(users[0])
    expect(preview).not_to_contain_text(users[2])
    screenshot(page, "segment-preview")

    # When the text is not JSON, or not a valid rule: the error, no count
    console.by("segment-rule").fill('{"trait": "plan", ')
    expect(preview).to_contain_text("Invalid JSON")
    console.by("segment-rule").fill('{"trait": "plan", "op": "bigger", "value": 1}')
    expect(preview).to_contain_text("Invalid rule")
    expect(preview).not_to_contain_text("sampled users match")

    # When a valid rule is saved under a name: it is in the settings' `segments` and listed
    name = f"Preview {tag()}"
    rule = {"trait": "plan", "op": "eq", "value": plan}
    console.by("segment-rule").fill(f'{{"trait": "plan", "op": "eq", "value": "{plan}"}}')
    console.by("segment-name").fill(name)
    console.by("segment-save").click()
    expect(console.by("segment-result")).to_contain_text("Saved")
    assert {"name": name, "rule": rule} in settings_of(stack)["segments"]
    item = console.by("segments-user").locator(f'[data-name="{css(name)}"]')
    expect(item).to_have_count(1)

    # When it is deleted (two clicks): gone from the settings and the list
    item.get_by_test_id("segment-delete").click()
    item.get_by_test_id("segment-delete").click()
    expect(console.by("segment-result")).to_contain_text("Saved")
    expect(item).to_have_count(0)
    assert name not in [segment["name"] for segment in settings_of(stack)["segments"]]


# -- 4. user lookup ------------------------------------------------------------------------------------


def test_user_lookup_shows_traits_segments_and_events(console: Console, stack: Stack) -> None:
    # Given a segment, then a user in it with an event
    plan = f"gold-{tag()}"
    segment = f"Gold {tag()}"
    define_segment(stack, segment, {"trait": "plan", "op": "eq", "value": plan})
    user = f"look-{tag()}"
    email = f"{user}@example.com"
    deliver(stack, {"type": "identify", "userId": user, "traits": {"email": email, "plan": plan, "seats": 7}})
    deliver(stack, {"type": "track", "userId": user, "event": "Report Exported", "properties": {"rows": 12}})

    page = console.signed_in()
    console.tab("users")
    for query in (email, user, f"user_id:{user}"):
        # When looking the user up by email, by a bare id, by a prefixed id
        console.by("user-query").fill(query)
        console.by("user-search").click()
        expect(console.by("user-message")).to_be_hidden()  # the answer is in (nothing stale is shown)
        # Then the traits, the segments and the latest events
        traits = console.by("user-traits")
        expect(traits.locator('[data-trait="plan"]')).to_contain_text(plan)
        expect(traits.locator('[data-trait="seats"]')).to_contain_text("7")
        expect(traits).to_contain_text(email)
        expect(console.by("user-segments")).to_contain_text(segment)
        expect(console.by("user-events")).to_contain_text("Report Exported")
        expect(console.by("user-profile")).to_contain_text(user)
        # And the curl line of the user's traits on the Segment-compatible Profile API
        traits_url = f"{stack.url}/v1/spaces/local/collections/users/profiles/user_id:{user}/traits"
        expect(console.by("user-profile-api")).to_have_text(f"curl -u \"$PROFILE_TOKEN:\" '{traits_url}'")
    screenshot(page, "user")

    # Given the User Filter is that segment and only `plan` is sent
    put_settings(stack, synchronized_segments=[segment], synchronized_properties=["plan"])
    # When the user is looked up
    console.by("user-query").fill(user)
    console.by("user-search").click()
    # Then the page says it is sent, with the identify's traits: plan and hull_segments, not seats
    expect(console.by("user-sent")).to_contain_text("In the User Filter")
    sent = console.by("user-sent-traits")
    expect(sent.locator('[data-trait="plan"]')).to_contain_text(plan)
    expect(sent.locator('[data-trait="hull_segments"]')).to_contain_text(segment)
    expect(sent.locator('[data-trait="seats"]')).to_have_count(0)
    # And a user outside the filter is said not to be sent
    outsider = f"out-{tag()}"
    deliver(stack, {"type": "identify", "userId": outsider, "traits": {"plan": "none"}})
    console.by("user-query").fill(outsider)
    console.by("user-search").click()
    expect(console.by("user-sent")).to_contain_text("Not in the User Filter")
    put_settings(stack, synchronized_segments=["ALL"], synchronized_properties=[])

    # When nobody matches: said so, nothing stale shown
    console.by("user-query").fill(f"user_id:nobody-{tag()}")
    console.by("user-search").click()
    expect(console.by("user-message")).to_contain_text("No user")
    expect(console.by("user-traits")).to_be_hidden()


# -- 5. what users sent is only ever text -------------------------------------------------------------


def test_markup_from_users_is_shown_as_text_and_never_runs(console: Console, stack: Stack) -> None:
    # Given a user whose trait value, trait name and event name are markup
    user = f"xss-{tag()}"
    deliver(stack, {"type": "identify", "userId": user, "traits": {"bio": XSS_VALUE, XSS_TRAIT: "x"}})
    deliver(stack, {"type": "track", "userId": user, "event": XSS_EVENT, "properties": {"html": XSS_VALUE}})
    page = console.signed_in()

    # When the user is looked up
    console.tab("users")
    console.by("user-query").fill(f"user_id:{user}")
    console.by("user-search").click()
    traits = console.by("user-traits")
    expect(traits.locator('[data-trait="bio"]')).to_contain_text(XSS_VALUE)
    # Then the markup is there as characters, and no element was made of it
    assert XSS_VALUE in (traits.text_content() or "")
    assert XSS_TRAIT in (traits.text_content() or "")
    assert traits.locator("img").count() == 0
    events = console.by("user-events")
    expect(events).to_contain_text(XSS_EVENT)
    assert events.locator("svg, img").count() == 0

    # When the settings' attribute and event lists show the names of the catalogue
    console.tab("settings")
    console.settings_loaded()
    for name, markup in (("synchronized_properties", XSS_TRAIT), ("send_events", XSS_EVENT)):
        picker = console.by(f"setting-{name}")
        option = console.option(name, markup)
        # Then the name is an option's text (and value), no element
        expect(option).to_have_count(1)
        expect(option).to_have_text(markup)
        assert option.text_content() == markup
        assert picker.locator("img, svg").count() == 0
        # And it can be chosen like any other name (not saved)
        picker.select_option([markup])
        expect(picker).to_have_values([markup])

    # And nothing ran: no dialog, no injected element anywhere, no error
    page.wait_for_timeout(300)  # an onerror/onload would fire on the next tasks
    assert page.locator("img, svg").count() == 0
    assert console.dialogs == []
    assert [error for error in console.errors if "Failed to load resource" not in error] == []
    screenshot(page, "xss")


# -- 6. the page itself -------------------------------------------------------------------------------


def test_the_console_is_served_with_its_csp_and_runs_without_errors(console: Console, stack: Stack) -> None:
    # Given the console's page and assets as the stack serves them
    page_answer = requests.get(f"{stack.url}/console", timeout=WAIT_SECONDS)
    assert page_answer.status_code == 200
    assert page_answer.headers["Content-Type"].startswith("text/html")
    csp = page_answer.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"):
        assert directive in csp
    assert page_answer.headers["X-Content-Type-Options"] == "nosniff"
    for asset, media_type in (("console.js", "javascript"), ("console.css", "text/css")):
        answer = requests.get(f"{stack.url}/console/assets/{asset}", timeout=WAIT_SECONDS)
        assert answer.status_code == 200 and media_type in answer.headers["Content-Type"], asset

    # When the page is loaded, signed in and every tab visited
    response = console.page.goto(f"{stack.url}/console")
    assert response is not None and "default-src 'self'" in (response.headers.get("content-security-policy") or "")
    page = console.page
    console.sign_in()
    expect(console.by("webhook-url")).to_contain_text("/segment")
    for name in ("settings", "segments", "users", "dashboard"):
        console.tab(name)
        expect(page.locator(f"#panel-{name}")).to_be_visible()
    console.tab("settings")
    console.settings_loaded()

    # Then the script ran under the CSP (the tabs work), the stylesheet applied, and nothing failed
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex"
    assert console.errors == []
    assert console.dialogs == []


@pytest.mark.parametrize("width", [1280, 375])
def test_the_console_fits_the_window(browser: Browser, stack: Stack, width: int) -> None:
    # Given a window of this width
    context = browser.new_context(viewport={"width": width, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(EXPECT_MS)
        opened = Console(page, stack.url)
        opened.signed_in()
        # When each tab is shown, then nothing is wider than the window (no sideways scrolling)
        for name in ("dashboard", "settings", "segments", "users"):
            opened.tab(name)
            if name == "settings":
                opened.settings_loaded()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width}px is {overflow}px too wide"
            screenshot(page, f"{name}-{width}")
    finally:
        context.close()


# -- 7. list settings: choices stay visible, a plain click never wipes them ----------------------------

ACCENT = "rgb(31, 95, 191)"  # console.css --accent: the background of a chosen name


def chip_names(console: Console, field_name: str) -> list[str]:
    return [
        str(name)
        for name in console.by(f"chosen-{field_name}")
        .get_by_test_id("chip")
        .evaluate_all("chips => chips.map(chip => chip.dataset.value)")
    ]


def test_a_plain_click_toggles_one_name_and_keeps_the_others_chosen(console: Console, stack: Stack) -> None:
    # Given saved events (one no user sent) and the settings tab
    event = f"Chip Event {tag()}"
    put_settings(stack, send_events=["page", event])
    console.signed_in()
    console.tab("settings")
    console.settings_loaded()
    events = console.by("setting-send_events")
    # Then each chosen name is a chip under the list, and stands out in the list itself (unfocused)
    expect(events).to_have_values(["page", event])
    assert chip_names(console, "send_events") == ["page", event]
    console.by("dashboard-refresh").evaluate("node => node.focus()")  # focus elsewhere: Chromium greys
    chosen = console.option("send_events", "page").evaluate("node => getComputedStyle(node).backgroundImage")
    other = console.option("send_events", "screen").evaluate("node => getComputedStyle(node).backgroundImage")
    assert ACCENT in chosen and ACCENT not in other

    # When another name is clicked (no Ctrl): it is added, the others stay chosen
    console.option("send_events", "screen").click()
    expect(events).to_have_values(["page", "screen", event])
    assert chip_names(console, "send_events") == ["page", "screen", event]
    # When a chosen name is clicked again: only it is taken out
    console.option("send_events", "page").click()
    expect(events).to_have_values(["screen", event])
    # When a chip's remove button is pressed: that name is no longer chosen, in the list too
    chip = console.by("chosen-send_events").locator(f'[data-value="{css(event)}"]')
    expect(chip.get_by_role("button", name=f"Remove {event}")).to_be_visible()
    chip.get_by_test_id("chip-remove").click()
    expect(events).to_have_values(["screen"])
    expect(chip).to_have_count(0)
    expect(console.option("send_events", event)).to_have_count(1)  # still listed, to choose again
    # And select_option (the native select is the source of truth) drives the chips the same way
    events.select_option(["page", event])
    assert chip_names(console, "send_events") == ["page", event]
    events.select_option([])
    expect(console.by("chosen-send_events")).to_contain_text("None chosen")

    # When the clicks are saved: the parameter holds exactly the names clicked
    console.option("send_events", "screen").click()
    console.option("send_events", event).click()
    expect(console.save_settings()).to_contain_text("Saved")
    assert sorted(settings_of(stack)["send_events"]) == sorted(["screen", event])

    # And the User Filter works alike: clicking a segment next to ALL keeps ALL (the note says so)
    user_filter = console.by("setting-synchronized_segments")
    user_filter.select_option(["ALL"])
    segment = f"Click {tag()}"
    define_segment(stack, segment, {"trait": "plan", "op": "eq", "value": f"plan-{tag()}"})
    console.tab("settings")
    console.settings_loaded()
    console.option("synchronized_segments", segment).click()
    expect(user_filter).to_have_values(["ALL", segment])
    expect(console.by("note-synchronized_segments")).to_contain_text("only ALL is saved")
    screenshot(console.page, "chips")


# -- 8. times: the viewer's local time, the ISO value on hover ------------------------------------------


def test_times_are_shown_in_the_viewers_local_time_with_the_iso_value_on_hover(browser: Browser, stack: Stack) -> None:
    # Given a user with an event at a known instant, and a viewer in Tokyo (UTC+9) reading US English
    user = f"time-{tag()}"
    at = "2026-01-01T00:00:00.000Z"
    deliver(stack, {"type": "identify", "userId": user, "traits": {"plan": "time"}})
    deliver(stack, {"type": "track", "userId": user, "event": "Clock Read", "timestamp": at})
    with console_in(browser, stack, timezone_id="Asia/Tokyo", locale="en-US") as console:
        console.signed_in()
        # When the user is looked up
        console.tab("users")
        console.by("user-query").fill(f"user_id:{user}")
        console.by("user-search").click()
        row = console.by("user-events").locator("tr", has_text="Clock Read")
        expect(row).to_have_count(1)
        # Then the event's time is Tokyo's, named as such, and the ISO value is its title (hover)
        shown = row.locator("time")
        expect(shown).to_have_text("1/1/2026, 9:00:00 AM GMT+9")
        expect(shown).to_have_attribute("title", at)
        expect(shown).to_have_attribute("datetime", at)
        shown.hover()
        assert console.page.evaluate("document.querySelector('time:hover').title") == at
        # And the profile's times are local too, each with its stored ISO value
        for label in ("Created", "Updated"):
            value = console.by("user-profile").locator("div", has=console.page.locator("dt", has_text=label))
            stamp = value.locator("time")
            iso = str(stamp.get_attribute("title"))
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", iso), iso
            expected = console.page.evaluate(
                "iso => new Date(iso).toLocaleString(undefined, {timeZoneName: 'short'})", iso
            )
            expect(stamp).to_have_text(expected)
            assert "GMT+9" in expected
        assert console.errors == []


def test_dashboard_times_are_local_with_the_iso_value_on_hover(browser: Browser, stack: Stack) -> None:
    # Given a resync run (a settings change starts one) and a viewer in New York
    job = resync_id(stack)
    define_segment(stack, f"Hover {tag()}", {"trait": "plan", "op": "eq", "value": f"plan-{tag()}"})
    next_resync(stack, job)
    with console_in(browser, stack, timezone_id="America/New_York", locale="en-US") as console:
        # When the dashboard is shown
        console.signed_in()
        console.by("dashboard-refresh").click()
        started = console.by("resync-details").locator("div", has=console.page.locator("dt", has_text="Started"))
        stamp = started.locator("time")
        expect(stamp).to_have_count(1)
        # Then the resync's start is New York time (EST or EDT), its ISO value on hover
        iso = str(stamp.get_attribute("title"))
        assert stamp.get_attribute("datetime") == iso
        expect(stamp).to_have_text(re.compile(r"E[SD]T$"))
        expected = console.page.evaluate("iso => new Date(iso).toLocaleString(undefined, {timeZoneName: 'short'})", iso)
        expect(stamp).to_have_text(expected)


# -- 9. accounts: inactive while handle_accounts is off ------------------------------------------------


def test_the_accounts_section_says_it_is_inactive_while_handle_accounts_is_off(console: Console, stack: Stack) -> None:
    # Given handle_accounts off (the default)
    put_settings(stack, handle_accounts=False)
    try:
        console.signed_in()
        console.tab("settings")
        console.settings_loaded()
        # Then the Accounts section says it is inactive, and why
        notice = console.by("accounts-inactive")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Inactive")
        expect(notice).to_contain_text("handle_accounts")
        expect(console.by("accounts-card")).to_contain_text("Inactive")
        # And its lists can still be edited (prepared before switching on)
        expect(console.by("setting-synchronized_account_segments")).to_be_enabled()
        # When the toggle is switched on: the notice goes; off again: it is back
        console.by("setting-handle_accounts").check()
        expect(notice).to_be_hidden()
        console.by("setting-handle_accounts").uncheck()
        expect(notice).to_be_visible()
        # And the Segments tab says account segments are inactive too
        console.tab("segments")
        expect(console.by("account-segments-inactive")).to_be_visible()

        # When handle_accounts is switched on and saved
        console.tab("settings")
        console.settings_loaded()
        console.by("setting-handle_accounts").check()
        expect(console.save_settings()).to_contain_text("Saved")
        assert settings_of(stack)["handle_accounts"] is True
        # Then neither section says inactive, also when shown again
        console.tab("settings")
        console.settings_loaded()
        expect(console.by("accounts-inactive")).to_be_hidden()
        console.tab("segments")
        expect(console.by("account-segments-inactive")).to_be_hidden()
    finally:
        put_settings(stack, handle_accounts=False)


# -- 10. the event picker never offers the connector's own events ----------------------------------------


def catalogue_events(stack: Stack) -> list[str]:
    answer = admin(stack, "GET", "/catalogue")
    assert answer.status_code == 200, answer.text
    return [str(name) for name in answer.json()["events"]]


def test_the_event_picker_does_not_offer_entered_or_left_segment(console: Console, stack: Stack) -> None:
    # Given a user with an event of its own who enters a new segment, then leaves it as the segment
    # is removed (each settings change's resync records Entered/Left Segment on the profile)
    plan = f"picker-{tag()}"
    segment = f"Picker {tag()}"
    user = f"pick-{tag()}"
    own_event = f"Own Event {tag()}"
    deliver(stack, {"type": "identify", "userId": user, "traits": {"plan": plan}})
    deliver(stack, {"type": "track", "userId": user, "event": own_event})
    job = resync_id(stack)
    define_segment(stack, segment, {"trait": "plan", "op": "eq", "value": plan})
    job = next_resync(stack, job)
    eventually(lambda: "Entered Segment" in catalogue_events(stack), "Entered Segment recorded")
    put_settings(stack, segments=[item for item in settings_of(stack)["segments"] if item["name"] != segment])
    next_resync(stack, job)
    eventually(lambda: {"Left Segment", own_event} <= set(catalogue_events(stack)), "Left Segment and the user's event")
    # When the settings tab is shown
    console.signed_in()
    console.tab("settings")
    console.settings_loaded()
    # Then the user's event is offered, the connector's own events are not
    expect(console.option("send_events", own_event)).to_have_count(1)
    expect(console.option("send_events", "Entered Segment")).to_have_count(0)
    expect(console.option("send_events", "Left Segment")).to_have_count(0)
    for name in ("page", "screen", "ALL"):
        expect(console.option("send_events", name)).to_have_count(1)
