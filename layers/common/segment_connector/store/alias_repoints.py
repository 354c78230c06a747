"""Aliases pointed again at their profile after it moved or absorbed another profile.

A profile that moves (anonymous -> known) or is merged into another leaves an alias at its old pk
in the change's transaction; the aliases of its other identities still point at that old pk, so a
lookup through them would follow a chain (alias -> old pk -> profile). After the commit, each is
put again pointing at the profile, on condition that it is still an alias of one of the retired
pks: an alias that moved on, was deleted (GDPR sweep) or became a profile is left as it is.

Best effort and idempotent: the transaction already made the profile correct and every chain
still resolves (identities.MAX_ALIAS_HOPS); a failure here only leaves a chain, which the next move
of the same profile does not repair. A change names at most MAX_REPOINTS (inbound/identity.py),
the newest identities first, so one message never writes more than that.
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from segment_connector.domain.errors import ConnectorError
from segment_connector.domain.models.items import IdentityAlias
from segment_connector.store.table import Table, serialize

log = logging.getLogger(__name__)


def repoint(table: Table, pks: list[str], retired: list[str], profile_pk: str) -> int:
    """Point the aliases at `pks` that point at one of `retired` at `profile_pk`; how many did."""
    if not pks or not retired:
        return 0
    values = {":alias": {"S": "alias"}} | {f":r{index}": {"S": pk} for index, pk in enumerate(retired)}
    condition = f"kind = :alias AND profile_pk IN ({', '.join(name for name in values if name != ':alias')})"
    done = 0
    for pk in pks:
        try:
            table.call(
                "put_item",
                TableName=table.name,
                Item=serialize(IdentityAlias(pk=pk, profile_pk=profile_pk).to_item()),
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
            done += 1
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                log.warning("an alias was not repointed: %s", error.response["Error"]["Code"])
        except ConnectorError as error:  # the table busy: the chain stays, still resolved
            log.warning("aliases not repointed at %s (%d left): %r", profile_pk, len(pks) - done, error)
            break
    return done
