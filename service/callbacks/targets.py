"""Which callback URLs are accepted, and which addresses a callback may connect to.

Deny by default (Judge0's CVE-2024-29021 was a callback to a loopback service): only
``http``/``https`` URLs without credentials, and only addresses that are public
(``is_global``: no loopback, private, shared, link-local, metadata, multicast, reserved or
documentation ranges, also when written as IPv4-mapped, NAT64, 6to4 or Teredo IPv6),
unless an operator allowed their network. Every address a name resolves to is checked, and
the connection then goes to a checked address, never to a second resolution (no DNS
rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from sandboxes.schema import MAX_CALLBACK_URL_LENGTH as MAX_URL_LENGTH
from sandboxes.settings import IpNetwork

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> addresses; the event loop's getaddrinfo in production
Resolver = Callable[[str, int], Awaitable[list[str]]]


class CallbackRefusedError(Exception):
    """Why a callback may not go where it asked (recorded on the job; never retried)."""


@dataclass(frozen=True)
class Target:
    """A checked callback URL: what to connect to, and what to say the host is."""

    url: str
    scheme: str
    host: str  # as written (the Host header and TLS's server name)
    port: int
    path: str  # path and query, as sent


def parse_url(url: str) -> Target:
    """The target of a callback URL, or CallbackRefusedError for one never accepted."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefusedError(f"the callback URL is longer than {MAX_URL_LENGTH} "
                                   "characters")
    try:
        parts: SplitResult = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise CallbackRefusedError(f"the callback URL is not valid: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefusedError("a callback URL must be http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefusedError("a callback URL may not carry credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c.isspace() for c in url):
        raise CallbackRefusedError("a callback URL must name a host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url.strip(), scheme=parts.scheme, host=host,
                  port=port or (443 if parts.scheme == "https" else 80), path=path)


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_refusal(text: str, allowed: Sequence[IpNetwork]) -> str | None:
    """None if a callback may connect to this address, else why not."""
    try:
        address: IpAddress = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"{text!r} is not an IP address"
    if any(address.version == net.version and address in net for net in allowed):
        return None
    inner = _embedded_v4(address) if isinstance(address, ipaddress.IPv6Address) else None
    for candidate in (address, inner):
        if candidate is None:
            continue
        if not candidate.is_global or candidate.is_multicast:
            return f"{address} is not a public address (loopback, private, link-local, " \
                   "metadata and reserved addresses are refused)"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(target: Target, allowed: Sequence[IpNetwork],
                          resolver: Resolver, timeout_s: float) -> str:
    """The address to connect to: the host's addresses, all of which must be allowed
    (fail closed: one refused address refuses the name)."""
    try:
        literal = ipaddress.ip_address(target.host.strip("[]"))
        addresses = [str(literal)]
    except ValueError:
        try:
            addresses = await asyncio.wait_for(resolver(target.host, target.port), timeout_s)
        except (OSError, TimeoutError) as err:
            raise LookupError(f"{target.host} did not resolve: {err or 'timed out'}") from None
    if not addresses:
        raise LookupError(f"{target.host} has no address")
    for address in addresses:
        why = address_refusal(address, allowed)
        if why is not None:
            named = "" if address == target.host else f"{target.host} resolves to "
            raise CallbackRefusedError(f"{named}{why}")
    return addresses[0]


def submitted_url_problem(url: str, enabled: bool) -> str | None:
    """Why a submission's callback URL is refused before queueing (None: accepted). Its
    address is checked when it is delivered, since a name's addresses can change."""
    if not enabled:
        return "callbacks are not enabled on this server (WARDEN_CALLBACKS_ENABLED)"
    try:
        parse_url(url)
    except CallbackRefusedError as err:
        return str(err)
    return None
