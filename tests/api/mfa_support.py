"""MFA helpers for the API and page tests: enrol a signed-in client's user in TOTP, and compute codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import httpx

from brokerlink.kit.clock import Clock
from brokerlink.security.totp import code_at, time_step


@dataclass
class Authenticator:
    """What a user's authenticator app and their printed recovery codes would hold."""

    secret: str
    recovery_codes: list[str] = field(default_factory=list)

    def code(self, clock: Clock, steps_ahead: int = 0) -> str:
        """The code the app shows at the clock's time (or ``steps_ahead`` 30-second steps later)."""
        return code_at(self.secret, time_step(clock.now()) + steps_ahead)


_ENROLLED: WeakKeyDictionary[httpx.AsyncClient, Authenticator] = WeakKeyDictionary()


def authenticator(c: httpx.AsyncClient) -> Authenticator:
    """The authenticator :func:`enrol_totp` enrolled for the client's user."""
    return _ENROLLED[c]


async def enrol_totp(c: httpx.AsyncClient, clock: Clock) -> Authenticator:
    """Enrol and confirm TOTP for the client's user; the client's session then counts as MFA-verified now."""
    started = await c.post("/v1/me/mfa/totp")
    assert started.status_code == 201, started.text
    device = Authenticator(secret=started.json()["secret"])
    confirmed = await c.post("/v1/me/mfa/totp/confirm", json={"code": device.code(clock)})
    assert confirmed.status_code == 200, confirmed.text
    device.recovery_codes = confirmed.json()["recovery_codes"]
    _ENROLLED[c] = device
    return device
