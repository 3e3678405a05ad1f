"""Configuration from the environment (and `.env`), validated once at start-up.

The contract is DESIGN.md's table; anything the relay adds is prefixed `RELAY_`. A bad value
must stop start-up with one line that names the variable, so `load_settings` turns pydantic's
report into `ConfigError` with that line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import platformdirs
from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from teamrelay.actions.limits import DEFAULT_FILE_HOSTS
from teamrelay.limits.estimate import DEFAULT_OUTPUT_TOKENS
from teamrelay.proxies import trusted_networks


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]


class ConfigError(Exception):
    """A configuration value that stops start-up; `str()` is the one line to print."""


def default_data_dir() -> Path:
    """One folder whatever directory a command runs from, so `teamrelay keys` writes where
    `teamrelay serve` reads (on Linux `$XDG_DATA_HOME/teamrelay`, else ~/.local/share)."""
    return platformdirs.user_data_path("teamrelay")


class StoreSettings(BaseSettings):
    """What every command reads, `serve` and the operator's tools alike: the environment, then
    `.env` in the working directory. The tools need the database, not the upstream key."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    data_dir: Path = Field(default_factory=default_data_dir, validation_alias="RELAY_DATA_DIR")
    database_url: str = Field("", validate_default=True, validation_alias="RELAY_DATABASE_URL")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            data_dir = Path(info.data.get("data_dir") or default_data_dir())
            return f"sqlite+aiosqlite:///{data_dir.resolve() / 'teamrelay.db'}"
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class Settings(StoreSettings):
    openai_api_key: SecretStr = Field(validation_alias="OPENAI_API_KEY", min_length=1)
    openai_base_url: str = Field(
        "https://api.openai.com/v1",
        validation_alias=AliasChoices("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    )
    openai_organization: str | None = Field(None, validation_alias="OPENAI_ORGANIZATION")
    openai_project: str | None = Field(None, validation_alias="OPENAI_PROJECT")
    openai_beta: CommaList = Field((), validation_alias="RELAY_OPENAI_BETA")

    relay_keys: CommaList = Field((), validation_alias=AliasChoices("RELAY_KEYS", "RELAY_KEY"))
    auth_enabled: bool = Field(True, validation_alias="RELAY_AUTH_ENABLED")
    redis_url: str | None = Field(None, validation_alias="RELAY_REDIS_URL")
    public_url: str | None = Field(None, validation_alias="RELAY_PUBLIC_URL")
    # Peers (addresses, CIDRs) whose Forwarded / X-Forwarded-* headers count; none by default.
    trusted_proxies: CommaList = Field((), validation_alias="RELAY_TRUSTED_PROXIES")
    environment: str = Field("production", validation_alias="RELAY_ENVIRONMENT")
    default_model: str = Field("gpt-5-mini", validation_alias="RELAY_DEFAULT_MODEL")

    policy_file: Path | None = Field(None, validation_alias="RELAY_POLICY_FILE")
    model_allowlist: str | None = Field(None, validation_alias="RELAY_MODEL_ALLOWLIST")

    ledger_enabled: bool = Field(True, validation_alias="RELAY_LEDGER_ENABLED")
    prices_file: Path | None = Field(None, validation_alias="RELAY_PRICES_FILE")
    # A key with a dollar cap calling a model without a price: refused (403) or allowed at $0.
    unpriced: Literal["refuse", "allow"] = Field("refuse", validation_alias="RELAY_UNPRICED")

    metrics_enabled: bool = Field(True, validation_alias="RELAY_METRICS_ENABLED")
    metrics_token: SecretStr | None = Field(None, validation_alias="RELAY_METRICS_TOKEN")
    # /metrics names keys and their spend: open to anyone only when the operator says so.
    metrics_public: bool = Field(False, validation_alias="RELAY_METRICS_PUBLIC")
    request_log_enabled: bool = Field(True, validation_alias="RELAY_REQUEST_LOG_ENABLED")
    log_format: Literal["text", "json"] = Field("text", validation_alias="LOG_FORMAT")

    drain_seconds: int = Field(30, ge=0, validation_alias="RELAY_DRAIN_SECONDS")
    # Off for an app embedded in another process (the tests' in-thread relays): it is global.
    tune_gc: bool = Field(True, validation_alias="RELAY_TUNE_GC")

    connect_timeout: float = Field(10.0, gt=0, validation_alias="RELAY_CONNECT_TIMEOUT")
    read_timeout: float = Field(600.0, gt=0, validation_alias="RELAY_READ_TIMEOUT")
    idle_timeout: float = Field(300.0, gt=0, validation_alias="RELAY_IDLE_TIMEOUT")
    send_timeout: float = Field(60.0, gt=0, validation_alias="RELAY_SEND_TIMEOUT")
    max_body_bytes: int = Field(4 * 2**30, gt=0, validation_alias="RELAY_MAX_BODY_BYTES")
    max_json_bytes: int = Field(32 * 2**20, gt=0, validation_alias="RELAY_MAX_JSON_BYTES")
    upstream_connections: int = Field(512, gt=0, validation_alias="RELAY_UPSTREAM_CONNECTIONS")
    # Overrides HTTPS_PROXY/HTTP_PROXY/NO_PROXY for the connections to the upstream (egress).
    upstream_proxy: str | None = Field(None, validation_alias="RELAY_UPSTREAM_PROXY")
    upstream_ca_file: Path | None = Field(
        None, validation_alias=AliasChoices("RELAY_UPSTREAM_CA_FILE", "RELAY_UPSTREAM_CA_BUNDLE")
    )

    # GPT Actions
    actions_answer_budget: float = Field(
        35.0, gt=0, lt=45, validation_alias="RELAY_ACTIONS_ANSWER_BUDGET"
    )
    actions_file_hosts: CommaList = Field(
        DEFAULT_FILE_HOSTS, validation_alias="RELAY_ACTIONS_FILE_HOSTS"
    )
    actions_max_file_bytes: int = Field(
        100 * 2**20, gt=0, validation_alias="RELAY_ACTIONS_MAX_FILE_BYTES"
    )
    actions_link_ttl: int = Field(300, gt=0, le=3600, validation_alias="RELAY_ACTIONS_LINK_TTL")
    signing_key: SecretStr | None = Field(None, validation_alias="RELAY_SIGNING_KEY")
    actions_allow_loopback: bool = Field(False, validation_alias="RELAY_ACTIONS_ALLOW_LOOPBACK")
    actions_ca_file: Path | None = Field(None, validation_alias="RELAY_ACTIONS_CA_FILE")

    # Limits and isolation
    default_output_tokens: int = Field(
        DEFAULT_OUTPUT_TOKENS, ge=0, validation_alias="RELAY_DEFAULT_OUTPUT_TOKENS"
    )
    isolation: Literal["per_key", "shared"] = Field("per_key", validation_alias="RELAY_ISOLATION")
    test_clock_offset: float = Field(0.0, validation_alias="RELAY_TEST_CLOCK_OFFSET")

    # OAuth and MCP
    oauth_enabled: bool = Field(False, validation_alias="RELAY_OAUTH_ENABLED")
    oauth_dynamic_registration: bool = Field(
        True, validation_alias="RELAY_OAUTH_DYNAMIC_REGISTRATION"
    )
    oauth_access_ttl: int = Field(3600, gt=0, le=86400, validation_alias="RELAY_OAUTH_ACCESS_TTL")
    oauth_refresh_ttl: int = Field(30 * 86400, gt=0, validation_alias="RELAY_OAUTH_REFRESH_TTL")
    # Dynamic registrations one client address may make in an hour (ChatGPT registers its
    # connectors from OpenAI's addresses, so a large team may need more).
    oauth_registrations_per_hour: int = Field(
        20, gt=0, validation_alias="RELAY_OAUTH_REGISTRATIONS_PER_HOUR"
    )
    mcp_vector_stores: CommaList = Field((), validation_alias="RELAY_MCP_VECTOR_STORES")

    @field_validator("openai_base_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
            raise ValueError("must be an http:// or https:// URL without query or fragment")
        return value.rstrip("/")

    @field_validator("policy_file", "prices_file", "upstream_ca_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"names no readable file ({value})")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        trusted_networks(value)
        return value


_S = TypeVar("_S", bound=StoreSettings)


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return str(alias or field.upper())


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; raise ConfigError naming the first bad variable."""
    return _load(Settings, overrides)


def load_store_settings() -> StoreSettings:
    """The settings of the operator's commands, read as `serve` reads them."""
    return _load(StoreSettings, {})


def _load(kind: type[_S], overrides: dict[str, Any]) -> _S:
    try:
        return kind(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        name = _env_name(field) if field in Settings.model_fields else field
        problem = "is required" if error["type"] == "missing" else error["msg"]
        raise ConfigError(f"configuration error: {name} {problem}".rstrip()) from None
