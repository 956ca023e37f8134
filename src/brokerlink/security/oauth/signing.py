"""The authorization server's signing key: ES256 (P-256), signs access tokens, published at ``/oauth/jwks``.

The key is a private JWK kept in ``data_dir/oauth-signing-key.json`` (mode 0600), created on first
use, or the file ``oauth_signing_key_file`` names. Its ``kid`` is its RFC 7638 thumbprint, so a
resource server that verifies tokens finds the key by ``kid`` and a rotated key gets a new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc import jwk

from brokerlink.config import Settings

__all__ = ["SIGNING_ALG", "SigningKey"]

SIGNING_ALG = "ES256"


class SigningKey:
    """The private key and its public JWKS."""

    def __init__(self, key: jwk.ECKey) -> None:
        if key.curve_name != "P-256" or not key.is_private:
            raise ValueError("the signing key must be a private P-256 key")
        self.key = key
        self.kid = key.thumbprint()

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key (tests, and the first start of a server)."""
        return cls(jwk.ECKey.generate_key("P-256", private=True))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key stored at ``path``; created there (0600) when the file does not exist."""
        if path.exists():
            data = json.loads(path.read_text())
            return cls(jwk.ECKey.import_key(data))
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(key.key.as_dict(private=True), fh)
        return key

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKey:
        """``oauth_signing_key_file``, or ``data_dir/oauth-signing-key.json``."""
        path = settings.oauth_signing_key_file or settings.data_dir / "oauth-signing-key.json"
        return cls.load_or_create(path.expanduser().absolute())

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set to publish: the public key only, with ``kid``, ``use`` and ``alg``."""
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": SIGNING_ALG}]}
