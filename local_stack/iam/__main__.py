"""`python -m local_stack.iam [--calls FILE]`: the IAM report of the calls a test run recorded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local_stack.iam.intrinsics import Deployment
from local_stack.iam.report import build_reports, load_allowlist, load_calls, render
from local_stack.iam.roles import function_roles
from local_stack.lambda_runtime import ACCOUNT_ID, REGION, STACK_NAME, TABLE_NAME
from local_stack.template import ROOT, TEMPLATE_PATH

DEFAULT_CALLS = ROOT / ".local-stack" / "iam-calls.jsonl"
ALLOWLIST = ROOT / "iam-allowlist.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.iam", description=__doc__)
    parser.add_argument("--calls", type=Path, default=DEFAULT_CALLS, help="recorded calls (IAM_CALLS_FILE)")
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST)
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH)
    args = parser.parse_args(argv)
    calls = load_calls(args.calls)
    if not calls:
        print(f"iam: no calls recorded in {args.calls}: run the tests first (make test or make iam)", file=sys.stderr)
        return 2
    # With a customer managed key, so that the statements only such a deployment has are listed too.
    key = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/customer-managed"
    deployment = Deployment(ACCOUNT_ID, REGION, STACK_NAME, {"KmsKeyArn": key}, {"Table": TABLE_NAME})
    roles = function_roles(args.template.read_text(encoding="utf-8"), deployment)
    table, ok = render(build_reports(roles, calls, load_allowlist(args.allowlist)))
    print(table)
    print(
        f"iam: {len(calls)} distinct permissions checked; "
        + ("every call allowed, every grant used" if ok else "FAILED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
