"""Run by the SAM CLI's virtualenv (.venv-tools): template.yaml (stdin) -> CloudFormation JSON (stdout).

SAM's own translator, as `sam deploy` runs it: the roles it writes for each function (SAM policy
templates, the statements it adds for event sources and destinations) are what IAM enforces.
Code locations become placeholders (the translator wants S3 URIs, `sam package` would upload).
"""

import json
import os
import sys

from samtranslator.translator.transform import transform  # type: ignore[import-not-found]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-not-found]

PSEUDO = {
    "AWS::Region": os.environ.get("AWS_REGION", "us-east-1"),
    "AWS::AccountId": os.environ.get("AWS_ACCOUNT_ID", "123456789012"),
    "AWS::StackName": os.environ.get("STACK_NAME", "segment-connector-local"),
    "AWS::Partition": "aws",
}


class _NoManagedPolicyNames:
    """Policies given by name would be looked up in IAM; this template names ARNs only."""

    def load(self) -> dict[str, str]:
        return {}


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])
    template = yaml_parse(sys.stdin.read())
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = "s3://local-placeholder/code.zip"
    json.dump(transform(template, dict(PSEUDO), _NoManagedPolicyNames()), sys.stdout, default=str)


if __name__ == "__main__":
    main()
