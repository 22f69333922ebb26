"""One callback attempt: resolve and check the address, connect to exactly that address
(the Host header and TLS server name stay the URL's), send, read a bounded answer.

No proxy from the environment (it would connect elsewhere), no redirects (a 3xx is
recorded and refused: it could point anywhere), a timeout on the whole attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from typing import Final

import httpx

from sandboxes.schema import CallbackAttempt
from sandboxes.settings import IpNetwork
from service.callbacks.targets import (
    CallbackRefusedError,
    Resolver,
    Target,
    parse_url,
    resolve_checked,
    system_resolver,
)

MAX_ANSWER_BYTES: Final = 64 * 1024  # read and dropped: a receiver cannot make us buffer more
USER_AGENT: Final = "warden-callback/1"


def _connect_url(target: Target, address: str) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"{target.scheme}://{host}:{target.port}{target.path}"


async def attempt(url: str, method: str, body: bytes, allowed: Sequence[IpNetwork],
                  timeout_s: float, resolver: Resolver = system_resolver,
                  headers: dict[str, str] | None = None) -> CallbackAttempt:
    """Deliver once, within ``timeout_s`` from resolving to the answer's last byte read;
    never raises for anything the URL or the receiver can cause."""
    at = time.time()
    deadline = time.monotonic() + timeout_s
    address: str | None = None
    try:
        target = parse_url(url)
        address = await resolve_checked(target, allowed, resolver, timeout_s)
        left = max(deadline - time.monotonic(), 0.001)
        status = await asyncio.wait_for(
            _send(target, address, method, body, left, headers or {}), left)
    except CallbackRefusedError as err:
        return CallbackAttempt(at=at, outcome="refused", address=address, detail=str(err))
    except LookupError as err:
        return CallbackAttempt(at=at, outcome="failed", detail=str(err))
    except TimeoutError:
        return CallbackAttempt(at=at, outcome="failed", address=address,
                               detail=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as err:
        return CallbackAttempt(at=at, outcome="failed", address=address,
                               detail=f"{type(err).__name__}: {err}"[:500])
    except (httpx.InvalidURL, UnicodeError, ValueError) as err:  # what the URL holds
        return CallbackAttempt(at=at, outcome="refused", address=address,
                               detail=f"the callback URL cannot be sent: {err}"[:500])
    if 300 <= status < 400:
        return CallbackAttempt(at=at, outcome="refused", status_code=status, address=address,
                               detail="the receiver answered a redirect: redirects are not "
                                      "followed")
    if 200 <= status < 300:
        return CallbackAttempt(at=at, outcome="delivered", status_code=status, address=address)
    return CallbackAttempt(at=at, outcome="failed", status_code=status, address=address,
                           detail=f"the receiver answered {status}")


async def _send(target: Target, address: str, method: str, body: bytes, timeout_s: float,
                extra: dict[str, str]) -> int:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    headers = {**extra, "Host": host if target.port == default_port
               else f"{host}:{target.port}",
               "Content-Type": "application/json", "User-Agent": USER_AGENT}
    # one TLS context for every attempt (building one costs ~50 ms); no pooled connection
    # (one verified for one server name must never carry another's request)
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout_s,
                                 verify=_TLS, limits=_NO_POOL) as client:
        request = client.build_request(
            method, _connect_url(target, address), content=body, headers=headers,
            extensions={"sni_hostname": target.host})
        response = await client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    break
        finally:
            await response.aclose()
        return response.status_code


_TLS: Final = httpx.create_ssl_context()
_NO_POOL: Final = httpx.Limits(max_connections=1, max_keepalive_connections=0)
