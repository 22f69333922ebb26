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
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final
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
    """The target of a callback URL, or CallbackRefusedError for one never accepted. The
    host is kept as its IDNA A-label: resolving, the Host header and TLS use the same."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefusedError(f"the callback URL is longer than {MAX_URL_LENGTH} "
                                   "characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise CallbackRefusedError("a callback URL may not contain spaces or control "
                                   "characters")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").rstrip(".")
        if host and ":" not in host:  # an IPv6 literal has no A-label
            host = host.encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError) as err:
        raise CallbackRefusedError(f"the callback URL is not valid: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefusedError("a callback URL must be http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefusedError("a callback URL may not carry credentials")
    if not host:
        raise CallbackRefusedError("a callback URL must name a host")
    if port == 0:
        raise CallbackRefusedError("a callback URL may not name port 0")
    if not _is_literal(host) and all(_NUMERIC_LABEL.fullmatch(p) for p in host.split(".")):
        raise CallbackRefusedError("a host written as a number must be a dotted-quad IPv4 "
                                   "address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, scheme=parts.scheme, host=host,
                  port=port or (443 if parts.scheme == "https" else 80), path=path)


_NUMERIC_LABEL: Final = re.compile(r"0x[0-9a-f]*|[0-9]+")  # 127.1, 0x7f.1, 2130706433
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"),
                 ipaddress.IPv6Network("::ffff:0:0:0/96"))  # well-known, compatible, SIIT


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, translated, NAT64,
    6to4, Teredo), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _listed(address: IpAddress, allowed: Sequence[IpNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in allowed)


def _public(address: IpAddress) -> bool:
    if address.is_multicast or not address.is_global:
        return False
    # IPv6: global unicast only (is_global misses site-local, local-use NAT64 and more)
    return address.version == 4 or address in _GLOBAL_UNICAST_V6


_NOT_PUBLIC: Final = "not a public address (loopback, private, link-local, metadata and " \
                     "reserved addresses are refused)"


def address_refusal(text: str, allowed: Sequence[IpNetwork]) -> str | None:
    """None if a callback may connect to this address, else why not. An IPv6 address that
    carries an IPv4 one is judged by that too (an allowed IPv6 network does not open the
    internal IPv4 addresses written inside it)."""
    try:
        address: IpAddress = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"{text!r} is not an IP address"
    inner = _embedded_v4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is not None and not _public(inner) and not _listed(inner, allowed):
        return f"{address} is {_NOT_PUBLIC}"
    if _listed(address, allowed) or _public(address):
        return None
    return f"{address} is {_NOT_PUBLIC}"


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(target: Target, allowed: Sequence[IpNetwork],
                          resolver: Resolver, timeout_s: float) -> str:
    """The address to connect to: the host's addresses, all of which must be allowed
    (fail closed: one refused address refuses the name). A name the resolver's search
    domains turn into an internal service resolves to an internal address, refused like
    any other. A refusal does not say which address a name has (tenants read it)."""
    if _is_literal(target.host):
        why = address_refusal(target.host, allowed)
        if why is not None:
            raise CallbackRefusedError(why)
        return str(ipaddress.ip_address(target.host))
    try:
        addresses = await asyncio.wait_for(resolver(target.host, target.port), timeout_s)
    except (OSError, UnicodeError, TimeoutError):
        raise LookupError(f"{target.host} did not resolve") from None
    if not addresses:
        raise LookupError(f"{target.host} did not resolve")
    if any(address_refusal(a, allowed) is not None for a in addresses):
        raise CallbackRefusedError(f"{target.host} resolves to an address that is "
                                   f"{_NOT_PUBLIC}")
    return addresses[0]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
