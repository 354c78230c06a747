"""The IAM authority of one local deployment: its roles, its place, and KMS as AWS applies it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local_stack.iam.enforce import Authority
from local_stack.iam.intrinsics import Deployment
from local_stack.iam.requests import Need, Place
from local_stack.iam.roles import function_roles
from local_stack.template import TEMPLATE_PATH

AWS_MANAGED_SSM_KEY = "alias/aws/ssm"
_READS = ("GetParameter", "GetParameters", "GetParameterHistory")


def authority_for(deployment: Deployment, template_path: Path = TEMPLATE_PATH, *, record: bool = True) -> Authority:
    """`record`: whether its calls go into `make iam`'s record (not for a test's altered template)."""
    roles = function_roles(template_path.read_text(encoding="utf-8"), deployment)
    place = Place(deployment.account, deployment.region)
    key = deployment.parameters.get("KmsKeyArn") or None
    return Authority(roles=roles, place=place, kms_needs=kms_needs, environment_key=key, record=record)


def kms_needs(service: str, operation: str, params: Mapping[str, Any], place: Place) -> list[Need]:
    """The KMS permissions SSM uses on the caller's behalf for a SecureString.

    With the AWS managed key aws/ssm, its key policy lets every principal of the account use it
    through SSM: no IAM grant is involved. With a customer managed key, the caller's role needs
    kms:Decrypt (reading the value) or kms:Encrypt (writing one) on that key, via SSM.
    """
    if service == "sqs" and operation in ("SendMessage", "SendMessageBatch"):
        return _queue_key_needs(place, str(params.get("QueueUrl", "")))
    if service != "ssm":
        return []
    found: list[Need] = []
    if operation in _READS and params.get("WithDecryption"):
        for name in params.get("Names") or [params.get("Name")]:
            key = _stored_key(place, str(name)) if name else None
            if key:
                found.append(Need("kms:Decrypt", key_arn(place, key), _ssm_context(place, str(name))))
    if operation == "PutParameter" and params.get("Type") == "SecureString":
        key = params.get("KeyId") or AWS_MANAGED_SSM_KEY
        if key != AWS_MANAGED_SSM_KEY:
            name = str(params.get("Name", ""))
            found.append(Need("kms:Encrypt", key_arn(place, str(key)), _ssm_context(place, name)))
    return found


def _ssm_context(place: Place, name: str) -> dict[str, str]:
    """SSM calls KMS on the caller's behalf with the parameter's ARN as encryption context."""
    return {
        "kms:viaservice": f"ssm.{place.region}.amazonaws.com",
        "kms:encryptioncontext:parameter_arn": place.arn(
            "ssm", "parameter" + (name if name.startswith("/") else f"/{name}")
        ),
    }


def _queue_key_needs(place: Place, queue_url: str) -> list[Need]:
    """A sender to a queue encrypted with a customer managed key needs GenerateDataKey and Decrypt."""
    from moto.sqs.models import sqs_backends

    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    queue = sqs_backends[place.account][place.region].queues.get(name)
    key = getattr(queue, "kms_master_key_id", None) if queue is not None else None
    if not key or key == "alias/aws/sqs":
        return []
    via = {"kms:viaservice": f"sqs.{place.region}.amazonaws.com"}
    arn = key_arn(place, str(key))
    return [Need("kms:GenerateDataKey", arn, via), Need("kms:Decrypt", arn, via)]


def _stored_key(place: Place, name: str) -> str | None:
    """The customer managed key a stored SecureString is encrypted with (None: aws/ssm or not secure)."""
    from moto.ssm.models import ssm_backends

    parameter = ssm_backends[place.account][place.region].get_parameter(name)
    if parameter is None or parameter.parameter_type != "SecureString":
        return None
    key = parameter.keyid or AWS_MANAGED_SSM_KEY
    return None if key == AWS_MANAGED_SSM_KEY else str(key)


def key_arn(place: Place, key: str) -> str:
    """Key policies and IAM see the key's ARN, whatever name (id, alias, ARN) the call used."""
    from moto.kms.models import kms_backends

    backend = kms_backends[place.account][place.region]
    try:
        return str(backend.describe_key(key).arn)
    except Exception:  # noqa: BLE001 - an unknown key: IAM would check the name as given
        return key if key.startswith("arn:") else place.arn("kms", f"key/{key}")
