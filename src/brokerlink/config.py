"""Settings: the one place that reads the environment (prefix ``BROKERLINK_``).

This module imports nothing else from brokerlink, so every layer may depend on it.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
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
    server: Literal["granian", "uvicorn"] = "uvicorn"  # ADR 0037: granian is late to close silent WebSockets
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
    gc_freeze: bool = Field(
        default=False,
        description="Move what start-up built out of the garbage collector's reach (gc.freeze); `serve` turns it on.",
    )
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
    audit_checkpoint_every_s: float = Field(
        default=300.0, ge=0, description="Seconds between signed checkpoints of the audit chain's head; 0 disables."
    )
    audit_checkpoint_export: Path | None = Field(
        default=None, description="Also append every audit checkpoint as a JSON line to this file (ship it off-host)."
    )
    alerts_enabled: bool = Field(default=True, description="Evaluate the alert rules in this process (ADR 0019).")
    alert_auth_failures: int = Field(
        default=20, ge=1, description="Failed authentications per principal, and per IP, that raise an alert."
    )
    alert_auth_window_s: int = Field(default=300, ge=1, description="The window the failed authentications count in.")
    alert_client_requests: int = Field(
        default=3000, ge=1, description="Requests per minute from one OAuth client that raise a traffic alert."
    )
    alert_broker_down_s: float = Field(
        default=60.0, gt=0, description="A broker connection down (not connected) this long raises an alert."
    )
    alert_copy_latency_ms: float = Field(
        default=500.0, gt=0, description="Copy engine latency (p99 over the window) above which an alert is raised."
    )
    alert_copy_latency_window_s: int = Field(
        default=300, ge=1, description="The window of copies the engine-latency p99 is taken over."
    )
    alert_reconcile_drift: int = Field(
        default=1, ge=1, description="Drifted symbols in one reconciliation that raise an alert (1: any drift)."
    )
    alert_max_keys: int = Field(
        default=10_000, ge=10, description="Principals, IPs or clients each rule tracks at once (least recent go)."
    )
    alert_tick_s: float = Field(default=5.0, gt=0, description="Seconds between checks of the time-based rules.")
    alert_queue_size: int = Field(
        default=10_000, ge=1, description="Alerts waiting to be stored; more are dropped (and counted)."
    )
    alert_webhook_attempts: int = Field(default=6, ge=1, le=20, description="Delivery attempts per alert webhook.")
    alert_webhook_backoff_s: float = Field(
        default=1.0, gt=0, description="First retry delay of a webhook delivery (doubles, full jitter)."
    )
    alert_webhook_backoff_cap_s: float = Field(default=60.0, gt=0, description="The longest delay between attempts.")
    alert_webhook_max_s: float = Field(
        default=600.0, gt=0, description="A webhook delivery gives up after this long, whatever its attempts."
    )
    alert_webhook_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one webhook request.")
    alert_webhook_allow_loopback: bool = Field(
        default=False, description="Tests only: accept http:// webhook URLs on loopback hosts."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token Prometheus sends to GET /metrics; unset, /metrics answers 404 (ADR 0018).",
    )
    ledger_post_every_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between the ledger poster's sweeps of new fills (bus events wake it sooner).",
    )
    ledger_reconcile_every_s: float = Field(
        default=300.0, gt=0, description="Seconds between reconciliations of ledger cash with broker-reported cash."
    )
    fee_max_performance_pct: int = Field(
        default=50, ge=0, le=100, description="Highest performance fee a provider may set, in whole percent."
    )
    fee_max_management_pct: int = Field(
        default=5, ge=0, le=100, description="Highest management fee a provider may set, whole percent per year."
    )
    fee_max_volume_per_lot: int = Field(
        default=10, ge=0, description="Highest volume fee per lot (unit of a copy fill's quantity), in currency units."
    )
    fee_max_volume_per_million: int = Field(
        default=100, ge=0, description="Highest volume fee per million of notional, in currency units."
    )
    fee_platform_share_pct: int = Field(
        default=20, ge=0, le=100, description="The platform's share of every fee, in whole percent."
    )
    fee_settlement_period: Literal["monthly", "quarterly"] = Field(
        default="monthly", description="How often fees are settled (and fee schedule changes take effect)."
    )
    fee_task_every_s: float = Field(
        default=3600.0, gt=0, description="Seconds between the server's fee accrual and settlement runs."
    )
    retention_purge_every_s: int = Field(
        default=3600, ge=0, description="Seconds between scheduled purges of expired data (ADR 0017); 0 disables."
    )
    retention_batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows deleted per transaction by a purge, so writers never wait long.",
    )
    retention_sessions_days: int = Field(
        default=30, ge=0, description="Keep expired or revoked sessions this many days; 0 keeps them forever."
    )
    retention_orders_days: int = Field(
        default=0, ge=0, description="Keep terminal orders and their fills this many days; 0 keeps them forever."
    )
    retention_events_days: int = Field(
        default=0, ge=0, description="Keep event log rows this many days; 0 keeps them forever."
    )
    retention_copy_days: int = Field(
        default=0, ge=0, description="Keep copy events and processed copy signals this many days; 0 keeps them forever."
    )
    retention_audit_days: int = Field(
        default=0, ge=0, description="Keep audit records this many days (a signed checkpoint marks the new start)."
    )
    stats_snapshot_every_s: float = Field(
        default=300.0, gt=0, description="Seconds between equity snapshots of every account and subscription."
    )

    # --- OAuth authorization server (ADR 0023) ---
    oauth_issuer: str | None = Field(
        default=None,
        description="The authorization server's issuer URL (no trailing slash); default http://{host}:{port}.",
    )
    oauth_access_token_seconds: int = Field(
        default=300, ge=30, le=3600, description="Lifetime of an access token (a DPoP-bound JWT)."
    )
    oauth_refresh_token_seconds: int = Field(
        default=30 * 86400, ge=300, description="Lifetime of a refresh token (never past its consent's expiry)."
    )
    oauth_code_seconds: int = Field(default=60, ge=5, le=60, description="Lifetime of an authorization code.")
    oauth_par_seconds: int = Field(default=90, ge=10, le=599, description="Lifetime of a PAR request_uri.")
    oauth_assertion_leeway_seconds: int = Field(
        default=10, ge=0, le=60, description="Clock skew allowed on client assertions' iat and exp."
    )
    oauth_assertion_max_seconds: int = Field(
        default=300, ge=30, le=3600, description="Client assertions may not expire further ahead than this."
    )
    oauth_replay_backend: Literal["memory", "redis"] = Field(
        default="memory", description="Where client-assertion and DPoP jti values are remembered (redis: redis_url)."
    )
    oauth_dpop_nonce: bool = Field(default=False, description="Require a DPoP-Nonce in proofs at the token endpoint.")
    oauth_signing_key_file: Path | None = Field(
        default=None, description="JWK (P-256) signing access tokens; default data_dir/oauth-signing-key.json."
    )
    oauth_jwks_cache_seconds: int = Field(
        default=300, ge=0, description="How long a client's keys fetched from its jwks_uri are reused."
    )
    oauth_jwks_allow_loopback: bool = Field(
        default=False, description="Tests only: fetch client jwks_uri from http:// loopback hosts."
    )
    # --- consents and client registration (ADR 0024) ---
    oauth_consent_days: int = Field(
        default=90, ge=1, le=3650, description="An approved consent lasts this many days, then expires."
    )
    oauth_consent_decision_seconds: int = Field(
        default=600,
        ge=60,
        le=3600,
        description="After /authorize, the user has this long to sign in and approve or decline the request.",
    )
    oauth_jwks_uri_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose jwks_uri is accepted whatever addresses they resolve to (https still required).",
    )
    # --- resource server and the stream (ADR 0025) ---
    resource_origin: str | None = Field(
        default=None,
        description="Public origin (scheme://host[:port]) DPoP proofs' htu is checked against; "
        "default: oauth_issuer, else http://host:port.",
    )
    resource_replay_backend: Literal["memory", "redis"] = Field(
        default="memory", description="Where the resource server remembers DPoP proof ids: this process, or redis_url."
    )
    resource_dpop_nonce: bool = Field(
        default=False, description="Require a server nonce (DPoP-Nonce) in the DPoP proofs of API requests."
    )
    resource_token_cache_s: float = Field(
        default=2.0, ge=0, le=10, description="Seconds a looked-up access token is kept in memory (0: no cache)."
    )
    resource_token_cache_size: int = Field(default=10_000, ge=1, description="Access tokens kept in memory at most.")
    # --- the stream (docs/adr/0030) ---
    stream_replay: int = Field(
        default=1000, ge=10, le=100_000, description="Events each account, copy and alert channel keeps for resume."
    )
    stream_replay_keep_s: float = Field(
        default=300.0,
        ge=1,
        description="How long a channel nobody follows keeps recording (and its replay buffer), for resumes.",
    )
    stream_buffer: int = Field(
        default=2000,
        ge=10,
        description="Account, copy and alert messages one socket may have unsent; past it the socket closes (1013).",
    )
    stream_heartbeat_s: int = Field(
        default=15, ge=1, le=300, description="Seconds between server heartbeats; three silent ones close a socket."
    )
    stream_copy_poll_s: float = Field(
        default=0.2, gt=0, le=60, description="How often the stream reads new copy events from the database."
    )
    stream_max_subscriptions: int = Field(default=100, ge=1, description="Channels one socket may follow at once.")
    # --- market data on the stream (docs/adr/0031) ---
    market_data_account: str | None = Field(
        default=None,
        description="Account id (acc_...) whose broker link serves /v1/stream market channels first; "
        "default: any connected account whose broker lists the symbol.",
    )
    market_depth_levels: int = Field(
        default=10, ge=1, le=100, description="Levels per side in depth:{symbol} stream messages."
    )
    market_trades_kept: int = Field(
        default=50, ge=0, le=1000, description="Recent trades a trades:{symbol} snapshot carries."
    )
    market_retry_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often a market channel whose source dropped looks for another live one.",
    )
    # --- REST conventions (docs/adr/0033) ---
    # --- idempotency keys and CORS (ADR 0026) ---
    idempotency_ttl_seconds: int = Field(
        default=86_400, ge=60, description="How long an Idempotency-Key and its first response are kept (ADR 0026)."
    )
    idempotency_lease_seconds: int = Field(
        default=60,
        ge=5,
        description="A request holding an Idempotency-Key that has not answered after this long is presumed dead.",
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) that may call /v1 from a browser, a JSON list; none by default.",
    )
    cors_max_age_seconds: int = Field(
        default=600, ge=0, le=86_400, description="How long a browser may cache a CORS preflight answer."
    )

    @field_validator("cors_allowed_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        # Exact origins only: a wildcard with credentials would hand any site the user's API.
        checked = []
        for origin in origins:
            scheme, sep, rest = origin.strip().rstrip("/").partition("://")
            if scheme.lower() not in {"http", "https"} or not sep or not rest or any(c in rest for c in "/*?#@ "):
                raise ValueError(f"cors_allowed_origins: {origin!r} is not an origin like https://app.example.com")
            checked.append(f"{scheme.lower()}://{rest.lower()}")
        return checked

    # --- user webhooks (ADR 0028) ---
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names or CIDR networks a user webhook may target although they are not public "
        "(http allowed too): tests' loopback receivers, on-premises receivers. Empty: public https only.",
    )
    webhook_retry_window_s: float = Field(
        default=86_400.0, gt=0, description="How long a user webhook delivery is retried before it fails (ADR 0028)."
    )
    webhook_backoff_s: float = Field(
        default=5.0, gt=0, description="First retry delay of a user webhook delivery (doubles, full jitter)."
    )
    webhook_backoff_cap_s: float = Field(
        default=7_200.0, gt=0, description="The longest delay between two attempts of a user webhook delivery."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one user webhook request.")
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="Seconds between scans for due webhook deliveries and new copy events."
    )
    webhook_max_endpoints: int = Field(default=20, ge=1, le=1000, description="Webhook endpoints per user at most.")
    # --- broker endpoints (docs/brokers.md) ---
    broker_hosts: list[str] = Field(
        default=[
            "paper-api.alpaca.markets",
            "api.alpaca.markets",
            "api-fxpractice.oanda.com",
            "api-fxtrade.oanda.com",
            "api.binance.com",
            "testnet.binance.vision",
        ],
        description="Hosts a broker link may connect to, besides loopback (the test venues). Linking "
        "anywhere else is refused: a user-chosen endpoint would otherwise let users make the server "
        "call internal services (SSRF). Add the API hosts of the CCXT exchanges you offer.",
    )

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
