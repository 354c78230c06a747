"""ParameterStore: the connector's SSM parameters as the console reads and writes them.

The functions read parameters through config.py (cached); this is the uncached path of the one
function that may write: the console (settings and the write key).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from segment_connector.errors import StoreUnavailable


class ParameterStore:
    def __init__(self, prefix: str, client: Any = None):
        self.prefix = prefix.rstrip("/")
        self._client = client

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
        try:
            return str(self._call("get_parameter", Name=self.name(suffix))["Parameter"]["Value"])
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise

    def existing(self, suffixes: Iterable[str]) -> set[str]:
        """Which of these parameters exist: one GetParameters without decryption (no value is used)."""
        names = {self.name(suffix): suffix for suffix in suffixes}
        response = self._call("get_parameters", Names=list(names), WithDecryption=False)
        return {names[parameter["Name"]] for parameter in response.get("Parameters", [])}

    def write(self, suffix: str, value: str, *, secure: bool) -> int:
        """Overwrite (or create) the parameter; its new version. Intelligent-Tiering: a document
        over the standard tier's 4 KB becomes an advanced parameter instead of failing."""
        response = self._call(
            "put_parameter",
            Name=self.name(suffix),
            Value=value,
            Type="SecureString" if secure else "String",
            Overwrite=True,
            Tier="Intelligent-Tiering",
        )
        return int(response.get("Version", 0))

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ThrottlingException", "TooManyUpdates", "InternalServerError"):
                raise StoreUnavailable("Parameter Store is busy, retry later") from error
            raise
        except BotoCoreError as error:
            raise StoreUnavailable("Parameter Store is unreachable, retry later") from error
        return response
