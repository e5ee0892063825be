"""Typed settings: packaged defaults < config.toml < KOLAQ_<SECTION>__<KEY> < the seed's names.

Secrets never come from the file: they are read from the environment only (see `Secrets`).

Longer than ~400 lines on purpose: every setting with its type, default, check and docstring
in one schema, so the settings reference is one file.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kolaq_console import dburl
from kolaq_console.errors import KolaqError

log = logging.getLogger(__name__)

ENV_PREFIX = "KOLAQ_"
CONFIG_ENV = "KOLAQ_CONFIG"


class ConfigError(KolaqError):
    """A configuration problem, worded for the operator: where it is and what was expected."""


class Section(BaseModel):
    # A typo in the file must be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ShopSettings(Section):
    name: str = Field(default="Kolaq Bitters", min_length=1, max_length=200)
    """Shown in email layouts and the console header."""
    timezone: str = "Africa/Lagos"
    """IANA zone of the shop's clock; schedules (02:00, 08:00) run on it."""
    public_url: str = "http://127.0.0.1:8080"
    """Base of links in emails (unsubscribe, order pages)."""
    currency: str = "NGN"
    """ISO 4217 code used when an order does not name one."""
    operator: str = Field(default="", max_length=120)
    """Name written to the activity log for console/CLI actions; empty means $USER."""
    country: str = "NG"
    """ISO 3166 country of the shop: phone numbers written without +country code are read as
    numbers of this country (0803 123 4567 -> +234 803 123 4567)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Africa/Lagos')") from exc
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"expected a 3-letter ISO 4217 code such as 'NGN', got {value!r}")
        return value

    @field_validator("country")
    @classmethod
    def _phone_region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"expected an ISO 3166 country code such as 'NG', got {value!r}")
        return value.upper()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseSettings(Section):
    url: str = "sqlite:///var/kolaq.db"
    """SQLAlchemy URL. Relative SQLite paths resolve against the config file's folder."""
    echo: bool = False
    """Log every SQL statement (debugging only)."""

    @field_validator("url")
    @classmethod
    def _parsable(cls, value: str) -> str:
        try:  # SQLAlchemy's grammar, without importing SQLAlchemy (start-up time)
            backend = dburl.backend_name(value)
        except Exception as exc:
            raise ValueError(f"not a SQLAlchemy URL: {value!r}") from exc
        if backend not in {"sqlite", "postgresql"}:
            raise ValueError(f"expected a sqlite:// or postgresql:// URL, got {value!r}")
        return value


class QueueSettings(Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    """'sqlite' (embedded, default) or 'redis' (production, priority queue). When not set
    explicitly (file or KOLAQ_QUEUE__BACKEND), REDIS_URL/REDIS_HOST/REDIS_PORT select 'redis'."""
    name: str = Field(default="kolaq", min_length=1, max_length=64,
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    """Huey instance name; also the key prefix in Redis and the queue name in SQLite."""
    sqlite_path: str = Field(default="var/queue.db", min_length=1)
    """SqliteHuey file when backend = 'sqlite'."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL when backend = 'redis' (REDIS_URL, or REDIS_HOST/REDIS_PORT, override it)."""
    workers: int = Field(default=4, ge=1, le=64)
    """Worker threads per consumer process."""
    retries: int = Field(default=3, ge=0, le=20)
    """Retries after the first attempt for retryable failures."""
    retry_delay: float = Field(default=5.0, ge=0, le=3600, allow_inf_nan=False)
    """Seconds before the first retry."""
    retry_backoff: float = Field(default=5.0, ge=1, le=10, allow_inf_nan=False)
    """Each later retry waits this many times longer (5 s, 25 s, 125 s)."""
    poll_interval: float = Field(default=0.1, gt=0, le=60, allow_inf_nan=False)
    """Seconds between polls when work is arriving."""
    max_poll_interval: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)
    """Ceiling of the idle back-off, so an idle queue notices new work quickly."""
    scheduler_interval: float = Field(default=1.0, ge=0.02, le=60, allow_inf_nan=False)
    """Seconds between the scheduler's looks for due delayed jobs (retries): a retry starts up
    to this late. Huey's own floor is 1 s; the tests' scaled-down schedules go lower."""
    shutdown_timeout: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    """Seconds a graceful stop (SIGTERM/SIGINT) waits for running jobs before interrupting them."""
    outage_max_delay: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    """While the queue storage is unreachable, workers pause between attempts, doubling the
    pause up to this many seconds (so they notice its return within it)."""
    periodic: bool = True
    """Run periodic tasks in this consumer. Exactly one consumer per deployment should."""


class EmailSettings(Section):
    transport: Literal["dev", "resend"] = "dev"
    """'dev' writes .eml files to outbox_dir (no key); 'resend' sends through Resend."""
    from_address: str = "Kolaq Bitters <orders@kolaq.example>"
    """Sender of every email."""
    admin_email: str = "admin@kolaq.example"
    """Recipient of low-stock alerts and test sends (ADMIN_EMAIL overrides)."""
    support_email: str = "support@kolaq.example"
    """Reply-to and contact shown to customers (SUPPORT_EMAIL overrides)."""
    outbox_dir: str = Field(default="var/outbox", min_length=1)
    """Where the dev transport writes .eml files."""
    templates_dir: str = ""
    """Optional folder whose templates override the packaged ones, file by file."""
    rate_limit_per_second: float = Field(default=2.0, ge=0, le=10_000, allow_inf_nan=False)
    """Provider requests per second, shared by every worker (adapts to ratelimit-* headers).
    0: no client-side limit (a plan without one, the local stand-in): requests are not paced
    and advertised limits are not followed, but a 429's retry-after or an exhausted quota still
    holds every worker (each process re-reads such blocks at least once a second)."""
    lease_seconds: float = Field(default=300.0, gt=0, le=86_400, allow_inf_nan=False)
    """An outbox row left queued/sending this long is re-enqueued by the sweeper."""
    request_timeout: float = Field(default=30.0, gt=0, le=600, allow_inf_nan=False)
    """Seconds to wait for the provider before treating the call as a network error."""
    api_url: str = ""
    """Base URL of the Resend API; empty means the SDK's default. RESEND_API_URL overrides it
    (tests point it at the local stand-in)."""
    max_limiter_wait: float = Field(default=5.0, ge=0, le=600, allow_inf_nan=False)
    """Longest a worker thread sleeps for the shared rate limiter after a 429 or quota block;
    a longer wait reschedules the job instead of holding the thread."""
    broadcast_lookahead: int = Field(default=8, ge=1, le=1000)
    """Batches of 100 copies a broadcast keeps rendered and queued ahead of sending. More keeps
    more workers busy; fewer makes a pause or an unsubscribe apply to more of the list."""
    broadcast_batches_per_job: int = Field(default=8, ge=1, le=1000)
    """Batches a broadcast's job sends one after another (each claimed in the transaction that
    records the one before) before it hands over to the next job, while no rate limit paces
    the requests: fewer queue round trips per email. Another job of the same band waits for
    at most this many batches (or about a second) for the thread."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=16 * 1_048_576)
    """Largest body (text or Markdown, UTF-8 bytes) of a generic or broadcast email; a larger
    one is refused before anything is stored."""


class WhatsAppTemplate(Section):
    content_sid: str
    """The approved content template's id in Twilio's Content API (HX + 32 hex digits)."""
    variables: list[str] = []
    """Names of this kind's values for the template's {{1}}, {{2}}, ... in that order (see
    `kolaq-console sms kinds` for each kind's names)."""

    @field_validator("content_sid")
    @classmethod
    def _content_sid(cls, value: str) -> str:
        if not re.fullmatch(r"HX[0-9a-fA-F]{32}", value):
            raise ValueError(f"expected a content template id HX + 32 hex digits, got {value!r}")
        return value


class SmsSettings(Section):
    transport: Literal["dev", "twilio"] = "dev"
    """'dev' writes a text file per message to outbox_dir (no account); 'twilio' sends."""
    channel: Literal["sms", "whatsapp"] = "sms"
    """Channel of `sms queue` when --channel is not given."""
    from_number: str = ""
    """The shop's Twilio number (E.164) that sends SMS; required by the twilio transport."""
    whatsapp_from: str = ""
    """The shop's WhatsApp sender (E.164); empty means from_number."""
    admin_phone: str = ""
    """Where the low-stock alert goes by SMS/WhatsApp (E.164 or a number of [shop] country)."""
    max_segments: int = Field(default=3, ge=1, le=10)
    """An SMS body longer than this many segments (153 GSM-7 or 67 UCS-2 characters each once
    split) is refused before anything is stored."""
    outbox_dir: str = "var/outbox"
    """Where the dev transport writes one .txt file per message."""
    rate_limit_per_second: float = Field(default=1.0, ge=0, le=1000)
    """Messages per second sent to Twilio, shared by every worker (the sender's throughput;
    0 = no client-side pacing, a 429 still pauses every worker)."""
    lease_seconds: float = Field(default=300.0, gt=0, le=86_400)
    """A message left queued/sending this long is picked up again by the sweeper; one found
    `sending` is first looked up in Twilio's message list (it may have gone out)."""
    request_timeout: float = Field(default=30.0, gt=0, le=600)
    """Seconds to wait for Twilio before the call counts as a network error."""
    api_url: str = ""
    """Base URL of Twilio's REST API; empty means the SDK's (https://api.twilio.com).
    TWILIO_API_URL overrides it (tests point it at the local stand-in)."""
    status_callback: bool = True
    """Ask Twilio for delivery states at [shop] public_url + /webhooks/twilio."""
    lookup_limit: int = Field(default=200, ge=10, le=1000)
    """Most messages to one recipient read from Twilio's list when checking whether a message
    whose worker died went out; a longer history makes the answer `unknown`."""
    max_limiter_wait: float = Field(default=5.0, ge=0, le=3600)
    """Longest a worker thread sleeps for the shared rate limiter; longer reschedules."""
    whatsapp_templates: dict[str, WhatsAppTemplate] = {}
    """Per kind, the approved WhatsApp template and its variables; WhatsApp refuses a kind
    without one (the shop may not start a WhatsApp conversation with free text)."""

    @field_validator("from_number", "whatsapp_from", "admin_phone")
    @classmethod
    def _e164_or_empty(cls, value: str) -> str:
        if value and not re.fullmatch(r"\+?[0-9 ()-]{6,20}", value):
            raise ValueError(f"expected a phone number such as '+2348031234567', got {value!r}")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> SmsSettings:
        # A worker still inside its Twilio call must not be taken for dead: the next attempt
        # would find nothing in the list yet and send a second message.
        if self.lease_seconds <= self.request_timeout + self.max_limiter_wait:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must be more than request_timeout "
                f"({self.request_timeout}) + max_limiter_wait ({self.max_limiter_wait}), or a "
                "slow send could be taken for a lost one and sent twice")
        return self

    @field_validator("whatsapp_templates")
    @classmethod
    def _template_kinds(cls, value: dict[str, WhatsAppTemplate]) -> dict[str, WhatsAppTemplate]:
        from kolaq_console.sms.kinds import check_template_variables

        for kind, template in value.items():
            check_template_variables(kind, template.variables)  # ValueError names the problem
        return value


NOTIFICATION_CHANNELS = ("email", "sms", "whatsapp")
ChannelList = list[Literal["email", "sms", "whatsapp"]]


class NotificationsSettings(Section):
    """Which channels each kind of customer notice uses. A customer gets SMS or WhatsApp only
    with their number and consent for that channel; email needs no opt-in for these."""

    order_confirmation: ChannelList = ["email", "sms"]
    """When an order is paid."""
    shipping_notification: ChannelList = ["email", "sms"]
    """When an order ships (carrier and tracking link)."""
    order_status_update: ChannelList = ["email", "sms"]
    """Other status changes (delivered, cancelled, refunded, ...)."""
    low_stock: ChannelList = ["email"]
    """The admin's low-stock alert ([email] admin_email, [sms] admin_phone)."""

    @field_validator("*", mode="before")
    @classmethod
    def _from_env_text(cls, value: Any) -> Any:
        """KOLAQ_NOTIFICATIONS__<KIND>="email,sms" (or a JSON list) from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                try:
                    return json.loads(text)
                except ValueError:
                    return value
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    def channels(self, kind: str) -> list[str]:
        return list(getattr(self, kind, ["email"]))


class InventorySettings(Section):
    low_stock_threshold: int = Field(default=10, ge=0, le=2_000_000_000)
    """Default threshold for products without their own; at or below it counts as low."""
    reconcile_cron: str = "0 2 * * *"
    """When reconciliation runs, in the shop's time zone (minute hour day month weekday)."""
    low_stock_cron: str = "0 8 * * *"
    """When the low-stock check runs, in the shop's time zone."""
    full_reconcile_cron: str = "30 2 * * 0"
    """When the full (non-incremental) reconciliation runs, in the shop's time zone."""
    catch_up_cron: str = "*/5 * * * *"
    """How often consumers look for a schedule slot of today that no consumer ran (the shop was
    down at 08:00, say) and run it once, and send low-stock follow-ups for products that fell
    low after today's check."""
    lock_ttl_seconds: float = Field(default=600.0, gt=0, le=86_400, allow_inf_nan=False)
    """Reconciliation lease: a run renews it as it goes; a crashed run's lock (and its claim on
    a schedule slot) expires after this many seconds."""
    max_adjustment: int = Field(default=1_000_000, ge=1, le=2_000_000_000)
    """Most units one `inventory adjust` may add or remove (a typo guard); larger is refused."""
    max_stock: int = Field(default=1_000_000_000, ge=1, le=2_000_000_000)
    """Most units a product may hold (either sign): an adjustment past it is refused, and a
    reconciliation that finds a product beyond it reports it."""

    @field_validator("reconcile_cron", "low_stock_cron", "full_reconcile_cron", "catch_up_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from kolaq_console.cron import parse_cron

        parse_cron(value)  # CronError is a ValueError: reported with the setting's location
        return value


class JobsSettings(Section):
    lease_seconds: float = Field(default=120.0, gt=0, le=86_400, allow_inf_nan=False)
    """An in-flight job whose worker has not beaten its heart this long is treated as lost:
    re-enqueued if its task is declared safe to re-run, else listed as interrupted, and the
    emails it was sending are handed back. Workers look for such jobs at start-up, at every
    heartbeat, and in a periodic task; a worker on the same machine whose process is provably
    gone (kill -9) is taken over at once, without waiting for the lease."""
    heartbeat_seconds: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    """How often a worker records that it is alive (keep it well under lease_seconds)."""
    flush_seconds: float = Field(default=0.5, gt=0, le=10, allow_inf_nan=False)
    """Longest a worker holds ledger writes (in-flight jobs, statistics) before writing them in
    one batch. Terminal failures are always written at once. A worker killed within this
    window of starting a job leaves no in-flight record of it."""
    stats_retention_hours: int = Field(default=24, ge=1, le=24 * 366)
    """How long per-minute throughput/error statistics are kept."""

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> JobsSettings:
        if self.heartbeat_seconds + self.flush_seconds >= self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) + flush_seconds "
                f"({self.flush_seconds}) must be less than lease_seconds ({self.lease_seconds}), "
                "or live workers would be taken for dead"
            )
        return self


class WebhooksSettings(Section):
    host: str = Field(default="127.0.0.1", min_length=1)
    """Address `webhooks serve` binds to."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port `webhooks serve` listens on."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    """Largest request body accepted; a larger one is refused with 413 before it is read."""
    tolerance_seconds: float = Field(default=300.0, ge=1, le=3600)
    """How far a signed timestamp (Stripe, Resend) may be from now; older ones are replays."""
    lease_seconds: float = Field(default=300.0, gt=0, le=86_400)
    """A stored event still unprocessed this long after it arrived (or after its last failed
    attempt) is re-enqueued by the sweeper: its job was lost."""
    shutdown_seconds: float = Field(default=10.0, gt=0, le=300)
    """On SIGTERM/SIGINT the server stops accepting and waits this long for requests in flight."""


class AlertsSettings(Section):
    reconciliation_report_hours: float = Field(default=24.0, ge=0, le=24 * 31)
    """An admin email when a reconciliation finds drift no event explains, at most once per
    this many hours (0: never)."""
    failed_jobs_per_hour: int = Field(default=10, ge=0, le=1_000_000)
    """A system notification to the admin when this many jobs failed for good within the last
    hour (0: never)."""
    failed_jobs_alert_hours: float = Field(default=6.0, gt=0, le=24 * 31)
    """...sent at most once per this many hours."""


class ConsoleSettings(Section):
    refresh_seconds: float = Field(default=2.0, ge=0.5, le=60, allow_inf_nan=False)
    """How often the console refreshes its panels."""


class WebSettings(Section):
    host: str = Field(default="127.0.0.1", min_length=1)
    """Address `kolaq-console web` binds to. The web console has no login of its own: anything
    but a loopback address (127.x, ::1, localhost) is refused unless allow_remote is true."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port `kolaq-console web` listens on."""
    public_url: str = ""
    """The address browsers open, e.g. https://console.example.com behind a proxy; empty:
    http://host:port. The page's websocket URL is built from it, and a websocket whose Origin
    is neither it nor the bound address is refused (403)."""
    allow_remote: bool = False
    """Allow binding a non-loopback address. Only behind a proxy that asks for a login
    (README: "The console in a browser")."""

    @field_validator("public_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"expected empty or an http(s)://host[:port] URL, got {value!r}")
        return value.rstrip("/")


SECRET_ENV = {
    "resend_api_key": "RESEND_API_KEY",
    "paystack_secret_key": "PAYSTACK_SECRET_KEY",
    "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "resend_webhook_secret": "RESEND_WEBHOOK_SECRET",
    "signing_key": "KOLAQ_SIGNING_KEY",
    "twilio_account_sid": "TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
}


@dataclass(frozen=True)
class Secrets:
    """Secrets, read from the environment only. `SecretStr` keeps them out of repr and logs."""

    resend_api_key: SecretStr | None = None
    paystack_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    resend_webhook_secret: SecretStr | None = None
    signing_key: SecretStr | None = None
    twilio_account_sid: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Secrets:
        values = {
            attr: SecretStr(environ[name]) for attr, name in SECRET_ENV.items() if environ.get(name)
        }
        return cls(**values)

    def values(self) -> list[str]:
        return [s.get_secret_value() for s in vars(self).values() if s is not None]


def _seed_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The names the NestJS module used (ADMIN_EMAIL, REDIS_HOST, ...); they win over KOLAQ_*."""
    out: dict[str, dict[str, Any]] = {}
    if env.get("ADMIN_EMAIL"):
        out.setdefault("email", {})["admin_email"] = env["ADMIN_EMAIL"]
    if env.get("SUPPORT_EMAIL"):
        out.setdefault("email", {})["support_email"] = env["SUPPORT_EMAIL"]
    if env.get("RESEND_API_URL"):
        out.setdefault("email", {})["api_url"] = env["RESEND_API_URL"]
    if env.get("TWILIO_API_URL"):
        out.setdefault("sms", {})["api_url"] = env["TWILIO_API_URL"]
    if env.get("REDIS_URL"):
        out.setdefault("queue", {})["redis_url"] = env["REDIS_URL"]
    elif env.get("REDIS_HOST") or env.get("REDIS_PORT"):
        host = env.get("REDIS_HOST") or "127.0.0.1"
        port = env.get("REDIS_PORT") or "6379"
        if not port.isdigit():
            raise ConfigError(
                f"environment variable REDIS_PORT: expected a port number, got {port!r}"
            )
        out.setdefault("queue", {})["redis_url"] = f"redis://{host}:{port}/0"
    return out


REDIS_ENV = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT")


def _choose_queue_backend(merged: dict[str, dict[str, Any]], data: dict[str, Any],
                          env: Mapping[str, str], path: Path | None) -> None:
    """The seed's Redis variables select the Redis backend unless `[queue] backend` was set
    explicitly (file or KOLAQ_QUEUE__BACKEND); an explicit "sqlite" wins, with a warning."""
    given = [name for name in REDIS_ENV if env.get(name)]
    if not given:
        return
    env_name = f"{ENV_PREFIX}QUEUE__BACKEND"
    if env.get(env_name):
        explicit, where = env[env_name], f"environment variable {env_name}"
    elif isinstance(data.get("queue"), dict) and "backend" in data["queue"]:
        explicit, where = data["queue"]["backend"], f"{path}: [queue] backend"
    else:
        merged.setdefault("queue", {})["backend"] = "redis"
        return
    if explicit == "sqlite":
        log.warning("%s %s set but %s = \"sqlite\": %s ignored, the SQLite queue is used",
                    "/".join(given), "is" if len(given) == 1 else "are", where,
                    "it is" if len(given) == 1 else "they are")


SEED_ENV = {
    ("email", "admin_email"): "ADMIN_EMAIL",
    ("email", "support_email"): "SUPPORT_EMAIL",
    ("email", "api_url"): "RESEND_API_URL",
    ("sms", "api_url"): "TWILIO_API_URL",
    ("queue", "redis_url"): "REDIS_URL or REDIS_HOST/REDIS_PORT",
}


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """KOLAQ_<SECTION>__<KEY>, shaped like the settings (pydantic-settings' nested style)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


def _merge(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            if isinstance(values, dict):
                merged.setdefault(section, {}).update(values)
            else:
                merged[section] = values
    return merged


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    shop: ShopSettings = ShopSettings()
    database: DatabaseSettings = DatabaseSettings()
    queue: QueueSettings = QueueSettings()
    email: EmailSettings = EmailSettings()
    inventory: InventorySettings = InventorySettings()
    jobs: JobsSettings = JobsSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    alerts: AlertsSettings = AlertsSettings()
    console: ConsoleSettings = ConsoleSettings()
    web: WebSettings = WebSettings()
    sms: SmsSettings = SmsSettings()
    notifications: NotificationsSettings = NotificationsSettings()

    # Not settings: where they came from, and the environment-only secrets.
    source: str = Field(default="packaged defaults", exclude=True)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True, repr=False)

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() merges file, KOLAQ_* and seed names itself so that it can say which
        # of them a bad value came from; Settings() alone still honours KOLAQ_* like any
        # pydantic-settings model.
        return (init_settings, env_settings)

    def operator(self) -> str:
        return self.shop.operator or os.environ.get("USER") or "operator"


SECTIONS = {
    name: f.annotation
    for name, f in Settings.model_fields.items()
    if name not in {"source", "secrets"}
}

_SECRET_KEY_RE = re.compile(r"(secret|password|passwd|token|api_key|_key$|^key$)", re.I)
_SECRET_VALUE_RE = re.compile(r"\b(re_[A-Za-z0-9_]{8,}|whsec_\S{8,}|sk_(live|test)_\S{8,})")


def _refuse_secrets(path: Path, data: dict[str, Any]) -> None:
    for section, values in data.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            where = f"{path}: [{section}] {key}"
            if _SECRET_KEY_RE.search(key) or (
                isinstance(value, str) and _SECRET_VALUE_RE.search(value)
            ):
                raise ConfigError(
                    f"{where}: secrets are read only from the environment "
                    f"({', '.join(SECRET_ENV.values())}); remove it from the file"
                )
            if key.endswith("url") and isinstance(value, str) and "://" in value:
                try:
                    has_password = dburl.has_password(value)
                except Exception:
                    has_password = False
                if has_password:
                    env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
                    raise ConfigError(
                        f"{where}: the URL contains a password; set the whole URL in {env} "
                        "instead of the file"
                    )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]; expected one of "
                + ", ".join(f"[{s}]" for s in SECTIONS)
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section} must be a [{section}] table")
    _refuse_secrets(path, data)
    return data


def _explain(exc: ValidationError, path: Path | None, environ: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        section, key = ([*loc, "", ""])[:2]
        env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
        seed = SEED_ENV.get((section, key))
        if seed and any(environ.get(n) for n in seed.replace(" or ", "/").split("/")):
            where = f"environment variable {seed}"
        elif env_name in environ:
            where = f"environment variable {env_name}"
        else:
            # A nested table ([sms.whatsapp_templates.KIND] content_sid) is named in full.
            table = ".".join(loc[:-1]) if len(loc) > 2 else section
            name = loc[-1] if len(loc) > 2 else key
            where = f"[{table}] {name}" if path is None else f"{path}: [{table}] {name}"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = SECTIONS.get(section)
            choices = ", ".join(known.model_fields) if known else ", ".join(SECTIONS)
            msg = f"unknown setting; expected one of: {choices}"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def config_path(environ: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """KOLAQ_CONFIG, else ./config.toml if present, else None (packaged defaults)."""
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser().resolve()
    candidate = (cwd or Path.cwd()) / "config.toml"
    return candidate.resolve() if candidate.is_file() else None


def _resolve(base: Path, value: str) -> str:
    if not value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    db = settings.database
    file = dburl.sqlite_file(db.url) if dburl.backend_name(db.url) == "sqlite" else None
    if file and file != ":memory:":
        db = db.model_copy(update={"url": dburl.sqlite_with_file(db.url, _resolve(base, file))})
    queue = settings.queue.model_copy(
        update={"sqlite_path": _resolve(base, settings.queue.sqlite_path)}
    )
    email = settings.email.model_copy(
        update={
            "outbox_dir": _resolve(base, settings.email.outbox_dir),
            "templates_dir": _resolve(base, settings.email.templates_dir),
        }
    )
    sms = settings.sms.model_copy(update={"outbox_dir": _resolve(base, settings.sms.outbox_dir)})
    return settings.model_copy(
        update={"database": db, "queue": queue, "email": email, "sms": sms}
    )


def load_settings(
    environ: Mapping[str, str] | None = None, path: Path | None = None, cwd: Path | None = None
) -> Settings:
    """Build the settings; any problem becomes a ConfigError naming the file or variable."""
    env = dict(os.environ if environ is None else environ)
    path = path or config_path(env, cwd)
    data = _read_file(path) if path is not None else {}
    merged = _merge(data, _env_overrides(env), _seed_overrides(env))
    _choose_queue_backend(merged, data, env, path)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path, env)) from None
    base = path.parent if path is not None else (cwd or Path.cwd())
    settings = _resolve_paths(settings, base)
    return settings.model_copy(
        update={
            "source": str(path) if path else "packaged defaults",
            "secrets": Secrets.from_env(env),
        }
    )
