"""Client keys: the registered JWKS, or ``jwks_uri`` fetched only from public addresses (SECURITY.md 30)."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from joserfc import jwk
from joserfc.errors import SecurityWarning

from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import InvalidInput
from brokerlink.security.oauth.client_keys import ClientKeyError, ClientKeys, parse_jwks
from brokerlink.security.outbound import UnsafeURL, check_public_url, is_loopback_host

PUBLIC = "93.184.215.14"


def _resolves_to(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolver


def _key(kty: str, size: str | int) -> jwk.Key:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwk.generate_key(kty, size, private=True)  # type: ignore[call-overload,no-any-return]


@pytest.fixture
def jwks_doc() -> dict[str, object]:
    return {"keys": [_key("EC", "P-256").as_dict(private=False)]}


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://keys.example/jwks", "127.0.0.1"),
        ("https://keys.example/jwks", "10.0.0.7"),
        ("https://keys.example/jwks", "169.254.169.254"),
        ("https://keys.example/jwks", "192.168.1.1"),
        ("https://keys.example/jwks", "100.64.0.1"),
        ("https://keys.example/jwks", "::1"),
        ("https://keys.example/jwks", "fe80::1"),
        ("http://keys.example/jwks", PUBLIC),
        ("https://user:pw@keys.example/jwks", PUBLIC),
        ("https://localhost/jwks", PUBLIC),
        ("https://10.1.2.3/jwks", PUBLIC),
    ],
)
async def test_security30_outbound_urls_reaching_inside_are_refused(url: str, address: str) -> None:
    with pytest.raises(UnsafeURL) as refused:
        await check_public_url(url, resolver=_resolves_to(address), field="jwks_uri")
    assert refused.value.extra["field"] == "jwks_uri"
    assert isinstance(refused.value, InvalidInput), "webhook code catches InvalidInput"


async def test_security30_public_https_and_allow_listed_loopback_pass() -> None:
    url = "https://keys.example/jwks"
    assert await check_public_url(url, resolver=_resolves_to(PUBLIC)) == url
    assert await check_public_url("http://127.0.0.1:9/jwks", allow_loopback=True) == "http://127.0.0.1:9/jwks"
    with pytest.raises(UnsafeURL):
        await check_public_url("http://10.0.0.1/jwks", allow_loopback=True)
    assert is_loopback_host("[::1]")
    assert not is_loopback_host("example.com")


def test_parse_jwks_keeps_public_fapi_keys_and_refuses_private_ones(jwks_doc: dict[str, object]) -> None:
    assert len(parse_jwks(json.dumps(jwks_doc)).keys) == 1
    private = {"keys": [_key("EC", "P-256").as_dict(private=True)]}
    with pytest.raises(ClientKeyError, match="public keys only"):
        parse_jwks(private)
    weak_only = {"keys": [_key_rsa_1024()]}
    with pytest.raises(ClientKeyError, match="no usable"):
        parse_jwks(weak_only)
    with pytest.raises(ClientKeyError):
        parse_jwks("not json")
    with pytest.raises(ClientKeyError):
        parse_jwks({"keys": [{"kty": "oct", "k": "AAAA"}]})


def _key_rsa_1024() -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(jwk.RSAKey.generate_key(1024, private=False).as_dict(private=False))


@pytest.fixture
async def served(jwks_doc: dict[str, object]) -> AsyncIterator[tuple[ClientKeys, ManualClock, list[str]]]:
    """A ClientKeys whose HTTP goes to an in-process JWKS server; ``hits`` lists the URLs fetched."""
    hits: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        hits.append(str(request.url))
        if request.url.path == "/big":
            return httpx.Response(200, content=b"x" * (70 * 1024))
        if request.url.path == "/redirect":
            return httpx.Response(302, headers={"location": "http://169.254.169.254/"})
        return httpx.Response(200, json=jwks_doc)

    clock = ManualClock()
    keys = ClientKeys(
        now=clock.now, cache_seconds=300, resolver=_resolves_to(PUBLIC), transport=httpx.MockTransport(answer)
    )
    yield keys, clock, hits
    await keys.close()


async def test_jwks_uri_is_fetched_once_per_cache_period(served: tuple[ClientKeys, ManualClock, list[str]]) -> None:
    keys, clock, hits = served
    url = "https://keys.example/jwks"
    first = await keys.keys_for(jwks=None, jwks_uri=url)
    again = await keys.keys_for(jwks=None, jwks_uri=url)
    assert first is again
    assert hits == [url]
    clock.advance(timedelta(seconds=301))
    await keys.keys_for(jwks=None, jwks_uri=url)
    assert hits == [url, url]


async def test_security30_jwks_uri_resolving_inside_is_not_fetched(
    served: tuple[ClientKeys, ManualClock, list[str]],
) -> None:
    keys, _, hits = served
    keys.resolver = _resolves_to("10.0.0.5")
    with pytest.raises(ClientKeyError, match="non-public"):
        await keys.keys_for(jwks=None, jwks_uri="https://keys.example/jwks")
    assert hits == [], "refused before any request is sent"


async def test_jwks_uri_redirects_and_oversized_answers_are_refused(
    served: tuple[ClientKeys, ManualClock, list[str]],
) -> None:
    keys, _, _ = served
    with pytest.raises(ClientKeyError, match="HTTP 302"):
        await keys.keys_for(jwks=None, jwks_uri="https://keys.example/redirect")
    with pytest.raises(ClientKeyError, match="too large"):
        await keys.keys_for(jwks=None, jwks_uri="https://keys.example/big")


async def test_security30_an_allow_listed_jwks_host_is_fetched_over_https_only(
    served: tuple[ClientKeys, ManualClock, list[str]],
) -> None:
    """The fetch applies the registration's allow-list (``oauth_jwks_uri_allowed_hosts``): a listed host
    is fetched whatever it resolves to, but only over https; an unlisted one is still refused."""
    keys, _, hits = served
    keys.resolver = _resolves_to("10.0.0.5")
    keys.allowed_hosts = frozenset({"keys.internal"})
    await keys.keys_for(jwks=None, jwks_uri="https://keys.internal/jwks")
    assert hits == ["https://keys.internal/jwks"]
    with pytest.raises(ClientKeyError):
        await keys.keys_for(jwks=None, jwks_uri="http://keys.internal/jwks")
    with pytest.raises(ClientKeyError, match="non-public"):
        await keys.keys_for(jwks=None, jwks_uri="https://other.internal/jwks")
    assert hits == ["https://keys.internal/jwks"]
