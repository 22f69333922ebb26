"""The IETF ``RateLimit-Policy`` and ``RateLimit`` headers on every authenticated response.

draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Policy: "reads";q=1000;w=5`` (a bucket of
``q`` requests that refills in ``w`` seconds) and ``RateLimit: "reads";r=998;t=1`` (``r``
left, ``t`` seconds until the bucket is full again). Authentication records the tenant's
rate in the request state (reads, or the submissions the enqueue charged); this pure ASGI
middleware copies it into the response headers, errors (429s included) too.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenancy.limits import RateState


def rate_headers(rate: RateState) -> list[tuple[bytes, bytes]]:
    policy = f'"{rate.policy}";q={rate.burst};w={rate.window_s}'
    now = f'"{rate.policy}";r={max(0, rate.remaining)};t={max(0, math.ceil(rate.reset_s))}'
    return [(b"ratelimit-policy", policy.encode()), (b"ratelimit", now.encode())]


class RateLimitHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                rate = scope.get("state", {}).get("rate")
                if isinstance(rate, RateState):
                    message = {**message,
                               "headers": [*message.get("headers", []), *rate_headers(rate)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
