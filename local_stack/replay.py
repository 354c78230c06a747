"""`make replay` against the local stack: invoke the outbound handler with {"action": "replay"}.

Needs a running `make run` (it reads .local-stack/state.json for the emulator's address) and
prints the handler's JSON result.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from local_stack.config import STATE_PATH, read_state
from local_stack.lambda_runtime import function_environment, load_function
from local_stack.template import ROOT, load_template

EVENT = {"action": "replay"}


def main() -> int:
    state = read_state()
    if state is None or not _alive(state.get("pid")):
        print(
            f"No local stack is running ({STATE_PATH.relative_to(ROOT)} not found or stale): start it with `make run` "
            "in another terminal, then run `make replay` again.",
            file=sys.stderr,
        )
        return 1
    template = load_template()
    environment = function_environment(
        template, "OutboundFunction", state["table_name"], state["aws_endpoint_url"], state["segment_api_url"]
    )
    outbound = load_function(template, "OutboundFunction", environment)
    try:
        result = outbound.invoke(EVENT)
    except Exception:  # noqa: BLE001 - show the handler's error, exit non-zero
        traceback.print_exc()
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    sys.exit(main())
