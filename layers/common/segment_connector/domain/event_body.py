"""An event's `properties` and `context` as the table keeps them: one compressed JSON document, the
attribute `body` (issue 15's budgets: a browser's context is most of an event's size, and DynamoDB
bills writes per started KB).

Format: one version byte, then raw DEFLATE of the compact JSON `{"properties": ..., "context": ...}`
with a preset dictionary of what Segment messages commonly carry (the Spec's context and e-commerce
field names, analytics.js and browser user-agent fragments). Version 1's dictionary never changes:
a new dictionary is a new version, and every version stays readable.
"""

from __future__ import annotations

import base64
import json
import zlib
from decimal import Decimal
from typing import Any

VERSION = 1
_FRAGMENTS_V1 = (
    '{"context":{"ip":"', '"library":{"name":"analytics.js","version":"', '"library":{"name":"analytics-node",',
    '"library":{"name":"analytics-python","version":"', '"library":{"name":"analytics-ios","version":"',
    '"library":{"name":"analytics-android","version":"', '"locale":"en-US"', '"timezone":"America/',
    '"timezone":"Europe/',
    '"page":{"path":"/', '"referrer":"https://www.google.com/', '"search":"?', '"title":"', '"url":"https://',
    '"userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/',
    ' Safari/537.36"', '(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/',
    '(iPhone; CPU iPhone OS ', ' like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/',
    ' Mobile/15E148 Safari/604.1"', '(Linux; Android ', ' Mobile Safari/537.36"', ' Firefox/', ' Edg/',
    '"campaign":{"name":"', '"source":"', '"medium":"', '"term":"', '"content":"', '"os":{"name":"', '"version":"',
    '"device":{"type":"', '"manufacturer":"', '"model":"', '"advertisingId":"', '"adTrackingEnabled":', '"id":"',
    '"screen":{"width":', '"height":', '"density":', '"userAgentData":{"brands":[{"brand":"', '"Chromium","version":"',
    '"Google Chrome","version":"', '"Not_A Brand","version":"', '"mobile":false,"platform":"Windows"}', '"mobile":true',
    '"platform":"macOS"', '"instance":{"id":"', '"properties":{', '"product_id":"', '"sku":"', '"category":"',
    '"name":"', '"brand":"', '"variant":"', '"price":', '"quantity":', '"currency":"USD"', '"currency":"EUR"',
    '"value":', '"revenue":', '"order_id":"', '"products":[{', '"image_url":"https://', '"coupon":"',
    '"shipping":', '"tax":', '"subtotal":', '"total":', '"affiliation":"', '"discount":', '"query":"',
    '"checkout_id":"', '"cart_id":"', '"position":', '"list_id":"', '"path":"/', '"referrer":"',
    'utm_source=', 'utm_medium=', 'utm_campaign=', '"traits":{', '"email":"', '"groupId":"', '"protocols":{',
    '"consent":{', '"network":{"cellular":', '"wifi":', '"bluetooth":', '"carrier":"', '"app":{"name":"',
    '"build":"', '"namespace":"', '"location":{"city":"', '"country":"', '"latitude":', '"longitude":',
    '"region":"', '"speed":', '"context":{}', '"properties":{}',
)  # fmt: skip
_DICTIONARY_V1 = "".join(_FRAGMENTS_V1).encode()
_WINDOW = -15  # raw DEFLATE: no zlib header or checksum (the version byte says what follows)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):  # from a DynamoDB image
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def pack(properties: dict[str, Any], context: dict[str, Any]) -> bytes:
    document = json.dumps(
        {"properties": properties, "context": context}, separators=(",", ":"), ensure_ascii=False, default=_plain
    ).encode()
    compressor = zlib.compressobj(9, zlib.DEFLATED, _WINDOW, 9, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY_V1)
    return bytes([VERSION]) + compressor.compress(document) + compressor.flush()


def unpack(stored: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(properties, context) of a stored body: bytes, boto3's Binary, or base64 text (a Lambda
    stream record's images carry binary values base64-encoded)."""
    data = _bytes(stored)
    if not data or data[0] != VERSION:
        raise ValueError(f"an event body of unknown version {data[:1]!r}")
    decompressor = zlib.decompressobj(_WINDOW, _DICTIONARY_V1)
    document = json.loads(decompressor.decompress(data[1:]) + decompressor.flush())
    return document.get("properties") or {}, document.get("context") or {}


def _bytes(stored: Any) -> bytes:
    value = getattr(stored, "value", stored)  # boto3.dynamodb.types.Binary
    if isinstance(value, str):
        return base64.b64decode(value)
    return bytes(value)
