"""The replay and resync jobs: one item each (`replay`/`job`, `resync`/`job`) that is at once the
lock, the cursor and the counts, written only under conditions; and resync's settings documents
by view id. The profiles' sync items are in syncs.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from segment_connector.store.table import Table, serialize, serialize_value

RESYNC_KEY = {"pk": {"S": "resync"}, "sk": {"S": "job"}}
REPLAY_KEY = {"pk": {"S": "replay"}, "sk": {"S": "job"}}


class ReplayJobs:
    """The dead-letter replay's job item."""

    def __init__(self, table: Table):
        self.table = table

    def job(self) -> dict[str, Any] | None:
        return self.table.get(REPLAY_KEY)

    def start(self, job: dict[str, Any], now: float) -> bool:
        """Start a replay: only when none runs (a running job whose lease expired is stalled and
        replaced). The conditional write is the lock: of two starts at once, one wins."""
        return self.table.conditional(
            "put_item",
            Item=serialize({**job, **{name: value["S"] for name, value in REPLAY_KEY.items()}, "kind": "replayjob"}),
            ConditionExpression="attribute_not_exists(pk) OR #status <> :running OR lease_until < :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":running": {"S": "running"}, ":now": {"N": str(now)}},
        )

    def take_lease(self, job_id: str, token: str, owner: str, now: float, until: float) -> bool:
        """The invocation handed `token` (or any, once the lease expired) works job `job_id` until `until`."""
        return self.table.update_if(
            REPLAY_KEY,
            "SET lease_owner = :owner, lease_until = :until",
            "id = :id AND #status = :running AND (lease_owner = :token OR lease_until < :now)",
            {
                ":owner": {"S": owner},
                ":until": {"N": str(until)},
                ":id": {"S": job_id},
                ":running": {"S": "running"},
                ":token": {"S": token},
                ":now": {"N": str(now)},
            },
            {"#status": "status"},
        )

    def update(self, job_id: str, owner: str, fields: dict[str, Any], add: dict[str, int] | None = None) -> bool:
        """SET `fields` and ADD `add` while `owner` holds the lease of job `job_id` (False: it lost it)."""
        names = {f"#f{index}": name for index, name in enumerate(fields)}
        values = {f":f{index}": serialize_value(value) for index, value in enumerate(fields.values())}
        added = {f"#a{index}": name for index, name in enumerate(add or {})}
        values.update({f":a{index}": {"N": str(value)} for index, value in enumerate((add or {}).values())})
        expression = "SET " + ", ".join(f"{name} = {name.replace('#', ':')}" for name in names)
        if added:
            expression += " ADD " + ", ".join(f"{name} {name.replace('#', ':')}" for name in added)
        return self.table.update_if(
            REPLAY_KEY,
            expression,
            "id = :id AND lease_owner = :owner",
            {**values, ":id": {"S": job_id}, ":owner": {"S": owner}},
            {**names, **added},
        )


class ResyncJobs:
    """The resync's job item (its segments' progress and counters) and its settings documents."""

    def __init__(self, table: Table):
        self.table = table

    def job(self) -> dict[str, Any] | None:
        return self.table.get(RESYNC_KEY)

    def start(self, job: dict[str, Any], replaces: str | None) -> bool:
        """Write a new job in place of the one with id `replaces` (None: no job yet); False when
        another start got there first."""
        item = {**job, "pk": RESYNC_KEY["pk"]["S"], "sk": RESYNC_KEY["sk"]["S"], "kind": "resync"}
        if replaces is None:
            condition, values = "attribute_not_exists(pk)", None
        else:
            condition, values = "id = :previous", {":previous": {"S": replaces}}
        return self.table.conditional(
            "put_item",
            Item=serialize(item),
            ConditionExpression=condition,
            **({"ExpressionAttributeValues": values} if values else {}),
        )

    def record_progress(
        self,
        resync_id: str,
        segment: int,
        progress: dict[str, Any],
        counters: dict[str, int],
        segment_done: bool,
        now: str,
        expected_resume: str | None = None,
    ) -> dict[str, Any] | None:
        """Save one segment's progress and add to the counters, if `resync_id` is still the running
        job (and, with `expected_resume`, the segment still resumes where this page started: one
        invocation per page wins); the job after the update, or None when it was superseded, ended
        or the page was recorded by another invocation."""
        names = {"#progress": "progress", "#segment": str(segment), "#status": "status"}
        values: dict[str, Any] = {
            ":id": {"S": resync_id},
            ":running": {"S": "running"},
            ":now": {"S": now},
            ":progress": serialize_value(progress),
        }
        adds = []
        for index, (name, value) in enumerate({**counters, **({"segments_done": 1} if segment_done else {})}.items()):
            names[f"#c{index}"] = name
            values[f":c{index}"] = {"N": str(value)}
            adds.append(f"#c{index} :c{index}")
        expression = "SET #progress.#segment = :progress, updated_at = :now" + (
            f" ADD {', '.join(adds)}" if adds else ""
        )
        condition = "id = :id AND #status = :running"
        if expected_resume is not None:
            names["#resume"] = "resume"
            values[":resume"] = {"S": expected_resume}
            condition += " AND #progress.#segment.#resume = :resume"
        return self.table.updated_if(RESYNC_KEY, expression, condition, values, names)

    def count_attempt(self, resync_id: str, segment: int, now: str) -> dict[str, Any] | None:
        """One more failed attempt of a segment (its recorded progress is kept as it is); the job
        after the update, or None when `resync_id` is no longer the running job."""
        names = {"#progress": "progress", "#segment": str(segment), "#status": "status", "#attempts": "attempts"}
        values = {":id": {"S": resync_id}, ":running": {"S": "running"}, ":now": {"S": now}, ":one": {"N": "1"}}
        attempts = "#progress.#segment.#attempts"
        return self.table.updated_if(
            RESYNC_KEY,
            f"SET {attempts} = if_not_exists({attempts}, :zero) + :one, #progress.#segment.#at = :now",
            "id = :id AND #status = :running",
            {**values, ":zero": {"N": "0"}},
            {**names, "#at": "at"},
        )

    def touch_segments(self, resync_id: str, seen: dict[int, str], now: str) -> bool:
        """Claim the resumption of segments (`seen`: each one's `at` as read): their `at` becomes
        `now` if nobody touched them since; False when another resumer or a worker got there first."""
        names: dict[str, str] = {"#progress": "progress", "#status": "status", "#at": "at"}
        values: dict[str, Any] = {":id": {"S": resync_id}, ":running": {"S": "running"}, ":now": {"S": now}}
        sets, conditions = [], ["id = :id", "#status = :running"]
        for index, (segment, at) in enumerate(seen.items()):
            names[f"#s{index}"] = str(segment)
            values[f":a{index}"] = {"S": at}
            sets.append(f"#progress.#s{index}.#at = :now")
            at_path = f"#progress.#s{index}.#at"
            conditions.append(f"({at_path} = :a{index}" + (f" OR attribute_not_exists({at_path}))" if not at else ")"))
        return (
            self.table.updated_if(RESYNC_KEY, f"SET {', '.join(sets)}", " AND ".join(conditions), values, names)
            is not None
        )

    def end(self, resync_id: str, status: str, fields: dict[str, Any]) -> bool:
        """Mark the running job `resync_id` ended (done/failed) and set `fields`; False if it was not running."""
        names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
        values = {
            ":id": {"S": resync_id},
            ":running": {"S": "running"},
            ":status": {"S": status},
            **{f":f{i}": serialize_value(value) for i, value in enumerate(fields.values())},
        }
        sets = ", ".join(["#status = :status"] + [f"#f{i} = :f{i}" for i in range(len(fields))])
        return self.table.update_if(RESYNC_KEY, f"SET {sets}", "id = :id AND #status = :running", values, names)

    def put_views(self, views: dict[str, str]) -> None:
        """Keep settings documents by view id (what a profile's synced view refers to)."""
        for view, document in views.items():
            item = {"pk": RESYNC_KEY["pk"]["S"], "sk": f"view#{view}", "kind": "resync_view", "settings": document}
            self.table.put_item(item)

    def views(self, views: Iterable[str]) -> dict[str, str]:
        keys = [{"pk": RESYNC_KEY["pk"], "sk": {"S": f"view#{view}"}} for view in dict.fromkeys(views)]
        return {raw["sk"].removeprefix("view#"): raw["settings"] for raw in self.table.batch_get(keys)}
