"""Deterministic, Spec-shaped Segment traffic of a web shop (analytics.js + a server library).

A population of users: most are known (identified before the batch, logged in: their browser
messages carry userId and anonymousId), the others anonymous visitors (anonymousId only; some
identify during the batch and carry both ids from then on). Known users sometimes come back on a
new device (a new anonymousId) and send server-side tracks (userId only). Messages are what
Segment's Webhooks destination delivers (~2.3 KB each, compact JSON).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAGES = [
    ("/", "Acme Outdoor - Gear for every trail"),
    ("/collections/tents", "Tents & Shelters - Acme Outdoor"),
    ("/collections/backpacks", "Backpacks - Acme Outdoor"),
    ("/products/trailhead-2-person-tent", "Trailhead 2-Person Tent - Acme Outdoor"),
    ("/products/summit-45l-pack", "Summit 45L Pack - Acme Outdoor"),
    ("/cart", "Your cart - Acme Outdoor"),
    ("/checkout/shipping", "Checkout: shipping - Acme Outdoor"),
    ("/blog/how-to-choose-a-sleeping-bag", "How to choose a sleeping bag - Acme Outdoor Journal"),
]
PRODUCTS = [
    ("prod-1007", "TENT-TH2-GRN", "Trailhead 2-Person Tent", "Tents", "Acme", "Forest Green", 289.0),
    ("prod-2044", "PACK-SM45-BLK", "Summit 45L Pack", "Backpacks", "Acme", "Black", 179.5),
    ("prod-3101", "BAG-NL20-RED", "Nightline -7C Sleeping Bag", "Sleeping Bags", "Acme", "Red", 149.99),
    ("prod-4410", "STOVE-MICRO-TI", "Micro Titanium Stove", "Cooking", "Fieldcraft", "Titanium", 64.0),
]
AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36",
        "Windows",
        False,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
        "Safari/605.1.15",
        "macOS",
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Mobile/15E148 Safari/604.1",
        "iOS",
        True,
    ),
]
CAMPAIGNS = [
    {"name": "spring_sale_2026", "source": "newsletter", "medium": "email", "content": "hero_banner_tents"},
    {"name": "brand_search", "source": "google", "medium": "cpc", "term": "lightweight tent", "content": "ad_group_3"},
]
REFERRERS = [
    "https://www.google.com/search?q=lightweight+backpacking+tent+2+person&sca_esv=6c1f2e3b4a5d6e7f&source=hp"
    "&ei=Zk3nZ8WvJ4Gx0PEP1qmYoAs&oq=lightweight+backpacking+tent&gs_lp=Egdnd3Mtd2l6IhxsaWdodHdlaWdodA",
    "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.acme-outdoor.example%2Fcollections%2Ftents%3Futm_source"
    "%3Dfacebook&h=AT0x9Yc2mZ3Qv7Lr1pK8sN4dF6gH0jB5wE2tR9uI3oP7aS1dF4gH6jK8lZ0xC2vB4nM6",
    "https://shop.acme-outdoor.example/collections/tents?sort_by=best-selling&filter.v.price.gte=100",
]
TRACK_EVENTS = ["Product Viewed", "Product Added", "Products Searched", "Checkout Started", "Order Completed"]


@dataclass
class User:
    index: int
    user_id: str | None  # None: an anonymous visitor (until an identify)
    anonymous_id: str
    email: str
    agent: tuple[str, str, bool]
    ip: str
    traits: dict[str, Any] = field(default_factory=dict)


class Traffic:
    """Messages of a population; the same seed gives the same messages."""

    def __init__(self, users: int = 500, known_share: float = 0.7, seed: int = 2026):
        self.rng = random.Random(seed)
        self.clock = START
        self.sequence = 0
        self.users = [self._user(i, i < users * known_share) for i in range(users)]

    def new_id(self) -> str:
        return self._uuid()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _user(self, index: int, known: bool) -> User:
        return User(
            index=index,
            user_id=f"user-{index:05d}" if known else None,
            anonymous_id=self._uuid(),
            email=f"customer.{index:05d}@example.com",
            agent=self.rng.choice(AGENTS),
            ip=f"198.51.{index // 250}.{index % 250 + 1}",
            traits={
                "first_name": f"First{index}",
                "last_name": f"Last{index}",
                "plan": "free",
                "created_at": (START - timedelta(days=400 - index % 400)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    # -- one message -------------------------------------------------------------------------

    def _base(self, user: User, kind: str, server: bool = False, ids: str = "both") -> dict[str, Any]:
        self.sequence += 1
        self.clock += timedelta(milliseconds=self.rng.randint(5, 400))
        sent = self.clock + timedelta(milliseconds=self.rng.randint(20, 900))
        message: dict[str, Any] = {
            "type": kind,
            "messageId": f"{'node' if server else 'ajs-next'}-{self._uuid()}",
            "channel": "server" if server else "client",
            "context": self._server_context() if server else self._web_context(user),
            "integrations": {},
            "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
            "originalTimestamp": _iso(self.clock),
            "sentAt": _iso(sent),
            "receivedAt": _iso(sent + timedelta(milliseconds=self.rng.randint(30, 300))),
            "timestamp": _iso(self.clock),
            "version": 2,
        }
        if user.user_id and ids in ("both", "user"):
            message["userId"] = user.user_id
        if not server and ids in ("both", "anonymous"):
            message["anonymousId"] = user.anonymous_id
        return message

    def _web_context(self, user: User) -> dict[str, Any]:
        path, title = self.rng.choice(PAGES)
        campaign = self.rng.choice(CAMPAIGNS)
        query = f"?utm_source={campaign['source']}&utm_medium={campaign['medium']}&utm_campaign={campaign['name']}"
        agent, platform, mobile = user.agent
        return {
            "ip": user.ip,
            "library": {"name": "analytics.js", "version": "npm:next-1.76.0"},
            "locale": "en-US",
            "timezone": "America/Denver",
            "userAgent": agent,
            "userAgentData": {
                "brands": [
                    {"brand": "Google Chrome", "version": "131"},
                    {"brand": "Chromium", "version": "131"},
                    {"brand": "Not_A Brand", "version": "24"},
                ],
                "mobile": mobile,
                "platform": platform,
                "architecture": "x86",
                "bitness": "64",
                "model": "",
                "platformVersion": "15.0.0",
                "uaFullVersion": "131.0.6778.86",
                "fullVersionList": [
                    {"brand": "Google Chrome", "version": "131.0.6778.86"},
                    {"brand": "Chromium", "version": "131.0.6778.86"},
                    {"brand": "Not_A Brand", "version": "24.0.0.0"},
                ],
            },
            "page": {
                "path": path,
                "referrer": self.rng.choice(REFERRERS),
                "search": query,
                "title": title,
                "url": f"https://shop.acme-outdoor.example{path}{query}",
            },
            "campaign": campaign,
            "consent": {
                "categoryPreferences": {
                    "Advertising": mobile,
                    "Analytics": True,
                    "Functional": True,
                    "Personalization": True,
                    "DataSharing": False,
                }
            },
            "instanceId": self._uuid(),
            "sessionId": 1772442000000 + user.index,
        }

    def _server_context(self) -> dict[str, Any]:
        return {
            "library": {"name": "analytics-node", "version": "2.1.2"},
            "ip": "10.20.3.17",
            "traits": {"source": "order-service"},
        }

    def small_order(self, user: User) -> dict[str, Any]:
        """A server-side Order Completed of one product, under 1 KB as Segment sends it."""
        message = self._base(user, "track", True, "user")
        product = self.rng.choice(PRODUCTS)
        message["event"] = "Order Completed"
        message["properties"] = {"order_id": f"ord-{self.sequence:07d}", "revenue": product[6], "currency": "USD"}
        return message

    def track(self, user: User, server: bool = False, ids: str = "both") -> dict[str, Any]:
        message = self._base(user, "track", server, ids)
        event = self.rng.choice(TRACK_EVENTS)
        product = self.rng.choice(PRODUCTS)
        item = {
            "product_id": product[0],
            "sku": product[1],
            "name": product[2],
            "category": product[3],
            "brand": product[4],
            "variant": product[5],
            "price": product[6],
            "quantity": 1,
            "url": f"https://shop.acme-outdoor.example/products/{product[1].lower()}",
            "image_url": f"https://cdn.acme-outdoor.example/img/{product[1].lower()}-800x800.jpg",
        }
        if event == "Order Completed":
            second = self.rng.choice(PRODUCTS)
            products: list[dict[str, Any]] = [
                item,
                {
                    **item,
                    "product_id": second[0],
                    "sku": second[1],
                    "name": second[2],
                    "price": second[6],
                    "quantity": 2,
                },
            ]
            total = round(sum(p["price"] * p["quantity"] for p in products), 2)
            properties: dict[str, Any] = {
                "order_id": f"ord-{self.sequence:07d}",
                "affiliation": "Web Shop",
                "subtotal": total,
                "total": total + 9.95,
                "revenue": total,
                "shipping": 9.95,
                "tax": round(total * 0.07, 2),
                "currency": "USD",
                "coupon": "SPRING10",
                "products": products,
            }
        elif event == "Products Searched":
            properties = {"query": self.rng.choice(["ultralight tent", "45l backpack", "down sleeping bag"])}
        else:
            properties = {
                **item,
                "currency": "USD",
                "position": self.rng.randint(1, 24),
                "cart_id": f"cart-{user.index:05d}",
            }
        message.update(event=event, properties=properties)
        return message

    def page(self, user: User, ids: str = "both") -> dict[str, Any]:
        message = self._base(user, "page", ids=ids)
        page = message["context"]["page"]
        message.update(name=page["title"].split(" - ")[0], category="Shop", properties={**page, "name": page["title"]})
        return message

    def identify(self, user: User, change: bool = True) -> dict[str, Any]:
        message = self._base(user, "identify")
        if change:
            user.traits = {
                **user.traits,
                "plan": self.rng.choice(["free", "plus", "pro"]),
                "last_order_at": _iso(self.clock),
                "orders_count": user.traits.get("orders_count", 0) + 1,
            }
        message["traits"] = {**user.traits, "email": user.email}
        return message

    def group(self, user: User, group_id: str) -> dict[str, Any]:
        message = self._base(user, "group")
        message.update(
            groupId=group_id,
            traits={"name": f"Company {group_id}", "industry": "Outdoor retail", "employees": 42, "plan": "business"},
        )
        return message

    # -- many messages -----------------------------------------------------------------------

    def seed(self) -> list[dict[str, Any]]:
        """One identify per known user (userId + anonymousId): the state before the batch."""
        return [self.identify(user, change=False) for user in self.users if user.user_id]

    def batch(self, size: int) -> list[dict[str, Any]]:
        """A Webhooks (Actions) batch: ~45% track, ~45% page, ~10% identify."""
        messages = []
        for _ in range(size):
            user = self.rng.choice(self.users)
            roll = self.rng.random()
            if user.user_id:
                if roll < 0.01:  # back on a new device
                    user.anonymous_id = self._uuid()
                if roll < 0.10:
                    messages.append(self.identify(user, change=roll < 0.05))
                elif roll < 0.17:
                    messages.append(self.track(user, server=True))
                elif roll < 0.55:
                    messages.append(self.track(user))
                else:
                    messages.append(self.page(user))
            elif roll < 0.05:  # an anonymous visitor signs up
                user.user_id = f"visitor-{user.index:05d}"
                messages.append(self.identify(user))
            elif roll < 0.50:
                messages.append(self.track(user, ids="anonymous"))
            else:
                messages.append(self.page(user))
        return messages


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
