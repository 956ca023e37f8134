"""Stable problem codes (issue 8, ADR 0033): one registry, :data:`brokerlink.api.problems.PROBLEM_CODES`.

Every error class in the package carries a ``code`` that is listed there with its meaning, and the
registry lists nothing else, so a new code (or a renamed one) cannot reach clients unnoticed. The
HTTP layer's own refusals (a cursor, a filter, a precondition) come out with their listed codes.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import httpx

import brokerlink
from brokerlink.api.problems import PROBLEM_CODES
from brokerlink.kit.errors import BrokerlinkError
from tests.api.support import ClientFactory, assert_problem

_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def _error_classes() -> Iterator[type[BrokerlinkError]]:
    for module in pkgutil.walk_packages(brokerlink.__path__, "brokerlink."):
        if module.name.startswith("brokerlink.client"):
            continue  # the stand-alone client package raises its own errors, not problems
        importlib.import_module(module.name)
    pending: list[type[BrokerlinkError]] = [BrokerlinkError]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


def test_every_error_code_is_registered_and_nothing_else() -> None:
    used: dict[str, list[str]] = {}
    for cls in _error_classes():
        used.setdefault(cls.code, []).append(f"{cls.__module__}.{cls.__qualname__}")
    unregistered = {code: where for code, where in used.items() if code not in PROBLEM_CODES}
    assert unregistered == {}, "add these codes (and what they mean) to api/problems.py PROBLEM_CODES"
    assert set(PROBLEM_CODES) - set(used) == set(), "registered but raised nowhere"
    for code, meaning in PROBLEM_CODES.items():
        assert _SNAKE.fullmatch(code), code
        assert meaning.strip(), code


async def test_http_refusals_carry_their_registered_codes(make_client: ClientFactory) -> None:
    alice: httpx.AsyncClient = await make_client("alice@example.com", "Alice")
    seen = {
        assert_problem(await alice.get("/v1/strategies?after=ord_01ABC"), 422, "invalid_cursor")["code"],
        assert_problem(await alice.get("/v1/webhooks?after=nonsense"), 422, "invalid_cursor")["code"],
        assert_problem(await alice.get("/v1/accounts?limit=0"), 422, "invalid_input")["code"],
        assert_problem(await alice.get("/v1/ledger/entries?since=yesterday"), 422, "invalid_filter")["code"],
        assert_problem(await alice.get("/v1/orders/ord_missing"), 404, "not_found")["code"],
        assert_problem(await alice.post("/v1/webhooks", content=b"{", headers={"content-type": "application/json"}),
                       400, "malformed_request")["code"],
    }  # fmt: skip
    assert seen <= set(PROBLEM_CODES)
    problem = assert_problem(await alice.get("/v1/ledger/entries?since=2026-01-02T00:00:00"), 422, "invalid_filter")
    assert problem["errors"] == [{"field": "since", "source": "query", "message": problem["errors"][0]["message"]}]
    assert problem["type"] == "urn:brokerlink:problem:invalid_filter"
