"""Vault: envelope encryption (SECURITY.md 35-36) and its key sources.

The key sources pass one contract suite (``key_source`` runs every test against each of them);
sealing and opening are tested on their own, without a database (see
``tests/store/test_secrets_repository.py`` for the stored path).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import msgspec
import pytest
from pydantic import SecretStr

from brokerlink.config import Settings
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.kit.ids import is_id
from brokerlink.security.vault import (
    EnvKeySource,
    Kek,
    KeySource,
    KeySourceError,
    LocalKeyFile,
    SealedSecret,
    UnknownKeyId,
    Vault,
    VaultError,
)

OWNER = "con_01JD3X4T2W6N9Q8R7S5V4B3C2A"
OTHER_OWNER = "con_01JD3X4T2W6N9Q8R7S5V4B3C2B"
PLAINTEXT = b'{"api_key": "AKIA-TEST-KEY", "api_secret": "s3cr3t-broker-password"}'


def env_value(key_id: str = "kek_test", key: bytes | None = None) -> str:
    return f"{key_id}:{base64.b64encode(key if key is not None else os.urandom(32)).decode()}"


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.fixture
def vault() -> Vault:
    return Vault(EnvKeySource(env_value()))


# --- the KeySource contract, for every implementation -------------------------------------------------


@pytest.fixture(params=["local_file", "env"])
def key_source(request: pytest.FixtureRequest, tmp_path: Path) -> KeySource:
    if request.param == "local_file":
        return LocalKeyFile(tmp_path / "vault-keys.json")
    return EnvKeySource(env_value("kek_from_env"))


def test_key_source_is_a_key_source(key_source: KeySource) -> None:
    assert isinstance(key_source, KeySource)


def test_key_source_current_key_is_256_bits_and_found_by_its_id(key_source: KeySource) -> None:
    current = key_source.current()
    assert len(current.key) == 32
    assert key_source.current().key == current.key  # stable across calls
    assert key_source.get(current.key_id).key == current.key


def test_key_source_unknown_key_id_error_names_the_id(key_source: KeySource) -> None:
    with pytest.raises(UnknownKeyId, match="kek_retired_long_ago") as info:
        key_source.get("kek_retired_long_ago")
    assert info.value.key_id == "kek_retired_long_ago"


def test_key_source_seals_and_opens(key_source: KeySource) -> None:
    vault = Vault(key_source)
    assert vault.open(OWNER, vault.seal(OWNER, PLAINTEXT)) == PLAINTEXT


def test_key_source_wraps_under_its_current_key_and_unwraps(key_source: KeySource) -> None:
    dek = os.urandom(32)
    wrapped = key_source.wrap(dek, owner_id=OWNER)
    assert wrapped.key_id == key_source.current_key_id() == key_source.key_ids()[0]
    assert dek not in wrapped.wrapped
    assert key_source.unwrap(wrapped, owner_id=OWNER) == dek


def test_key_source_unwrap_is_bound_to_the_owner_and_the_key_id(key_source: KeySource) -> None:
    wrapped = key_source.wrap(os.urandom(32), owner_id=OWNER)
    with pytest.raises(VaultError):
        key_source.unwrap(wrapped, owner_id=OTHER_OWNER)
    with pytest.raises(UnknownKeyId, match="kek_elsewhere"):
        key_source.unwrap(msgspec.structs.replace(wrapped, key_id="kek_elsewhere"), owner_id=OWNER)


# --- sealing and opening ---------------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [PLAINTEXT, b"", bytes(range(256)) * 40], ids=["json", "empty", "binary"])
def test_vault_round_trip(vault: Vault, plaintext: bytes) -> None:
    sealed = vault.seal(OWNER, plaintext)
    assert sealed.key_id == "kek_test"
    assert vault.open(OWNER, sealed) == plaintext


def test_vault_sealed_secret_survives_serialization(vault: Vault) -> None:
    sealed = vault.seal(OWNER, PLAINTEXT)
    decoded = msgspec.json.decode(msgspec.json.encode(sealed), type=SealedSecret)
    assert vault.open(OWNER, decoded) == PLAINTEXT


def test_vault_fresh_data_key_and_nonces_for_every_seal(vault: Vault) -> None:
    first, second = vault.seal(OWNER, PLAINTEXT), vault.seal(OWNER, PLAINTEXT)
    assert first.ciphertext != second.ciphertext
    assert first.nonce != second.nonce
    assert first.key_nonce != second.key_nonce
    assert first.wrapped_key != second.wrapped_key
    assert PLAINTEXT not in first.ciphertext


def test_vault_ciphertext_for_another_owner_does_not_open(vault: Vault) -> None:
    # SECURITY.md 36: the owner's id is authenticated data, so a sealed secret moved to another row fails.
    sealed = vault.seal(OWNER, PLAINTEXT)
    with pytest.raises(VaultError) as info:
        vault.open(OTHER_OWNER, sealed)
    assert "s3cr3t" not in str(info.value)


def test_vault_ciphertext_with_another_owners_data_key_does_not_open(vault: Vault) -> None:
    # Splicing: the data layer alone is bound to the owner too, not only the wrapped key.
    mine, theirs = vault.seal(OWNER, PLAINTEXT), vault.seal(OTHER_OWNER, b"other")
    spliced = msgspec.structs.replace(theirs, ciphertext=mine.ciphertext, nonce=mine.nonce)
    with pytest.raises(VaultError, match="ciphertext"):
        vault.open(OTHER_OWNER, spliced)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped_key", "key_nonce"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_vault_tampered_byte_is_refused(vault: Vault, field: str, where: str) -> None:
    sealed = vault.seal(OWNER, PLAINTEXT)
    value: bytes = getattr(sealed, field)
    tampered = msgspec.structs.replace(sealed, **{field: flip(value, 0 if where == "first" else len(value) - 1)})
    with pytest.raises(VaultError):
        vault.open(OWNER, tampered)


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": b"\x00" * 8},
        {"key_nonce": b"\x00" * 16},
        {"wrapped_key": b"\x00" * 32},
        {"ciphertext": b"\x00" * 15},
    ],
    ids=["short-nonce", "long-key-nonce", "short-wrapped-key", "short-ciphertext"],
)
def test_vault_malformed_sealed_secret_is_refused(vault: Vault, change: dict[str, bytes]) -> None:
    sealed = msgspec.structs.replace(vault.seal(OWNER, PLAINTEXT), **change)
    with pytest.raises(VaultError, match="malformed"):
        vault.open(OWNER, sealed)


def test_vault_wrong_key_under_the_same_id_is_refused() -> None:
    sealed = Vault(EnvKeySource(env_value("kek_a"))).seal(OWNER, PLAINTEXT)
    impostor = Vault(EnvKeySource(env_value("kek_a")))  # same id, different bytes
    with pytest.raises(VaultError, match="kek_a"):
        impostor.open(OWNER, sealed)


def test_vault_relabelled_key_id_is_refused() -> None:
    # The key id is authenticated too: a wrapped key claimed by another id (same bytes) fails.
    key = os.urandom(32)
    sealed = Vault(EnvKeySource(env_value("kek_a", key))).seal(OWNER, PLAINTEXT)
    relabelled = Vault(EnvKeySource(env_value("kek_b", key)))
    with pytest.raises(VaultError):
        relabelled.open(OWNER, msgspec.structs.replace(sealed, key_id="kek_b"))


def test_vault_unknown_key_id_names_it(vault: Vault) -> None:
    sealed = Vault(EnvKeySource(env_value("kek_elsewhere"))).seal(OWNER, PLAINTEXT)
    with pytest.raises(UnknownKeyId, match="kek_elsewhere"):
        vault.open(OWNER, sealed)


@pytest.mark.parametrize("owner_id", ["", "x" * 41])
def test_vault_owner_id_must_be_a_row_id(vault: Vault, owner_id: str) -> None:
    with pytest.raises(ValueError, match="owner_id"):
        vault.seal(owner_id, PLAINTEXT)


# --- errors and reprs leak nothing -------------------------------------------------------------------


def test_vault_error_is_a_500_problem_without_internals() -> None:
    key = os.urandom(32)
    sealed = Vault(EnvKeySource(env_value("kek_a", key))).seal(OWNER, PLAINTEXT)
    with pytest.raises(VaultError) as info:
        Vault(EnvKeySource(env_value("kek_a"))).open(OWNER, sealed)
    error = info.value
    assert isinstance(error, BrokerlinkError)
    problem = error.to_problem(instance="/v1/connections")
    assert (problem["status"], problem["code"]) == (500, "vault_error")
    rendered = json.dumps(problem)
    for internal in ("kek_a", OWNER, "s3cr3t", base64.b64encode(key).decode()):
        assert internal not in rendered
    # The reason, for the logs, names ids but never key material or plaintext.
    assert "kek_a" in str(error)
    assert base64.b64encode(key).decode() not in str(error)
    assert "s3cr3t" not in str(error)


def test_vault_reprs_show_no_bytes(vault: Vault) -> None:
    kek = Kek.generate()
    sealed = vault.seal(OWNER, PLAINTEXT)
    assert kek.key_id in repr(kek)
    assert "redacted" in repr(kek)
    for text in (repr(kek), repr(sealed), str(sealed), repr(sealed.__rich_repr__())):
        assert "b'" not in text
        assert 'b"' not in text
        assert base64.b64encode(kek.key).decode() not in text
    assert "kek_test" in repr(sealed)


def test_kek_generate_has_a_kek_id_and_256_bits() -> None:
    kek = Kek.generate()
    assert is_id(kek.key_id, "kek")
    assert len(kek.key) == 32
    assert Kek.generate().key != kek.key


@pytest.mark.parametrize(("key_id", "key"), [("kek ok", b"k" * 32), ("", b"k" * 32), ("kek_a", b"k" * 16)])
def test_kek_refuses_bad_ids_and_lengths(key_id: str, key: bytes) -> None:
    with pytest.raises(KeySourceError):
        Kek(key_id, key)


# --- LocalKeyFile ------------------------------------------------------------------------------------


def test_local_key_file_created_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "vault-keys.json"
    source = LocalKeyFile(path)
    assert not path.exists()  # nothing happens until a key is needed
    kek = source.current()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document == {"version": 1, "current": kek.key_id, "keys": {kek.key_id: base64.b64encode(kek.key).decode()}}
    assert is_id(kek.key_id, "kek")
    assert [p.name for p in path.parent.iterdir()] == ["vault-keys.json"]  # no temporary file left behind


def test_local_key_file_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys.json"
    sealed = Vault(LocalKeyFile(path)).seal(OWNER, PLAINTEXT)
    before = path.read_bytes()
    again = LocalKeyFile(path)  # a restart: a new instance on the same file
    assert again.current().key_id == sealed.key_id
    assert Vault(again).open(OWNER, sealed) == PLAINTEXT
    assert path.read_bytes() == before


def test_local_key_file_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys.json"
    sources = [LocalKeyFile(path) for _ in range(8)]
    found: list[str] = []
    barrier = threading.Barrier(len(sources))

    def first_use(source: LocalKeyFile) -> None:
        barrier.wait()
        found.append(source.current().key_id)

    threads = [threading.Thread(target=first_use, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == len(sources)
    assert len(set(found)) == 1
    assert json.loads(path.read_text())["current"] == found[0]


def test_local_key_file_finds_a_key_another_process_added(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys.json"
    source = LocalKeyFile(path)
    first = source.current()
    added = Kek.generate()
    document = json.loads(path.read_text())
    document["keys"][added.key_id] = base64.b64encode(added.key).decode()
    path.write_text(json.dumps(document))
    assert source.get(added.key_id).key == added.key
    assert source.current().key_id == first.key_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o606], ids=oct)
def test_local_key_file_refuses_a_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "vault-keys.json"
    LocalKeyFile(path).current()
    path.chmod(mode)
    with pytest.raises(KeySourceError, match="chmod 600") as info:
        LocalKeyFile(path).current()
    assert str(path) in str(info.value)
    assert f"{mode:o}" in str(info.value)


def test_local_key_file_accepts_an_owner_only_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys.json"
    kek = LocalKeyFile(path).current()
    path.chmod(0o400)
    assert LocalKeyFile(path).current().key == kek.key


def _write_key_file(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not valid JSON"),
        ('{"version": 1, "current": "kek_a"}', "malformed"),
        ('{"version": 1, "current": "kek_a", "keys": {}, "extra": 1}', "malformed"),
        ('{"version": 2, "current": "kek_a", "keys": {}}', "unsupported version 2"),
        ('{"version": 1, "current": "kek_a", "keys": {}}', "current key 'kek_a' is not in its keys"),
        ('{"version": 1, "current": "kek_a", "keys": {"kek_a": "!!!"}}', "key 'kek_a' is not valid base64"),
        ('{"version": 1, "current": "kek_a", "keys": {"kek_a": "AAAA"}}', "32 bytes"),
    ],
    ids=["not-json", "no-keys", "unknown-field", "version", "no-current", "bad-base64", "short-key"],
)
def test_local_key_file_refuses_a_malformed_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "vault-keys.json"
    _write_key_file(path, content)
    with pytest.raises(KeySourceError, match=match):
        LocalKeyFile(path).current()


def test_local_key_file_refuses_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys.json"
    path.mkdir(mode=0o700)
    with pytest.raises(KeySourceError, match="not a regular file"):
        LocalKeyFile(path).current()


# --- EnvKeySource ------------------------------------------------------------------------------------


def test_env_key_source_parses_key_id_and_key() -> None:
    key = os.urandom(32)
    source = EnvKeySource(f"  kek_prod_2026:{base64.b64encode(key).decode()}\n")
    assert source.current().key_id == "kek_prod_2026"
    assert source.current().key == key
    assert "kek_prod_2026" in repr(source)
    assert base64.b64encode(key).decode() not in repr(source)


def test_env_key_source_accepts_url_safe_base64() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' in standard base64
    assert "-" in base64.urlsafe_b64encode(key).decode()
    source = EnvKeySource("kek_a:" + base64.urlsafe_b64encode(key).decode())
    assert source.current().key == key


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("no-separator", "must look like 'key_id:base64key'"),
        (":" + base64.b64encode(b"k" * 32).decode(), "must look like"),
        ("kek_a:", "must look like"),
        ("kek a:" + base64.b64encode(b"k" * 32).decode(), "key id"),
        ("kek_a:not*base64*at*all", "not valid base64"),
        ("kek_a:" + base64.b64encode(b"k" * 32).decode()[:-1], "not valid base64"),
        ("kek_a:" + base64.b64encode(b"k" * 16).decode(), "must be 32 bytes .* got 16"),
        ("kek_a:" + base64.b64encode(b"k" * 64).decode(), "must be 32 bytes .* got 64"),
    ],
    ids=["no-colon", "no-id", "no-key", "bad-id", "bad-base64", "bad-padding", "128-bit", "512-bit"],
)
def test_env_key_source_refuses_malformed_values(value: str, match: str) -> None:
    with pytest.raises(KeySourceError, match=match) as info:
        EnvKeySource(value)
    assert "BROKERLINK_VAULT_KEY" in str(info.value)
    secret_part = value.partition(":")[2]
    if secret_part:
        assert secret_part not in str(info.value)


# --- settings ----------------------------------------------------------------------------------------


def test_vault_from_settings_uses_the_key_file_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_vault_key_file == tmp_path / "vault-keys.json"
    vault = Vault.from_settings(settings)
    assert isinstance(vault.keys, LocalKeyFile)
    assert vault.keys.path == tmp_path / "vault-keys.json"


def test_vault_from_settings_uses_a_configured_key_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, vault_key_file=tmp_path / "keys" / "kek.json")
    vault = Vault.from_settings(settings)
    assert isinstance(vault.keys, LocalKeyFile)
    assert vault.keys.path == tmp_path / "keys" / "kek.json"


def test_vault_from_settings_prefers_the_key_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = env_value("kek_env")
    monkeypatch.setenv("BROKERLINK_VAULT_KEY", value)
    settings = Settings(data_dir=tmp_path)
    assert isinstance(settings.vault_key, SecretStr)
    assert value not in repr(settings)
    vault = Vault.from_settings(settings)
    assert isinstance(vault.keys, EnvKeySource)
    assert vault.keys.current().key_id == "kek_env"
    vault.open(OWNER, vault.seal(OWNER, PLAINTEXT))
    assert not (tmp_path / "vault-keys.json").exists()


def test_vault_from_settings_refuses_a_malformed_environment_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKERLINK_VAULT_KEY", "kek_env:c2hvcnQ=")
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(KeySourceError, match="got 5"):
        Vault.from_settings(settings)
