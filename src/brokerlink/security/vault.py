"""The credential vault: envelope encryption of broker credentials (and any other secret we must keep).

How a secret is sealed (:meth:`Vault.seal`):

1. A fresh 256-bit data key (DEK) is drawn for every secret, and the plaintext is encrypted with
   AES-256-GCM under it, with a random 96-bit nonce. The associated data is the owner's id (the row
   the secret belongs to, e.g. a broker connection ``con_...``), so a ciphertext copied into another
   owner's row fails to open (SECURITY.md 36).
2. The DEK is wrapped (encrypted) by a key-encryption key (KEK), also with AES-256-GCM, under its own
   random nonce. The associated data binds the KEK's id *and* the owner id, so a wrapped key moved
   to another owner, or relabelled with another key id, fails too.
3. What is stored (:class:`SealedSecret`, the ``vault_secrets`` row) is the KEK's id, the wrapped
   DEK, both nonces and the ciphertext. The KEK never enters the database, so a dump of it holds no
   usable key and no plaintext (SECURITY.md 35).

Associated data is domain-separated and length-prefixed (``_aad``): a label (``data`` or ``dek``) and
a format version precede the ids, so the two layers can never authenticate each other's inputs, and
no pair of ids can be confused with another by concatenation.

Why AES-GCM to wrap the DEK rather than RFC 3394 AES key wrap: key wrap takes no associated data,
so it could not bind the wrapped key to its owner and key id; GCM can, and it is the same primitive,
from the same library call, as the data layer, which leaves one construction to review. The price is
a random nonce per wrap, so one KEK must not wrap more than about 2**32 keys (NIST SP 800-38D's bound
for random nonces); rotation (a new current KEK, old secrets re-wrapped) keeps every key far below it.

Key sources. :class:`KeySource` is the interface the vault asks to wrap and unwrap data keys:
``current_key_id()``, ``key_ids()``, ``wrap(dek, owner_id=...)`` and ``unwrap(wrapped, owner_id=...)``.
The vault never sees a key-encryption key, so a KMS or HSM that never releases key material
implements the protocol as naturally as a local file (the owner id becomes its encryption context).
The two sources that ship here hold their keys in this process and share :class:`HeldKeys`:

* :class:`LocalKeyFile` (the default): a JSON file, ``data_dir/vault-keys.json``, created on first
  use with mode 0600, that holds several keys by id and names the current one. The vault refuses a
  key file that group or others may read or write. ``add_key`` and ``remove_key`` serve
  ``brokerlink vault rotate`` and ``retire``.
* :class:`EnvKeySource`: keys from ``BROKERLINK_VAULT_KEY="key_id:base64key[,older_id:base64key...]"``,
  the current one first, for deployments that inject secrets through the environment.

Rotation (:meth:`Vault.rewrap`, :func:`rewrap_batch`) re-wraps data keys under the current key and
leaves every ciphertext as it is (docs/adr/0017-vault-rotation-and-retention.md).

Errors are :class:`VaultError`, a 500 whose public problem detail is fixed: the reason (which names
ids, never key material or plaintext) is in ``str(error)`` for the logs. Nothing here logs, and the
reprs of :class:`Kek` and :class:`SealedSecret` show no bytes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
import secrets
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.kit.ids import new_id
from brokerlink.store.models import VaultSecretRow
from brokerlink.store.repositories.secrets import SecretRepository

KEY_BYTES = 32  # AES-256, for both the data keys and the key-encryption keys
NONCE_BYTES = 12  # 96 bits, the nonce size GCM is specified for
TAG_BYTES = 16
WRAPPED_KEY_BYTES = KEY_BYTES + TAG_BYTES
BROKER_CREDENTIALS = "broker_credentials"
"""The ``purpose`` of a broker connection's credentials."""

_FORMAT = b"brokerlink-vault-v1"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_PURPOSE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_OWNER_ID_MAX = 40  # the width of vault_secrets.owner_id
_KEY_FILE_MAX_BYTES = 1_048_576
_GENERATE_HINT = "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"


class VaultError(BrokerlinkError):
    """A secret could not be sealed or opened: tampering, a wrong owner or key, or a broken key source.

    Renders as a 500 with a fixed detail; the reason (``str(error)``) names ids for the logs and
    never contains key material or plaintext.
    """

    status = 500
    code = "vault_error"
    title = "Credential vault error"
    public_detail = "stored credentials could not be used"

    def __init__(self, reason: str) -> None:
        super().__init__(self.public_detail)
        self.reason = reason
        self.args = (reason,)

    def __str__(self) -> str:
        return self.reason


class KeySourceError(VaultError):
    """The key source is misconfigured: a malformed key, an unsafe or unreadable key file."""


class UnknownKeyId(VaultError):
    """A secret names a key-encryption key that the key source does not have (retired, or another deployment's)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown vault key id {key_id!r}: the key source has no key by that id")
        self.key_id = key_id


class SecretNotFound(VaultError):
    """No stored secret with this id belongs to this owner."""


class Kek:
    """A key-encryption key: its id and 32 key bytes. The repr shows the id only."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key_id: str, key: bytes) -> None:
        if not _KEY_ID_RE.fullmatch(key_id):
            raise KeySourceError(
                "a vault key id must be 1-128 letters, digits or _.:/- and start with a letter or digit"
            )
        if len(key) != KEY_BYTES:
            raise KeySourceError(f"vault key {key_id!r} must be {KEY_BYTES} bytes (256 bits), got {len(key)}")
        self.key_id = key_id
        self._key = bytes(key)

    @property
    def key(self) -> bytes:
        """The key bytes. Never log, repr or store them."""
        return self._key

    @classmethod
    def generate(cls) -> Kek:
        """A new random key with a new ``kek_...`` id."""
        return cls(new_id("kek"), AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def __repr__(self) -> str:
        return f"Kek(key_id={self.key_id!r}, key=<redacted>)"


class SealedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """A sealed secret: everything needed to open it except the key-encryption key. Safe to store.

    The repr shows the key id and sizes, not the bytes (they are not secret, but they are noise in a
    log, and a habit of printing them is one typo away from printing the wrong field).
    """

    key_id: str
    wrapped_key: bytes
    key_nonce: bytes
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"SealedSecret(key_id={self.key_id!r}, ciphertext=<{len(self.ciphertext)} bytes>)"

    def __rich_repr__(self) -> list[tuple[str, object]]:
        return [("key_id", self.key_id), ("ciphertext", f"<{len(self.ciphertext)} bytes>")]


class WrappedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A data key as a key source wrapped it: the wrapping key's id, a nonce (empty when the source
    keeps it inside ``wrapped``, as a KMS ciphertext blob does) and the wrapped bytes. Not secret."""

    key_id: str
    nonce: bytes
    wrapped: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(key_id={self.key_id!r}, wrapped=<{len(self.wrapped)} bytes>)"


@runtime_checkable
class KeySource(Protocol):
    """Where the vault's key-encryption keys live. The vault never needs the key bytes, only these four
    operations, so a KMS (which never releases its keys: it wraps and unwraps on request) implements
    this as well as a local key file does.

    ``owner_id`` is the wrapping context: an implementation binds it, and the key id, to the wrapped key
    as authenticated data (a KMS "encryption context"), so a wrapped key moved to another owner, or
    relabelled with another key id, does not unwrap.
    """

    def current_key_id(self) -> str:
        """The id of the key that wraps new data keys (and that rotation re-wraps old ones under)."""
        ...

    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key this source can unwrap with, current first."""
        ...

    def wrap(self, dek: bytes, *, owner_id: str) -> WrappedKey:
        """Wrap a data key under the current key, bound to ``owner_id``."""
        ...

    def unwrap(self, wrapped: WrappedKey, *, owner_id: str) -> bytes:
        """The data key; :class:`UnknownKeyId` if the key is gone, :class:`VaultError` if it fails."""
        ...


class HeldKeys(ABC):
    """The wrap/unwrap of a key source that holds its keys in this process (AES-256-GCM, see the module doc).

    Subclasses provide :meth:`current`, :meth:`get` and :meth:`all`.
    """

    @abstractmethod
    def current(self) -> Kek:
        """The key that wraps new data keys."""

    @abstractmethod
    def get(self, key_id: str) -> Kek:
        """The key with this id; raises :class:`UnknownKeyId` naming the id when there is none."""

    @abstractmethod
    def all(self) -> tuple[Kek, ...]:
        """Every key, current first."""

    def current_key_id(self) -> str:
        """The current key's id."""
        return self.current().key_id

    def key_ids(self) -> tuple[str, ...]:
        """Every key's id, current first."""
        return tuple(kek.key_id for kek in self.all())

    def wrap(self, dek: bytes, *, owner_id: str) -> WrappedKey:
        """AES-256-GCM under the current key, a random nonce, the key id and owner as associated data."""
        kek = self.current()
        nonce = os.urandom(NONCE_BYTES)
        wrapped = AESGCM(kek.key).encrypt(nonce, dek, _wrap_aad(kek.key_id, owner_id))
        return WrappedKey(key_id=kek.key_id, nonce=nonce, wrapped=wrapped)

    def unwrap(self, wrapped: WrappedKey, *, owner_id: str) -> bytes:
        """The data key, if it authenticates under the key it names, for this owner."""
        if len(wrapped.nonce) != NONCE_BYTES or len(wrapped.wrapped) != WRAPPED_KEY_BYTES:
            raise VaultError(f"a sealed secret of {owner_id} is malformed (a field has the wrong length)")
        kek = self.get(wrapped.key_id)
        try:
            return AESGCM(kek.key).decrypt(wrapped.nonce, wrapped.wrapped, _wrap_aad(kek.key_id, owner_id))
        except InvalidTag:
            raise VaultError(
                f"the data key of a secret of {owner_id} does not authenticate under vault key {kek.key_id!r}"
                " (another owner's secret, a different key with this id, or tampered)"
            ) from None


class EnvKeySource(HeldKeys):
    """Key-encryption keys from a setting such as ``BROKERLINK_VAULT_KEY="key_id:base64key"``.

    Several keys are separated by commas, the current one first:
    ``"kek_new:...,kek_old:..."``. That is how a deployment that injects secrets through the
    environment rotates: put a new key in front, keep the old one readable, restart, run
    ``brokerlink vault rotate`` (which re-wraps under the first key), then drop the old one once
    ``brokerlink vault retire`` says nothing uses it. This source cannot change the variable itself.

    Each key is 32 bytes in standard or URL-safe base64. ``name`` only labels error messages, which
    never repeat the value.
    """

    def __init__(self, value: str, *, name: str = "BROKERLINK_VAULT_KEY") -> None:
        self.name = name
        keks: dict[str, Kek] = {}
        for item in value.split(","):
            kek = _parse_env_key(item.strip(), name)
            if kek.key_id in keks:
                raise KeySourceError(f"{name}: key id {kek.key_id!r} appears twice")
            keks[kek.key_id] = kek
        if not keks:
            raise KeySourceError(f"{name} must look like 'key_id:base64key'")
        self._keks = tuple(keks.values())
        self._by_id = keks

    def current(self) -> Kek:
        """The first key."""
        return self._keks[0]

    def get(self, key_id: str) -> Kek:
        """The key with this id."""
        kek = self._by_id.get(key_id)
        if kek is None:
            raise UnknownKeyId(key_id)
        return kek

    def all(self) -> tuple[Kek, ...]:
        """Every key, in the order of the setting (current first)."""
        return self._keks

    def __repr__(self) -> str:
        return f"EnvKeySource(key_ids={self.key_ids()!r})"


def _parse_env_key(item: str, name: str) -> Kek:
    key_id, sep, encoded = item.partition(":")
    if not sep or not key_id or not encoded:
        raise KeySourceError(f"{name} must look like 'key_id:base64key'")
    if not _KEY_ID_RE.fullmatch(key_id):
        raise KeySourceError(f"{name}: the key id must be 1-128 letters, digits or _.:/- characters")
    try:
        key = base64.b64decode(encoded.translate(str.maketrans("-_", "+/")), validate=True)
    except (binascii.Error, ValueError):
        raise KeySourceError(f"{name}: the key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeySourceError(
            f"{name}: the key must be {KEY_BYTES} bytes (256 bits) once decoded, got {len(key)};"
            f" generate one with: {_GENERATE_HINT}"
        )
    return Kek(key_id, key)


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    """The key file's format: ``{"version": 1, "current": "kek_...", "keys": {"kek_...": "<base64>"}}``."""

    version: int
    current: str
    keys: dict[str, str]


@dataclass(frozen=True, slots=True)
class _KeyRing:
    current: Kek
    keys: dict[str, Kek]
    stamp: tuple[int, int, int]  # (inode, mtime_ns, size) of the file read: a change means re-read


class LocalKeyFile(HeldKeys):
    """Key-encryption keys in a local JSON file, created on first use with mode 0600.

    The file maps key ids to base64 keys and names the current one, so a rotation can add a key and
    keep the old ones for opening. It is refused when it is not a regular file, when group or others
    have any access to it, or when it is malformed. Creating it is atomic: it is written under a
    temporary name and hard-linked into place, so several workers starting at once agree on one key.
    Changes (:meth:`add_key`, :meth:`remove_key`) are written to a temporary file and renamed over it,
    under an exclusive lock on a sibling ``.lock`` file, so concurrent changes do not lose each other.
    The file is re-read whenever it changed on disk (a cheap ``stat`` per use), so a running server
    seals under the key a ``brokerlink vault rotate`` in another process just made current.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ring: _KeyRing | None = None

    def current(self) -> Kek:
        """The key that seals new secrets; creates the key file with a fresh key if there is none."""
        return self._keyring().current

    def get(self, key_id: str) -> Kek:
        """The key with this id, re-reading the file once before giving up."""
        kek = self._keyring().keys.get(key_id)
        if kek is None:
            kek = self._keyring(reload=True).keys.get(key_id)
        if kek is None:
            raise UnknownKeyId(key_id)
        return kek

    def all(self) -> tuple[Kek, ...]:
        """Every key in the file, current first."""
        ring = self._keyring()
        return (ring.current, *(kek for kek in ring.keys.values() if kek.key_id != ring.current.key_id))

    def add_key(self) -> Kek:
        """Generate a new key, make it current, keep every old one (they still open what they wrapped)."""
        kek = Kek.generate()
        with self._locked_file() as ring:
            keys = {kek.key_id: kek, **ring.keys}
            self._write(current=kek, keys=keys)
        self._keyring(reload=True)
        return kek

    def remove_key(self, key_id: str) -> None:
        """Delete a key from the file. The current key cannot be removed; an unknown id raises :class:`UnknownKeyId`.

        Whether anything still needs the key is the caller's question (``brokerlink vault retire``
        counts the rows first): a removed key is gone, and so is whatever only it could open.
        """
        with self._locked_file() as ring:
            if key_id not in ring.keys:
                raise UnknownKeyId(key_id)
            if key_id == ring.current.key_id:
                raise KeySourceError(f"vault key {key_id!r} is the current key and cannot be removed")
            keys = {kid: kek for kid, kek in ring.keys.items() if kid != key_id}
            self._write(current=ring.current, keys=keys)
        self._keyring(reload=True)

    def __repr__(self) -> str:
        return f"LocalKeyFile({str(self.path)!r})"

    def _keyring(self, *, reload: bool = False) -> _KeyRing:
        with self._lock:
            if self._ring is None or reload or self._stale(self._ring):
                if not self.path.exists():
                    self._create()
                self._ring = self._read()
            return self._ring

    def _stale(self, ring: _KeyRing) -> bool:
        try:
            info = self.path.stat()
        except OSError:
            return True
        return (info.st_ino, info.st_mtime_ns, info.st_size) != ring.stamp

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[_KeyRing]:
        """The freshly read key ring, under an exclusive lock held until the block ends."""
        self._keyring()  # creates the file on first use
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._keyring(reload=True)
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, *, current: Kek, keys: dict[str, Kek]) -> None:
        document = _KeyFile(
            version=1,
            current=current.key_id,
            keys={kid: base64.b64encode(kek.key).decode() for kid, kek in keys.items()},
        )
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            temporary.replace(self.path)
        finally:
            temporary.unlink(missing_ok=True)

    def _create(self) -> None:
        kek = Kek.generate()
        document = _KeyFile(version=1, current=kek.key_id, keys={kek.key_id: base64.b64encode(kek.key).decode()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.format(msgspec.json.encode(document)) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            # Atomic publish; when another process created the file first, theirs is used.
            with contextlib.suppress(FileExistsError):
                self.path.hardlink_to(temporary)
        finally:
            temporary.unlink(missing_ok=True)

    def _read_bytes(self) -> tuple[bytes, tuple[int, int, int]]:
        path = self.path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise KeySourceError(f"vault key file {path} cannot be opened: {exc.strerror}") from None
        try:
            # Checked on the open descriptor, not the path, so the file checked is the file read.
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeySourceError(f"vault key file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeySourceError(
                    f"vault key file {path} is accessible by group or others (mode {mode:o});"
                    f" it holds the keys to every stored credential: chmod 600 it"
                )
            raw = b""
            while len(raw) <= _KEY_FILE_MAX_BYTES and (chunk := os.read(fd, 65536)):
                raw += chunk
        finally:
            os.close(fd)
        if len(raw) > _KEY_FILE_MAX_BYTES:
            raise KeySourceError(f"vault key file {path} is too large to be a key file")
        return raw, (info.st_ino, info.st_mtime_ns, info.st_size)

    def _read(self) -> _KeyRing:
        path = self.path
        raw, stamp = self._read_bytes()
        try:
            document = msgspec.json.decode(raw, type=_KeyFile)
        except msgspec.ValidationError as exc:
            raise KeySourceError(f"vault key file {path} is malformed: {exc}") from None
        except msgspec.DecodeError:
            raise KeySourceError(f"vault key file {path} is not valid JSON") from None
        if document.version != 1:
            raise KeySourceError(f"vault key file {path} has unsupported version {document.version}")
        keys: dict[str, Kek] = {}
        for key_id, encoded in document.keys.items():
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise KeySourceError(f"vault key file {path}: key {key_id!r} is not valid base64") from None
            try:
                keys[key_id] = Kek(key_id, key)
            except KeySourceError as exc:
                raise KeySourceError(f"vault key file {path}: {exc}") from None
        if document.current not in keys:
            raise KeySourceError(f"vault key file {path}: the current key {document.current!r} is not in its keys")
        return _KeyRing(current=keys[document.current], keys=keys, stamp=stamp)


class Vault:
    """Seals and opens secrets (pure), and stores them in ``vault_secrets`` (async, flushes, never commits)."""

    def __init__(self, keys: KeySource) -> None:
        self.keys = keys

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """The vault the settings describe: ``vault_key`` when set, else the key file (created on first use)."""
        if settings.vault_key is not None:
            return cls(EnvKeySource(settings.vault_key.get_secret_value()))
        return cls(LocalKeyFile(settings.effective_vault_key_file))

    def seal(self, owner_id: str, plaintext: bytes) -> SealedSecret:
        """Encrypt ``plaintext`` for ``owner_id`` under a fresh data key, wrapped by the current KEK."""
        _check_owner_id(owner_id)
        dek = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(dek).encrypt(nonce, plaintext, _data_aad(owner_id))
        wrapped = self.keys.wrap(dek, owner_id=owner_id)
        return SealedSecret(
            key_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
            key_nonce=wrapped.nonce,
            nonce=nonce,
            ciphertext=ciphertext,
        )

    def open(self, owner_id: str, sealed: SealedSecret) -> bytes:
        """The plaintext of a secret sealed for ``owner_id``.

        Raises :class:`VaultError` when anything does not authenticate (tampered bytes, another
        owner's secret, a different key under the same id) and :class:`UnknownKeyId` when the key
        source lacks the key.
        """
        _check_owner_id(owner_id)
        if len(sealed.nonce) != NONCE_BYTES or len(sealed.ciphertext) < TAG_BYTES:
            raise VaultError(f"a sealed secret of {owner_id} is malformed (a field has the wrong length)")
        dek = self._unwrap(owner_id, sealed)
        try:
            return AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, _data_aad(owner_id))
        except InvalidTag:
            raise VaultError(f"the ciphertext of a secret of {owner_id} does not authenticate (tampered)") from None

    def rewrap(self, owner_id: str, sealed: SealedSecret) -> SealedSecret:
        """The same secret with its data key wrapped under the current key (key rotation).

        Only the data key is unwrapped and wrapped again: the ciphertext and its nonce are kept as
        they are, so rotation touches 48 bytes per secret and never handles the plaintext. The data
        key is authenticated on the way (unwrapping it checks the tag), not the ciphertext, which is
        checked as ever when the secret is opened.
        """
        _check_owner_id(owner_id)
        dek = self._unwrap(owner_id, sealed)
        wrapped = self.keys.wrap(dek, owner_id=owner_id)
        return msgspec.structs.replace(
            sealed, key_id=wrapped.key_id, wrapped_key=wrapped.wrapped, key_nonce=wrapped.nonce
        )

    def _unwrap(self, owner_id: str, sealed: SealedSecret) -> bytes:
        dek = self.keys.unwrap(
            WrappedKey(key_id=sealed.key_id, nonce=sealed.key_nonce, wrapped=sealed.wrapped_key), owner_id=owner_id
        )
        if len(dek) != KEY_BYTES:
            raise VaultError(f"the data key of a secret of {owner_id} has the wrong length")
        return dek

    async def put(self, session: AsyncSession, *, owner_id: str, purpose: str, plaintext: bytes, now: datetime) -> str:
        """Seal and store a secret; returns its id (``sec_...``). Flushes; the caller commits."""
        if not _PURPOSE_RE.fullmatch(purpose):
            raise ValueError("purpose must be 1-64 lowercase letters, digits or underscores, starting with a letter")
        sealed = self.seal(owner_id, plaintext)
        row = await SecretRepository(session).add(
            owner_id=owner_id,
            purpose=purpose,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            key_nonce=sealed.key_nonce,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            now=now,
        )
        return row.id

    async def get(self, session: AsyncSession, secret_id: str, *, owner_id: str) -> bytes:
        """The plaintext of stored secret ``secret_id``, which must belong to ``owner_id``."""
        row = await SecretRepository(session).get_for_owner(secret_id, owner_id)
        if row is None:
            raise SecretNotFound(f"no vault secret {secret_id!r} belongs to {owner_id!r}")
        return self.open(owner_id, sealed_from_row(row))

    async def delete(self, session: AsyncSession, secret_id: str) -> bool:
        """Delete a stored secret. Returns whether it existed. Flushes; the caller commits."""
        return await SecretRepository(session).delete(secret_id)


class RewrapBatch(msgspec.Struct, frozen=True, kw_only=True):
    """What one :func:`rewrap_batch` did: rows re-wrapped, rows that could not be, and where to continue."""

    rewrapped: int
    failed: tuple[str, ...]
    """Ids of secrets whose data key did not unwrap (an unknown key, or tampered): left as they were."""
    last_id: str | None
    """The last id looked at; None when there was nothing left to look at."""


async def rewrap_batch(session: AsyncSession, vault: Vault, *, after: str | None, limit: int) -> RewrapBatch:
    """Re-wrap up to ``limit`` secrets not under the current key, in id order after ``after``; flushes only.

    Each row is updated only if it still names the key it was read with, so a concurrent rotation (or
    a re-run of an interrupted one) never overwrites a newer wrap; rows already under the current key
    are not selected at all, which is what makes an interrupted rotation safe to run again.
    """
    repository = SecretRepository(session)
    current = vault.keys.current_key_id()
    rows = await repository.list_not_under_key(current, after=after, limit=limit)
    rewrapped = 0
    failed: list[str] = []
    for row in rows:
        try:
            sealed = vault.rewrap(row.owner_id, sealed_from_row(row))
        except VaultError:
            failed.append(row.id)
            continue
        if await repository.rewrap(
            row.id,
            old_key_id=row.key_id,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            key_nonce=sealed.key_nonce,
        ):
            rewrapped += 1
    return RewrapBatch(rewrapped=rewrapped, failed=tuple(failed), last_id=rows[-1].id if rows else None)


def sealed_from_row(row: VaultSecretRow) -> SealedSecret:
    """The sealed secret a ``vault_secrets`` row holds."""
    return SealedSecret(
        key_id=row.key_id,
        wrapped_key=bytes(row.wrapped_key),
        key_nonce=bytes(row.key_nonce),
        nonce=bytes(row.nonce),
        ciphertext=bytes(row.ciphertext),
    )


def _check_owner_id(owner_id: str) -> None:
    if not owner_id or len(owner_id) > _OWNER_ID_MAX:
        raise ValueError(f"owner_id must be 1-{_OWNER_ID_MAX} characters (the id of the row the secret belongs to)")


def _aad(label: bytes, *parts: str) -> bytes:
    """Associated data: format, layer label, then each part length-prefixed, so no two inputs collide."""
    out = bytearray(_FORMAT)
    for part in (label, *(p.encode() for p in parts)):
        out += len(part).to_bytes(4, "big") + part
    return bytes(out)


def _data_aad(owner_id: str) -> bytes:
    return _aad(b"data", owner_id)


def _wrap_aad(key_id: str, owner_id: str) -> bytes:
    return _aad(b"dek", key_id, owner_id)
