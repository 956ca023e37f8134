"""The audit trail's signing key: Ed25519, in a 0600 file under ``data_dir``, created on first use.

The key signs checkpoints of the chain (:mod:`brokerlink.security.audit_checkpoint`). Its public
half is what a verifier needs, and it can be exported (``brokerlink audit public-key``) and kept off
the host, with the exported checkpoints, so that someone who can rewrite the database (and the key
file) still cannot make an old export verify against a rewritten trail.

The key id is derived from the public key (``ed25519:`` and the first 16 hex digits of its
SHA-256), so an id can never be paired with the wrong key. The file is created the way
:class:`~brokerlink.security.vault.LocalKeyFile` creates its own: written under a temporary name
with mode 0600, fsynced, and hard-linked into place, so workers starting at once agree on one key;
it is refused when group or others have any access to it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import stat
import threading
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from brokerlink.config import Settings

__all__ = ["AuditKeyError", "AuditSigner", "key_id_of", "load_public_key", "public_key_pem", "verify_signature"]

KEY_FILE_NAME = "audit-signing-key.json"
_MAX_FILE_BYTES = 65536


class AuditKeyError(Exception):
    """The signing key file is missing, unsafe or malformed. Messages name the path, never key bytes."""


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    """The file's format: ``{"version": 1, "private_key": "<base64 of the 32-byte Ed25519 seed>"}``."""

    version: int
    private_key: str


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key id: ``ed25519:`` and 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), what ``brokerlink audit public-key`` prints."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; :class:`AuditKeyError` for anything else."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise AuditKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError("the public key is not an Ed25519 key")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    """Whether ``signature_b64`` (standard base64) is ``public_key``'s signature of ``message``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class AuditSigner:
    """Signs checkpoints with the Ed25519 key in ``path`` (created with mode 0600 on first use).

    Loaded lazily, once, under a lock (the periodic task and a request may ask at once). The repr
    shows the path and key id, never the key.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditSigner:
        """The signer whose key lives at ``data_dir/audit-signing-key.json``."""
        return cls(settings.data_dir / KEY_FILE_NAME)

    @property
    def key_id(self) -> str:
        """This key's id."""
        return key_id_of(self.public_key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half, to verify with."""
        return self._private().public_key()

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """``{key_id: public_key}``: the form :func:`~brokerlink.security.audit_verify.verify` takes."""
        return {self.key_id: self.public_key}

    def sign(self, message: bytes) -> str:
        """The signature of ``message``, standard base64."""
        return base64.b64encode(self._private().sign(message)).decode()

    def __repr__(self) -> str:
        return f"AuditSigner({str(self.path)!r})"

    def _private(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                if not self.path.exists():
                    self._create()
                self._key = self._read()
            return self._key

    def _create(self) -> None:
        seed = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        document = _KeyFile(version=1, private_key=base64.b64encode(seed).decode())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.encode(document) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            # Atomic publish; when another process created the file first, theirs is used.
            with contextlib.suppress(FileExistsError):
                self.path.hardlink_to(temporary)
        finally:
            temporary.unlink(missing_ok=True)

    def _read(self) -> Ed25519PrivateKey:
        path = self.path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise AuditKeyError(f"audit signing key file {path} cannot be opened: {exc.strerror}") from None
        try:
            # Checked on the open descriptor, not the path, so the file checked is the file read.
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise AuditKeyError(f"audit signing key file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise AuditKeyError(
                    f"audit signing key file {path} is accessible by group or others (mode {mode:o}): chmod 600 it"
                )
            raw = os.read(fd, _MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        try:
            document = msgspec.json.decode(raw, type=_KeyFile)
            seed = base64.b64decode(document.private_key, validate=True)
        except (msgspec.DecodeError, ValueError):
            raise AuditKeyError(f"audit signing key file {path} is malformed") from None
        if document.version != 1 or len(seed) != 32:
            raise AuditKeyError(f"audit signing key file {path} has an unsupported version or key length")
        return Ed25519PrivateKey.from_private_bytes(seed)
