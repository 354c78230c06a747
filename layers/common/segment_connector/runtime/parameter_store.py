"""ParameterStore: the connector's SSM parameters as the console reads and writes them.

The functions read parameters through config.py (cached); this is the uncached path of the one
function that may write: the console (settings and the write key).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from segment_connector.domain.errors import ACCESS_DENIED_CODES, PermissionDenied, StoreUnavailable

STANDARD_TIER_BYTES = 4096  # a standard parameter's limit (no charge); an advanced one holds 8 KB


def tier_for(value: str) -> str:
    """The tier of every write (the console's and the CLI's): Advanced over the standard tier's
    4 KB, asked for by name (Intelligent-Tiering has been reported to refuse such a value as too
    large for a standard parameter); up to 4 KB Intelligent-Tiering, which makes a standard
    parameter and leaves one that is already advanced advanced (SSM refuses to make an advanced
    parameter standard again: naming Standard would fail once a large document was stored)."""
    return "Advanced" if len(value.encode("utf-8")) > STANDARD_TIER_BYTES else "Intelligent-Tiering"


class ParameterStore:
    def __init__(self, prefix: str, client: Any = None, key_id: str | None = None):
        self.prefix = prefix.rstrip("/")
        self._client = client
        # The customer managed key SecureStrings are written with (None: the AWS managed aws/ssm).
        # Always given when set: an overwrite without KeyId would move the value to aws/ssm.
        self.key_id = key_id or None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("ssm")
        return self._client

    def name(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def read(self, suffix: str) -> str | None:
        """A String parameter's value (never a SecureString's: nothing here decrypts), or None."""
        return self.read_versioned(suffix)[0]

    def read_versioned(self, suffix: str) -> tuple[str | None, int | None]:
        """A String parameter's value and version; (None, None) when it does not exist."""
        try:
            parameter = self._call("get_parameter", Name=self.name(suffix))["Parameter"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None, None
            raise
        return str(parameter["Value"]), int(parameter["Version"])

    def existing(self, suffixes: Iterable[str]) -> set[str]:
        """Which of these parameters exist, from their metadata (DescribeParameters).

        Not GetParameter(s): with the AWS managed key aws/ssm, a role allowed to get a
        SecureString can always decrypt it, so a grant to check the write key's existence
        would also be a grant to read the key.
        """
        names = {self.name(suffix): suffix for suffix in suffixes}
        found: set[str] = set()
        request: dict[str, Any] = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": list(names)}]}
        while True:
            response = self._call("describe_parameters", **request)
            found.update(names[item["Name"]] for item in response.get("Parameters", []) if item["Name"] in names)
            if not response.get("NextToken"):
                return found
            request["NextToken"] = response["NextToken"]

    def write(self, suffix: str, value: str, *, secure: bool) -> int:
        """Overwrite (or create) the parameter in the tier of `tier_for`; its new version."""
        response = self._call(
            "put_parameter",
            Name=self.name(suffix),
            Value=value,
            Type="SecureString" if secure else "String",
            Overwrite=True,
            Tier=tier_for(value),
            **({"KeyId": self.key_id} if secure and self.key_id else {}),
        )
        return int(response.get("Version", 0))

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in ("ThrottlingException", "TooManyUpdates", "InternalServerError"):
                raise StoreUnavailable("Parameter Store is busy, retry later") from error
            if code in ACCESS_DENIED_CODES:
                raise PermissionDenied(str(error.response["Error"].get("Message", ""))) from error
            raise
        except BotoCoreError as error:
            raise StoreUnavailable("Parameter Store is unreachable, retry later") from error
        return response
