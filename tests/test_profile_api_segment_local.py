"""The Segment-compatible Profile API on the local stack (`make run`'s `python -m local_stack`):
the curl example of Segment's Profile API documentation works with only the base URL, the space
id and the token changed."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
import requests

from harness import WAIT_SECONDS, Stack, free_port
from local_stack.template import ROOT

SPACE = "spa_local_e2e"
TOKEN = "e2e-profile-token"


@pytest.mark.e2e
def test_segments_curl_example_works_against_the_local_stack() -> None:
    # Given a local stack with its own space id and profile token, and a user with traits
    running = Stack(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "local_stack"],
        free_port(),
        # the worktree's package first (the venv's editable install may point at another checkout)
        {"SPACE_ID": SPACE, "PROFILE_TOKEN": TOKEN, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}"},
    )
    try:
        running.wait_ready()
        assert f"{running.url}/v1/spaces/{SPACE}/ (Segment-compatible" in running.output
        assert TOKEN not in running.output  # a token of one's own is never printed
        user = f"u-{uuid.uuid4().hex[:8]}"
        identify = {"type": "identify", "userId": user, "traits": {"first_name": "Ann", "plan": "pro"}}
        answer = requests.post(
            f"{running.url}/segment", json=identify, auth=("local-api-key", ""), timeout=WAIT_SECONDS
        )
        assert answer.status_code == 200, answer.text
        # When Segment's documented example is run with the base URL, space id and token changed:
        #   curl https://profiles.segment.com/v1/spaces/<space_id>/collections/users/profiles/\
        #     user_id:<id>/traits -u <token>:
        url = f"{running.url}/v1/spaces/{SPACE}/collections/users/profiles/user_id:{user}/traits"
        curl = shutil.which("curl")
        if curl is not None:
            done = subprocess.run(
                [curl, "-s", "-i", url, "-u", f"{TOKEN}:"], capture_output=True, text=True, timeout=WAIT_SECONDS
            )
            head, _, body = done.stdout.partition("\n\n")  # text mode: CRLF read as LF
            status_line = head.splitlines()[0]
            headers = head.lower()
        else:  # the same request without curl
            reply = requests.get(url, auth=(TOKEN, ""), timeout=WAIT_SECONDS)
            status_line, body, headers = f"HTTP/1.1 {reply.status_code}", reply.text, str(reply.headers).lower()
        # Then the traits come back in Segment's shape, with a Request-Id
        assert " 200" in status_line, (status_line, body)
        assert "request-id" in headers
        assert json.loads(body)["traits"] == {"first_name": "Ann", "plan": "pro"}
        # And another token, or the API key, is refused as Segment refuses it
        refused = requests.get(url, auth=("local-api-key", ""), timeout=WAIT_SECONDS)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "authentication_error"
    finally:
        running.kill()


def test_the_local_stack_takes_the_space_id_and_the_token_from_the_environment() -> None:
    from local_stack.aws import connector_parameters
    from local_stack.config import load_config
    from local_stack.template import load_template

    template = load_template()
    defaults = load_config(template, {})
    assert (defaults.space_id, defaults.profile_token, defaults.profile_token_is_default) == (
        "local",
        "local-profile-token",
        True,
    )
    mine = load_config(template, {"SPACE_ID": "spa_1", "PROFILE_TOKEN": "t"})
    assert (mine.space_id, mine.profile_token, mine.profile_token_is_default) == ("spa_1", "t", False)
    parameters = connector_parameters("/p", "k", "w", "{}", None, None, "t")
    assert parameters["/p/profile-token"] == ("SecureString", "t")
