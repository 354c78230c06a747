"""The console's logic: what its pages show and the changes it may make (settings, write key).

Pure of HTTP and of boto3: the handler passes the stores, the invoker and the secrets it read.
Nothing here returns a key's value but the `Authorization` header Segment needs, built from the
API key. Everything users sent (traits, event names) is returned as data; the page renders it as
text only.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from segment_connector.domain.errors import BadRequest, NotFound, ReplayFailed, SettingsInvalid, SettingsRejected
from segment_connector.domain.explain import json_error, summary
from segment_connector.domain.models.settings import ConnectorSettings
from segment_connector.ops.dashboard_counts import CountsCache
from segment_connector.ops.settings_document import MAX_SETTINGS_BYTES as MAX_SETTINGS_BYTES  # its limit, for callers
from segment_connector.ops.settings_document import (
    SETTINGS_PARAMETER,
    parse_settings_text,
    size_errors,
    stored_text,
    validate_document,
    with_defaults,
    write_settings,
)
from segment_connector.ops.status import computed_trait_names, status_warnings
from segment_connector.runtime import config
from segment_connector.runtime.invoker import FunctionFailed, FunctionInvoker
from segment_connector.runtime.parameter_store import ParameterStore
from segment_connector.store import deletions_pending, inventory
from segment_connector.store import jobs as job_items
from segment_connector.store.profile_store import ProfileStore
from segment_connector.views import jobs

# Every session's first call is the dashboard (then the status the page polls): console() imports
# what they read (the settings document, the jobs, the inventory and the deletions in progress). What
# only a later operation needs is imported by its first call: the preview's item models, the user
# lookup's profile views and outbound rules (with the table's profile and event stores).
DASHBOARD_READS = (deletions_pending, inventory, job_items)

COUNTED_KINDS = {"users": "user", "accounts": "account", "events": "event"}
COUNT_SECONDS = 8.0  # the dashboard's counts are estimated past this (API Gateway waits 30 s)
COUNT_SEGMENTS = 16
DEAD_LETTERS_SHOWN = 50
SAMPLE_PER_SEGMENT = 250  # users (or accounts, events) per scan segment of a sample
SAMPLE_SEGMENTS = 4
USER_EVENTS_SHOWN = 20
MAX_NAMES = 500  # names offered per picker (the most frequent in the sample)
MAX_NAME_LENGTH = 200  # longer names (senders choose them) are left out of the pickers: type them in
NAME_DEPTH = 4  # nested traits offered down to a.b.c.d
MAX_WRITE_KEY_BYTES = 1024
PAGE_AND_SCREEN = ("page", "screen")


class Console:
    """What the console's operations work with (one per invocation; the stores are shared). A plain
    class, not a dataclass: console() makes it on the first API request, and a frozen dataclass
    compiles its methods there (~0.5 ms)."""

    __slots__ = ("counts_cache", "invoker", "outbound_function", "parameters", "store")

    def __init__(
        self,
        store: ProfileStore,
        parameters: ParameterStore,
        invoker: FunctionInvoker,
        outbound_function: str,
        counts_cache: CountsCache | None = None,
    ) -> None:
        self.store = store
        self.parameters = parameters
        self.invoker = invoker
        self.outbound_function = outbound_function
        self.counts_cache = counts_cache or CountsCache()  # the warm function's, to share reads

    # -- dashboard ---------------------------------------------------------------------------

    def dashboard(self, api_key: str | None, webhook_url: str) -> dict[str, Any]:
        document, _ = self._settings_document()
        return {
            "webhook_url": webhook_url,
            "auth_header": authorization_header(api_key),
            "warnings": self._warnings(document, has_api_key=api_key is not None),
            "counts": self._counts(),
            "deletions": deletions_pending.in_progress(self.store).public(datetime.now(UTC)),
            **self.status(),
            "dead_letters": [
                _dead_letter_summary(letter) for letter in self.store.inventory.oldest_dead_letters(DEAD_LETTERS_SHOWN)
            ],
        }

    def status(self) -> dict[str, Any]:
        """The resync and replay jobs only (two reads of one item each, no scan): what the page
        polls while a job runs."""
        return {
            "resync": jobs.resync_view(self.store.resync.job()),
            "replay": jobs.replay_view(self.store.replay.job(), time.time()),
        }

    def _counts(self) -> dict[str, Any]:
        """Items per kind from the cache (a scan at most once a minute), the dead letters counted now."""
        taken = self.counts_cache.get(
            self.store.table,
            lambda: self.store.inventory.count_kinds(COUNTED_KINDS.values(), COUNT_SEGMENTS, seconds=COUNT_SECONDS),
        )
        counts: dict[str, Any] = {label: taken.counts[kind] for label, kind in COUNTED_KINDS.items()}
        counts["dead_letters"] = self.store.inventory.count_dead_letters()
        counts["exact"] = taken.counts.exact
        counts["counted_at"] = taken.counted_at
        counts["age_seconds"] = round(taken.age)
        return counts

    def replay(self) -> dict[str, Any]:
        """OutboundFunction starts a replay of the dead letters (it holds the write key and the
        client) and answers at once: `started` and the job's summary; the dashboard shows its progress."""
        try:
            answer = self.invoker.invoke(self.outbound_function, {"action": "replay"})
        except FunctionFailed as error:
            raise ReplayFailed(f"the replay failed (the dead letters are kept): {error}") from None
        return answer if isinstance(answer, dict) else {"answer": answer}

    # -- settings ------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        document, errors = self._settings_document()
        view: dict[str, Any] = {
            "settings": with_defaults(document),
            "write_key_set": "write-key" in self.parameters.existing(["write-key"]),
        }
        if errors:
            view["errors"] = errors
        return view

    def save_settings(self, body: bytes, has_api_key: bool) -> dict[str, Any]:
        """Validate with the functions' model and store; a change starts a resync (EventBridge)."""
        document = json_object(body, "the settings document")
        errors = validate_document(document)
        if errors:
            raise SettingsRejected(f"nothing was saved: fix the settings first ({summary(errors)})", errors)
        text = stored_text(document)
        too_large = size_errors(text)
        if too_large:
            raise SettingsRejected(f"nothing was saved: {summary(too_large)}", too_large)
        changed = self.parameters.read(SETTINGS_PARAMETER) != text
        version = write_settings(self.parameters, text) if changed else None
        return {
            "saved": changed,
            "version": version,
            "resync": "started" if changed else "unchanged",
            "settings": with_defaults(document),
            "warnings": self._warnings(document, has_api_key=has_api_key),
        }

    def set_write_key(self, body: bytes) -> dict[str, Any]:
        value = json_object(body, "the body").get("write_key")
        if not isinstance(value, str) or not value.strip():
            raise BadRequest("write_key must be a non-empty string", [{"field": "write_key", "error": "missing"}])
        if len(value.encode("utf-8", "surrogatepass")) > MAX_WRITE_KEY_BYTES:
            raise BadRequest(
                "write_key is too long", [{"field": "write_key", "error": f"at most {MAX_WRITE_KEY_BYTES} bytes"}]
            )
        self.parameters.write("write-key", value.strip(), secure=True)
        return {"write_key_set": True}

    # -- names for the pickers -------------------------------------------------------------------

    def catalogue(self) -> dict[str, Any]:
        """Trait and event names from a bounded sample of the table, read on demand (no write on
        the inbound path): the most frequent first, at most MAX_NAMES each."""
        # Two samples: events outnumber profiles, and would crowd them out of a single one.
        items = self.store.inventory.sample_kinds(["user", "account"], SAMPLE_PER_SEGMENT, SAMPLE_SEGMENTS)
        items += self.store.inventory.sample_kinds(["event"], SAMPLE_PER_SEGMENT, SAMPLE_SEGMENTS)
        traits: Counter[str] = Counter()
        account_traits: Counter[str] = Counter()
        events: Counter[str] = Counter()
        sampled: Counter[str] = Counter()
        for item in items:
            kind = item.get("kind")
            sampled[str(kind)] += 1
            if kind == "user":
                traits.update(trait_paths(item.get("traits")))
            elif kind == "account":
                account_traits.update(trait_paths(item.get("traits")))
            elif kind == "event":
                name = item.get("event") if item.get("type") == "track" else item.get("type")
                if isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH:
                    events[name] += 1
        for name in PAGE_AND_SCREEN:
            events.setdefault(name, 0)
        return {
            "traits": _most_frequent(traits),
            "account_traits": _most_frequent(account_traits),
            "events": _most_frequent(events),
            "sampled": {"users": sampled["user"], "accounts": sampled["account"], "events": sampled["event"]},
        }

    # -- segments --------------------------------------------------------------------------------

    def preview(self, body: bytes) -> dict[str, Any]:
        """How many profiles of a sample a rule matches, and a few of them (ops/preview.py)."""
        from segment_connector.ops import preview

        return preview.preview(self.store, self._valid_settings, body)

    # -- users -----------------------------------------------------------------------------------

    def find_user(self, query: str | None) -> dict[str, Any]:
        """`user_id:x`, `anonymous_id:x`, `email:x`, or a bare value tried as each of them."""
        from segment_connector.views import profiles

        text = (query or "").strip()
        if not text:
            raise BadRequest("q is empty: give a user_id, anonymous_id or email", [{"field": "q", "error": "empty"}])
        settings = self._valid_settings()
        candidates = profiles.reference_candidates(text)
        for kind, value in candidates:
            reference = f"{kind}:{quote(value, safe='')}"
            try:
                user = profiles.user_view(self.store, settings, reference)
            except NotFound:
                continue
            account = None
            if user["account_id"]:
                try:
                    account = profiles.account_view(self.store, settings, quote(user["account_id"], safe=""))
                except NotFound:
                    account = None
            events = profiles.user_events(self.store, reference, str(USER_EVENTS_SHOWN))
            return {
                "user": user,
                "events": events,
                "account": account,
                "sent": _what_is_sent(settings, user),
                "computed_traits": sorted(t.name for t in settings.computed_traits if t.name in user["traits"]),
                "profile_api": {"traits_path": segment_traits_path(user)},
            }
        raise NotFound(profiles.not_found_message(text, candidates))

    # -- helpers -----------------------------------------------------------------------------------

    def _settings_document(self) -> tuple[dict[str, Any], list[dict[str, str]]]:
        text = self.parameters.read("settings")
        if text is None:
            return {}, [{"field": "(document)", "error": f"{self.parameters.name('settings')} does not exist"}]
        document, errors = parse_settings_text(text)
        return document or {}, errors

    def _valid_settings(self) -> ConnectorSettings:
        """The stored settings, or the defaults while they are missing or invalid (a lookup still works)."""
        try:
            return config.parse_settings(self.parameters.read("settings"))
        except SettingsInvalid:
            return ConnectorSettings()

    def _warnings(self, document: Mapping[str, Any], *, has_api_key: bool) -> list[dict[str, str]]:
        existing = self.parameters.existing(["write-key"])
        return list(
            status_warnings(
                document,
                has_write_key="write-key" in existing,
                has_api_key=has_api_key,
                prefix=self.parameters.prefix,
                received_traits=self._received_traits(document),
            )
        )

    def _received_traits(self, document: Mapping[str, Any]) -> set[str]:
        """The computed traits' names that users send as traits too, in a sample of the profiles
        (computed_trait_shadows); no read when no trait is computed."""
        names = computed_trait_names(document)
        if not names:
            return set()
        from segment_connector.views.profiles import received_trait_names

        return received_trait_names(self.store, names)


def segment_traits_path(user: Mapping[str, Any]) -> str:
    """The user's traits on the Segment-compatible Profile API (the console shows it as a curl
    line), by its best id: user_id, else its first anonymous_id, else its email."""
    if user.get("user_id"):
        kind, value = "user_id", user["user_id"]
    elif user.get("anonymous_ids"):
        kind, value = "anonymous_id", user["anonymous_ids"][0]
    else:
        kind, value = "email", user.get("email") or ""
    space = quote(config.space_id(), safe="")
    return f"/v1/spaces/{space}/collections/users/profiles/{kind}:{quote(str(value), safe='@')}/traits"


def authorization_header(api_key: str | None) -> str | None:
    """What Segment's destination sends: Basic auth with the API key as user name, no password."""
    if not api_key:
        return None
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode("ascii")


def trait_paths(traits: Any, prefix: str = "", depth: int = 1) -> list[str]:
    """Dotted paths of a profile's traits: nested objects down to NAME_DEPTH, anything else a leaf."""
    if not isinstance(traits, Mapping):
        return []
    paths: list[str] = []
    for name, value in traits.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and value and depth < NAME_DEPTH:
            paths.extend(trait_paths(value, f"{path}.", depth + 1))
        else:
            paths.append(path)
    return paths


def _what_is_sent(settings: ConnectorSettings, user: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the user is in the User Filter and the traits its identify carries to Segment."""
    from segment_connector.domain.outbound_view import Rules

    rules = Rules(settings)
    in_filter = rules.in_filter(user["segments"])
    return {
        "in_user_filter": in_filter,
        "identify_traits": rules.sent_traits(user["traits"], user["segments"]) if in_filter else None,
    }


def _most_frequent(counter: Counter[str]) -> list[str]:
    """At most MAX_NAMES names of at most MAX_NAME_LENGTH characters: the answer stays small
    whatever names senders made up."""
    offered = [(name, count) for name, count in counter.items() if len(name) <= MAX_NAME_LENGTH]
    return [name for name, _ in sorted(offered, key=lambda pair: (-pair[1], pair[0]))[:MAX_NAMES]]


def json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body or b"null")
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        problem = json_error(error) if isinstance(error, ValueError) else "not valid JSON: nested too deeply"
        raise BadRequest(f"{what} is {problem}", [{"field": "(body)", "error": problem}]) from None
    if not isinstance(document, dict):
        raise BadRequest(f"{what} must be a JSON object", [{"field": "(body)", "error": "not an object"}])
    return document


def _dead_letter_summary(letter: Mapping[str, Any]) -> dict[str, Any]:
    payload = letter.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    sk = str(letter.get("sk", ""))
    return {
        "message_id": letter.get("message_id"),
        "reason": letter.get("reason"),
        "at": sk.partition("#")[0],
        "type": payload.get("type"),
        "user_id": payload.get("userId") or payload.get("anonymousId"),
    }
