"""The hostile-input generator: `generate(seed, count, api_key)` -> `count` deterministic Cases.

A Case is one HTTP request as bytes on the wire (method, request target, headers, body), spread
over every route and method (wrong methods and unknown routes too): mutated Spec messages,
batches mixing valid and hostile messages, random JSON, malformed JSON, non-UTF-8 bytes, deep
nesting before authentication, a few oversized bodies, hostile Profile API ids and bad or
non-latin-1 credentials. The same seed gives the same cases; case i depends only on (seed, i).

Every message id a case uses starts with `tag_prefix(seed)` and is used by that case alone, so
that a soak can check that a rejected message wrote nothing (`Case.tags`).
"""

from __future__ import annotations

import base64
import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from soak import jsontext, mutations, spec, values

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
TRACKING = ("identify", "track", "page", "screen", "group", "alias")
# (family, path or template, methods the contract accepts, weight)
ROUTES: tuple[tuple[str, str, frozenset[str], int], ...] = (
    ("delivery", "/segment", frozenset({"POST", "PUT", "PATCH"}), 30),
    *(("tracking", f"/v1/{call}", frozenset({"POST"}), 3) for call in TRACKING),
    ("delivery", "/v1/batch", frozenset({"POST"}), 12),
    ("profile", "/v1/users/{id}", frozenset({"GET"}), 8),
    ("profile", "/v1/users/{id}/events", frozenset({"GET"}), 6),
    ("profile", "/v1/accounts/{id}", frozenset({"GET"}), 4),
    ("health", "/health", frozenset({"GET"}), 3),
    ("unknown", "", frozenset(), 5),
)
UNKNOWN_PATHS = (
    b"/",
    b"/v2/track",
    b"/segment/",
    b"/SEGMENT",
    b"/v1",
    b"/v1/",
    b"/v1/users",
    b"/v1/users/",
    b"/v1/identify/extra",
    b"/v1/delete",
    b"/v1/users/a/b/c",
    b"/v1/accounts",
    b"/health/x",
    b"/%00",
    b"/%ff",
    b"/\xff\xfe",
    b"/segment%00",
    b"/.env",
    b"/../../etc/passwd",
    b"/v1/batches?x=%ff",
    "/é/😀".encode(),
    b"/segment;jsessionid=1",
    b"/v1/users/user_id:x/events/more",
    b"/v1/Track",
)
PROFILE_IDS = (
    b"user_id:%00",
    b"user_id:a%00b",
    b"user_id:%23",
    b"user_id:a%23b",
    b"user_id:a#b",
    b"user_id:%ff",
    b"user_id:%fe%ff",
    b"anonymous_id:\xff",
    b"anonymous_id:\xc3\x28",
    b"email:%C3%28",
    b"user_id:%ED%A0%80",
    "user_id:😀".encode(),
    b"user_id:%F0%9F%98%80",
    b"user_id:",
    b"user_id",
    b"",
    b"nobody:x",
    b"email:not-an-email",
    b"user_id:" + b"x" * 3000,
    b"user_id:%",
    b"user_id:%%",
    b"user_id:%2",
    b"user_id:a%2Fb",
    b"%00",
    b"user_id:..",
    b"user_id:%20",
    b"email:A%40EXAMPLE.COM",
    b"user_id:%5Cud800",
    b"anonymous_id:%0d%0a",
    b"user_id:\x7f",
    b"id%23user_id%23x",
    b"user_id:id%23user_id%23x",
    b"email:%00@example.com",
)
LIMITS = (
    b"",
    b"?limit=1",
    b"?limit=0",
    b"?limit=-1",
    b"?limit=501",
    b"?limit=abc",
    b"?limit=1e3",
    b"?limit=99999999999999999999",
    b"?limit=%00",
    b"?limit=%ff",
    b"?limit=",
    b"?limit=1&limit=2",
    b"?limit=5.5",
)
CONTENT_TYPES = (
    b"application/json",
    b"application/json",
    b"application/json",
    b"application/json; charset=utf-8",
    b"text/plain",
    None,
    b"application/octet-stream",
    b"application/x-www-form-urlencoded",
    b"application/json; charset=iso-8859-1",
    b"multipart/form-data; boundary=x",
    b"application/vnd.api+json",
)
MALFORMED = (
    b"{",
    b"}",
    b"[",
    b'{"type":',
    b"{'type':'track'}",
    b'{"a":1,}',
    b"[1,2,]",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'{"a":NaN}',
    b"undefined",
    b'{"type":"track"}{}',
    b'"unterminated',
    b'{"a":01}',
    b'{"a":.5}',
    b'{"a":"\\x41"}',
    b'{"a":"\\ud800"',
    b"\x00",
    b"  ",
    b"true",
    b"null",
    b'"string"',
    b"12",
    b'{"type":"identify","userId":"u"',
    b"\xef\xbb\xbf{}",
    b'{"a":"tab\there"}',
)
OVERSIZED_EVERY = 2_000  # one oversized body per this many cases (a few per soak)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Tag:
    """Paths that must answer 404 afterwards unless the message at `index` was stored.

    `index` is the message's position in a batch, or None when the body is that one message;
    `message_id` is the id it was generated with.
    """

    index: int | None
    references: tuple[str, ...]
    message_id: str


@dataclass(frozen=True)
class Case:
    number: int
    family: str  # delivery | tracking | profile | health | unknown
    kind: str  # what makes it hostile, e.g. "mutated", "batch-mix", "bad-credentials"
    method: str
    target: bytes  # request target as sent: raw non-ASCII bytes possible
    headers: tuple[tuple[str, bytes], ...]
    body: bytes
    tags: tuple[Tag, ...] = ()
    expect: frozenset[int] | None = None  # statuses the contract names for it, when it names any

    def text_target(self) -> str:
        """The target as an HTTP server (http.server, API Gateway) decodes a request line: latin-1."""
        return self.target.decode("latin-1")

    def text_headers(self) -> list[tuple[str, str]]:
        return [(name, value.decode("latin-1")) for name, value in self.headers]


def tag_prefix(seed: int) -> str:
    return f"hx{seed}-"


def basic(key: str | bytes) -> bytes:
    raw = key if isinstance(key, bytes) else key.encode()
    return b"Basic " + base64.b64encode(raw + b":")


def generate(seed: int, count: int, api_key: str) -> list[Case]:
    return [case(seed, number, api_key) for number in range(count)]


def case(seed: int, number: int, api_key: str) -> Case:
    rng = random.Random(f"{seed}/{number}")
    tag = f"{tag_prefix(seed)}{number:06d}"
    if number % OVERSIZED_EVERY == OVERSIZED_EVERY // 2:
        return _oversized(rng, number, tag, api_key)
    family, template, allowed = _route(rng)
    method = rng.choice(sorted(allowed)) if allowed and rng.random() < 0.8 else rng.choice(METHODS)
    if family in ("delivery", "tracking"):
        return _delivery(rng, number, tag, api_key, template, method, allowed)
    if family == "profile":
        return _profile(rng, number, tag, api_key, template, method, allowed)
    target = template.encode() if family == "health" else rng.choice(UNKNOWN_PATHS)
    body = rng.choice((b"", b"", b"{}", b"\xff\xfe", b"[" * 10))
    expect = (frozenset({200}) if method == "GET" else frozenset({405})) if family == "health" else frozenset({404})
    return _case(rng, number, family, "route", method, target, body, api_key, expect=expect)


def _route(rng: random.Random) -> tuple[str, str, frozenset[str]]:
    family, template, allowed, _ = rng.choices(ROUTES, [route[3] for route in ROUTES])[0]
    return family, template, allowed


def _delivery(
    rng: random.Random, number: int, tag: str, api_key: str, path: str, method: str, allowed: frozenset[str]
) -> Case:
    call = path.removeprefix("/v1/") if path.startswith("/v1/") and path != "/v1/batch" else None
    kind = rng.choices(
        ("mutated", "batch-mix", "random-json", "malformed", "non-utf8", "deep", "empty"),
        (40, 20 if call is None else 0, 10, 8, 6, 2, 3),
    )[0]
    tags: tuple[Tag, ...] = ()
    if kind == "mutated":
        body, tags = _mutated(rng, tag, api_key, call)
    elif kind == "batch-mix":
        body, tags = _batch_mix(rng, tag, path)
    else:
        body = _unparsable_or_odd(rng, kind, tag)
    expect = None if method in allowed else frozenset({405})
    family = "tracking" if call else "delivery"
    return _case(rng, number, family, kind, method, path.encode(), body, api_key, tags=tags, expect=expect)


def _mutated(rng: random.Random, tag: str, api_key: str, call: str | None) -> tuple[bytes, tuple[Tag, ...]]:
    """One Spec message with hostile values in random fields (of the route's type on /v1/<call>)."""
    message_kind = call or rng.choice(spec.KINDS)
    tagged = mutations.tagged_message(rng, message_kind, tag)
    mutations.mutate(rng, tagged.body, mutations.protected_fields(message_kind))
    if call and rng.random() < 0.3:
        tagged.body.pop("type", None)  # the Tracking API takes the type from the path
    if call and rng.random() < 0.1:
        tagged.body["writeKey"] = rng.choice((api_key, "wrong", values.wrong_type(rng)))
    body = jsontext.encode(tagged.body, ensure_ascii=rng.random() < 0.7)
    return body, (Tag(None, tagged.references, tagged.message_id),)


def _batch_mix(rng: random.Random, tag: str, path: str) -> tuple[bytes, tuple[Tag, ...]]:
    """A batch mixing valid and hostile messages, as an array or {"batch": [...]}."""
    items = mutations.batch_messages(rng, lambda index: f"{tag}-{index}", rng.choice((2, 3, 5, 10, 20, 50)))
    batch = mutations.wrap_batch(rng, [item for item, _ in items], path)
    tags = tuple(Tag(index, tagged.references, tagged.message_id) for index, (_, tagged) in enumerate(items) if tagged)
    return jsontext.encode(batch, ensure_ascii=rng.random() < 0.7), tags


def _unparsable_or_odd(rng: random.Random, kind: str, tag: str) -> bytes:
    if kind == "random-json":
        return jsontext.encode(rng.choice((values.random_json(rng, 4), _random_fields(rng))), rng.random() < 0.7)
    if kind == "malformed":
        return rng.choice(MALFORMED)
    if kind == "non-utf8":
        return _non_utf8(rng, tag)
    if kind == "deep":
        return jsontext.encode(values.very_deep(rng) if rng.random() < 0.5 else values.deep_array(rng))
    return rng.choice((b"", b"{}", b"[]", b"null", b'{"batch":[]}', b'{"batch":null}', b'{"batch":{}}'))


def _random_fields(rng: random.Random) -> dict[str, Any]:
    """A message-like object whose every field is a random JSON value."""
    fields = ("type", "userId", "anonymousId", "event", "traits", "properties", "context", "timestamp", "batch")
    return {name: values.random_json(rng, 2) for name in fields if rng.random() < 0.6}


def _non_utf8(rng: random.Random, tag: str) -> bytes:
    message = mutations.tagged_message(rng, "identify", tag).body
    choice = rng.randrange(4)
    if choice == 0:  # latin-1 text where UTF-8 is expected
        message["traits"]["name"] = "Zoë Ærøskøbing"
        return jsontext.dumps(message, ensure_ascii=False).encode("latin-1", "replace")
    if choice == 1:  # a lone surrogate written raw (CESU-8 bytes)
        message["traits"]["name"] = "\ud800"
        return jsontext.encode(message, ensure_ascii=False)
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.choice((1, 16, 300))))
    return b'{"type":"track","userId":"\xff\xfe","event":"\xc0\xaf"}'


def _profile(
    rng: random.Random, number: int, tag: str, api_key: str, template: str, method: str, allowed: frozenset[str]
) -> Case:
    reference = rng.choice(PROFILE_IDS) if rng.random() < 0.85 else f"user_id:{tag}-nobody".encode()
    target = template.encode().replace(b"{id}", reference)
    if template.startswith("/v1/accounts/"):
        target = b"/v1/accounts/" + reference.partition(b":")[2] if rng.random() < 0.5 else target
    if template.endswith("/events"):
        target += rng.choice(LIMITS)
    body = b"" if rng.random() < 0.8 else rng.choice((b"{}", b"\xff", b'{"a":1e400}'))
    # 200: such a user exists; 404 for a wrong method too when the id's bytes break the route
    expect = frozenset({200, 400, 404}) if method in allowed else frozenset({404, 405})
    return _case(rng, number, "profile", "profile-id", method, target, body, api_key, expect=expect)


def _oversized(rng: random.Random, number: int, tag: str, api_key: str) -> Case:
    """Bodies past the contract's limits (5 MiB, 4,000 messages), and one large body within them."""
    variant = (number // OVERSIZED_EVERY) % 4
    tags: tuple[Tag, ...] = ()
    items: list[dict[str, Any]]
    if variant == 0:  # one message, 5 MiB + a bit
        message = mutations.tagged_message(rng, "track", tag).body
        message["properties"]["blob"] = "x" * (5 * MIB + 1)
        tags = (Tag(None, (f"/v1/users/anonymous_id:{tag}",), f"{tag}-m"),)
        body, expect = jsontext.encode(message), {413}
    elif variant == 1:  # 4,001 small messages
        items = [
            {"type": "track", "anonymousId": f"{tag}-{i}", "event": "E", "messageId": f"{tag}-{i}-m"}
            for i in range(4_001)
        ]
        body, expect = jsontext.encode(items), {413}
        tags = tuple(Tag(i, (f"/v1/users/anonymous_id:{tag}-{i}",), f"{tag}-{i}-m") for i in (0, 2_000, 4_000))
    elif variant == 2:  # raw bytes past 5 MiB, not even JSON, no credentials checked yet
        body, expect = b"[" + b" " * (6 * MIB) + b"]", {413}
    else:  # about 1 MiB: above 512 KB, within the contract's 5 MiB
        items = [
            {
                "type": "track",
                "anonymousId": f"{tag}-{i}",
                "event": "Big",
                "messageId": f"{tag}-{i}-m",
                "properties": {"pad": "p" * 1000},
            }
            for i in range(1_000)
        ]
        body, expect = jsontext.encode({"batch": items}), {200}
    case = _case(
        rng,
        number,
        "delivery",
        "oversized",
        "POST",
        b"/segment",
        body,
        api_key,
        tags=tags,
        expect=frozenset(expect),
        valid_credentials=True,
    )
    if lambda_refuses(case):
        # As on AWS: the event (the body escaped inside it, or base64 for a binary media type) is
        # over Lambda's 6 MB invoke limit, so API Gateway answers 500 without running the function
        # (README: the batch size avoids it).
        return dataclasses.replace(case, expect=frozenset({500}))
    return case


def lambda_refuses(case: Case) -> bool:
    """Whether API Gateway's event for this request is over Lambda's synchronous invoke limit."""
    from local_stack.api import build_event
    from local_stack.lambda_runtime import MAX_REQUEST_BYTES, payload_size

    headers = [(name, value.decode("latin-1")) for name, value in case.headers]
    event = build_event(case.method, case.target.decode("latin-1"), headers, case.body)
    return (payload_size(event) or 0) > MAX_REQUEST_BYTES


def _credentials(rng: random.Random, api_key: str) -> tuple[bytes | None, bool]:
    """An Authorization header (None: none) and whether it holds the API key."""
    if rng.random() < 0.7:
        return rng.choice(
            (basic(api_key),) * 8 + (basic(api_key).replace(b"Basic", b"BASIC"), b"basic  " + basic(api_key)[6:] + b" ")
        ), True
    return rng.choice(
        (
            None,
            basic("wrong-key"),
            b"Basic \xff",
            b"Basic \xff\xfe\xfd",
            b"Basic " + "🔑".encode(),
            b"Basic " + "clé".encode("latin-1"),
            b"Basic " + base64.b64encode(b"\xff\xfe:"),
            b"Basic " + base64.b64encode("ключ:".encode()),
            b"Basic",
            b"Basic ",
            b"Bearer token",
            b"Digest x",
            b"Basic !!!!",
            b"Basic " + b"A" * 5000,
            b"\xff\xff",
            b"Basic " + base64.b64encode(b":"),
            basic(api_key) + b"\xff",
            basic(api_key + "\u00e9"),
        )
    ), False


def _case(
    rng: random.Random,
    number: int,
    family: str,
    kind: str,
    method: str,
    target: bytes,
    body: bytes,
    api_key: str,
    *,
    tags: tuple[Tag, ...] = (),
    expect: frozenset[int] | None = None,
    valid_credentials: bool = False,
) -> Case:
    headers: list[tuple[str, bytes]] = [("Host", b"127.0.0.1")]
    content_type = rng.choice(CONTENT_TYPES)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    authorization, valid = (basic(api_key), True) if valid_credentials else _credentials(rng, api_key)
    if authorization is not None:
        headers.append(("Authorization", authorization))
    if not valid and family not in ("health", "unknown"):
        kind = f"{kind}+bad-credentials"
        if expect is None or 405 not in expect:  # a wrong method is answered before credentials are read
            # 404: the id's bytes break the route, which is matched before credentials are read
            expect = frozenset({401, 404}) if family == "profile" else None
    if rng.random() < 0.05:
        headers.append(("X-Signature", rng.choice((b"00", b"\xff", "é".encode(), b"z" * 40))))
    if rng.random() < 0.03:
        headers.append(("Content-Encoding", b"gzip"))
    if rng.random() < 0.05:
        headers.append(("User-Agent", rng.choice(("Zoë/1.0".encode(), "😀".encode(), b"\xff"))))
    return Case(number, family, kind, method, target, tuple(headers), body, tags, expect)
