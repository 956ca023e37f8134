"""Settings: the one place that reads the environment (prefix ``BROKERLINK_``).

This module imports nothing else from brokerlink, so every layer may depend on it.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``BROKERLINK_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="BROKERLINK_", env_file=None, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Field(default=Path("var"), description="All local state lives under this directory.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default is a SQLite file under data_dir."
    )
    redis_url: str | None = Field(default=None, description="Redis URL, used when bus_backend is 'redis'.")
    bus_backend: Literal["memory", "redis"] = "memory"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    server: Literal["granian", "uvicorn"] = "granian"
    secret_key: SecretStr | None = Field(
        default=None, description="Signs CSRF tokens; generated and kept in data_dir when unset."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    session_cookie: str = "brokerlink_session"
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    session_idle_seconds: int = Field(default=3600, ge=60)
    cookie_secure: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body accepted.")
    db_echo: bool = False
    auto_migrate: bool = Field(default=True, description="Apply database migrations when the server starts.")
    allow_registration: bool = Field(default=True, description="Whether anyone may create an account.")
    workers: int = Field(default=1, ge=1, le=64, description="Server worker processes.")
    demo_bot_email: str | None = Field(
        default=None, description="Demo only: a provider bot trades this user's linked accounts (the demo sets it)."
    )
    demo_bot_interval_s: float = Field(default=4.0, gt=0, description="Demo only: mean seconds between bot trades.")
    copy_reconcile_every_s: float = Field(
        default=60.0, gt=0, description="Seconds between reconciliations of followers' positions against their copies."
    )
    copy_reconcile_repair: bool = Field(
        default=False,
        description="Let the periodic reconciliation repair: close orphan copies, shrink links that claim too much.",
    )
    rate_limit_enabled: bool = Field(default=True, description="Apply the API rate limits (ADR 0014).")
    rate_limit_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="Where rate-limit counters live: this process, or redis_url (shared by every process).",
    )
    rate_limit_key_prefix: str = Field(
        default="brokerlink-rl", min_length=1, max_length=64, description="Prefix of the rate-limit keys in Redis."
    )
    rate_limit_user: str = Field(
        default="50/second;1500/minute",
        description="Weighted requests per signed-in user, in the limits library's notation.",
    )
    rate_limit_client: str = Field(
        default="50/second;1500/minute", description="Weighted requests per OAuth client (all its users together)."
    )
    rate_limit_ip: str = Field(
        default="20/second;600/minute", description="Weighted requests per IP address of anonymous requests."
    )
    rate_limit_orders: str = Field(
        default="5/second;120/minute",
        description="Order placements per user and account (velocity cap), on top of the request limits.",
    )
    rate_limit_ws_connections: int = Field(default=5, ge=1, description="Open WebSocket connections per principal.")
    rate_limit_ws_messages: str = Field(
        default="20/second", description="Messages a client may send on one WebSocket connection."
    )
    vault_key: SecretStr | None = Field(
        default=None,
        description="The vault's key-encryption key, 'key_id:base64key' (32 bytes); unset: vault_key_file holds keys.",
    )
    vault_key_file: Path | None = Field(
        default=None, description="JSON file of the vault's key-encryption keys; default data_dir/vault-keys.json."
    )
    mfa_issuer: str = Field(
        default="brokerlink", min_length=1, max_length=64, description="The issuer name authenticator apps show."
    )
    mfa_challenge_seconds: int = Field(
        default=300, ge=30, le=3600, description="How long a sign-in may wait at the MFA step before it starts over."
    )
    mfa_step_up_seconds: int = Field(
        default=600, ge=30, description="Sensitive actions need an MFA check at most this many seconds old."
    )
    require_mfa_for_linking: bool = Field(
        default=True, description="Linking a broker account needs MFA enrolled and verified recently."
    )
    login_lockout_threshold: int = Field(
        default=5, ge=1, description="Failed sign-ins (per account, per IP) within the window before a lockout."
    )
    login_lockout_window_seconds: int = Field(
        default=900, ge=60, description="The window in which failed sign-ins are counted."
    )
    login_lockout_base_seconds: int = Field(
        default=60, ge=1, description="The first lockout's length; each further failure doubles it."
    )
    login_lockout_max_seconds: int = Field(default=900, ge=1, description="The longest lockout.")
    # [audit] settings
    # [alerts] settings
    # [metrics] settings
    # [ledger] settings
    # [fees] settings
    # [retention] settings
    # [stats] settings

    @model_validator(mode="after")
    def _absolute_data_dir(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().absolute()
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the configured one, or the SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'brokerlink.db'}"

    @property
    def effective_vault_key_file(self) -> Path:
        """The vault's key file in force: the configured one, or ``data_dir/vault-keys.json``."""
        if self.vault_key_file is not None:
            return self.vault_key_file.expanduser().absolute()
        return self.data_dir / "vault-keys.json"

    @cached_property
    def effective_secret_key(self) -> str:
        """The secret key: configured, or read from (and on first use written to) ``data_dir/secret_key``."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


def get_settings() -> Settings:
    """Settings from the environment, read now (no module-level caching, so tests can vary them)."""
    return Settings()
