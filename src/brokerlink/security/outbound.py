"""Outbound requests to URLs someone else chose: which ones the server may call (SECURITY.md 30).

An admin-configured webhook or a client's ``jwks_uri`` makes the server send a request to a URL
it did not pick. That must not reach inside the network: ``https`` only, no credentials or
fragment in the URL, and no host that resolves to a loopback, private, link-local, shared
(CGNAT), multicast, reserved or otherwise non-global address. Callers check when the URL is
accepted and again right before each request (a name may be re-pointed after it was accepted),
and never follow redirects (a redirect to an internal address would get around the check).

``allow_loopback`` (tests, local demos) admits loopback hosts, and ``http`` to them; nothing more.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from brokerlink.kit.errors import InvalidInput

__all__ = ["LOOPBACK_HOSTS", "MAX_URL", "Resolver", "UnsafeURL", "check_public_url", "is_loopback_host", "resolve"]

MAX_URL = 2048
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Host name and port to the addresses they resolve to (swappable in tests)."""


class UnsafeURL(InvalidInput):
    """A URL the server will not call; ``detail`` says why, ``extra["field"]`` names the input."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``*.localhost``, or a loopback address)."""
    host = host.lower().strip("[]")
    if host in LOOPBACK_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def check_public_url(
    url: str, *, allow_loopback: bool = False, resolver: Resolver = resolve, field: str = "url"
) -> str:
    """``url`` if the server may send a request to it (module docstring), else :class:`UnsafeURL`.

    ``field`` names the input in the error (``url``, ``jwks_uri``...).
    """

    def refuse(why: str) -> UnsafeURL:
        return UnsafeURL(f"{field}: {why}", extra={"field": field})

    if len(url) > MAX_URL:
        raise refuse(f"longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("not a valid URL") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise refuse("has no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("must not carry credentials")
    if parts.fragment:
        raise refuse("must not have a fragment")
    loopback_name = host in LOOPBACK_HOSTS or host.endswith(".localhost")
    if loopback_name and not allow_loopback:
        raise refuse(f"host {host!r} is a loopback address")
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_loopback and loopback_name):
        raise refuse("must use https")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = await resolver(host, port or (443 if parts.scheme == "https" else 80))
        except OSError:
            raise refuse(f"host {host!r} does not resolve") from None
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
    why = _refused_address(host, addresses, allow_loopback=allow_loopback)
    if why is not None:
        raise refuse(why)
    return url


def _refused_address(
    host: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address], *, allow_loopback: bool
) -> str | None:
    """Why ``host`` (resolving to ``addresses``) may not be called, or None when it may."""
    if not addresses:
        return f"host {host!r} does not resolve"
    for address in addresses:
        if address.is_loopback:
            if not allow_loopback:
                return f"host {host!r} is a loopback address"
        elif not address.is_global or address.is_multicast or address.is_reserved:
            # is_global is False for private, link-local, shared (CGNAT), documentation and unspecified ranges.
            return f"host {host!r} resolves to a non-public address ({address})"
    return None
