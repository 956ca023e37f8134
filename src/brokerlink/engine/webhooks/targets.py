"""Which URLs a user webhook may be sent to (SECURITY.md 30).

A user chooses the URL, so the server must not be made to call inside its own network: by default
the URL must pass :func:`brokerlink.security.outbound.check_public_url` (https, no credentials or
fragment, every resolved address public). ``webhook_allowed_hosts`` names exceptions: host names
(exact, case-insensitive) or CIDR networks that every resolved address must fall in; an allowed
target may use ``http`` too (a test's loopback receiver, a receiver inside a private network). The
check runs at registration, when the URL changes, and again before every attempt (a name may be
re-pointed after it was accepted). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from brokerlink.security.outbound import MAX_URL, Resolver, UnsafeURL, check_public_url, resolve

__all__ = ["AllowList", "check_target"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """Host names and networks exempt from the public-address rule."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.names: frozenset[str] = frozenset()
        self.networks: tuple[Network, ...] = ()
        names, networks = set(), []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                names.add(text)
        self.names = frozenset(names)
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.names or self.networks)

    def covers(self, address: str) -> bool:
        """Whether ``address`` lies in an allowed network."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return any(ip in network for network in self.networks)


async def check_target(url: str, allow: AllowList, *, resolver: Resolver = resolve, field: str = "url") -> str:
    """``url`` if a webhook may be sent there (module docstring), else :class:`UnsafeURL` naming ``field``."""
    if allow and await _allowed(url, allow, resolver, field):
        return url
    return await check_public_url(url, resolver=resolver, field=field)


async def _allowed(url: str, allow: AllowList, resolver: Resolver, field: str) -> bool:
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
    if not host or parts.scheme not in {"http", "https"}:
        return False  # the public check says what is wrong
    if parts.username is not None or parts.password is not None:
        raise refuse("must not carry credentials")
    if parts.fragment:
        raise refuse("must not have a fragment")
    if host in allow.names:
        return True
    if not allow.networks:
        return False
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolver(host, port or (443 if parts.scheme == "https" else 80))
        except OSError:
            raise refuse(f"host {host!r} does not resolve") from None
    return bool(addresses) and all(allow.covers(a) for a in addresses)
