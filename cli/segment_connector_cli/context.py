"""Command: what every command shares: its arguments, its target, and the adapters onto it.

The commands reach AWS only through here: SSM through the package's ParameterStore (the console's
adapter), the table through ProfileStore, the functions through Lambda Invoke (target.py). None of
them holds a boto3 client of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from segment_connector.ops.settings_document import SETTINGS_PARAMETER
from segment_connector.ops.status import StatusWarning, status_warnings
from segment_connector_cli.errors import CliError
from segment_connector_cli.target import Invoker, Target, resolve

if TYPE_CHECKING:
    from segment_connector.runtime.parameter_store import ParameterStore
    from segment_connector.store.profile_store import ProfileStore

KEYS = ("api-key", "write-key", "shared-secret", "admin-key", "profile-token")


class Command:
    def __init__(self, args: argparse.Namespace, invoker: Invoker | None):
        self.args = args
        self._invoker = invoker
        self._target: Target | None = None
        if args.local and (args.stack_name or args.region or args.profile):
            raise CliError("--local does not take --stack-name, --region or --profile")

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve(
                local=self.args.local,
                stack_name=self.args.stack_name,
                region=self.args.region,
                profile=self.args.profile,
            )
        return self._target

    def invoke(self, function: str | None, payload: dict[str, Any]) -> Any:
        if not function:
            raise CliError(f"the {self.target.label} has no such function: deploy the current template")
        if self._invoker is not None:
            return self._invoker(function, payload)
        return self.target.invoke(function, payload)

    # -- SSM: the console's ParameterStore -------------------------------------------------------

    def parameters(self) -> ParameterStore:
        """The target's parameters; SecureStrings written under the stack's customer managed key, if any."""
        from segment_connector.runtime.parameter_store import ParameterStore

        target = self.target
        return ParameterStore(target.parameter_prefix, target.client("ssm"), key_id=target.parameter_key)

    def settings_text(self) -> str | None:
        return self.settings_parameter()[0]

    def settings_parameter(self) -> tuple[str | None, int | None]:
        """The stored settings text and its version (None, None when the parameter does not exist)."""
        return self.parameters().read_versioned(SETTINGS_PARAMETER)

    def existing_keys(self) -> set[str]:
        """Which of the keys exist (their names only: no value is read)."""
        return self.parameters().existing(KEYS)

    def warnings(
        self, document: Mapping[str, Any], keys: set[str] | None = None, received_traits: Collection[str] = ()
    ) -> list[StatusWarning]:
        keys = self.existing_keys() if keys is None else keys
        return status_warnings(
            document,
            has_write_key="write-key" in keys,
            has_api_key="api-key" in keys,
            prefix=self.target.parameter_prefix,
            received_traits=received_traits,
        )

    # -- the table: ProfileStore -------------------------------------------------------------------

    def store(self) -> ProfileStore:
        from segment_connector.store.profile_store import ProfileStore

        return ProfileStore(self.target.table_name, self.target.client("dynamodb"))
