"""What the sandbox accepts (credentials) and how it misbehaves (failure injection)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.settings import Settings
from providers.signatures import (
    generate_sendgrid_keypair,
    generate_telnyx_keypair,
    sendgrid_public_key,
    telnyx_public_key,
)

__all__ = ["INJECTABLE_FIELDS", "VENDORS", "VENDOR_FIELDS", "SandboxConfig", "normalize_recipients"]

EVENT_WEBHOOK_PATH: Final = "/webhooks/sendgrid/events"
MAILGUN_WEBHOOK_PATH: Final = "/webhooks/mailgun/events"

#: Fields ``POST /control/config`` may change. Credentials and keys are not among them: anyone
#: who can reach the control API could otherwise make the sandbox sign for them.
INJECTABLE_FIELDS: Final = frozenset(
    {
        "callback_delay",
        "rate_429",
        "rate_500",
        "rate_timeout",
        "retry_after",
        "timeout_seconds",
        "invalid_recipients",
        "undeliverable_recipients",
        "bounce_recipients",
        "unsubscribed_recipients",
        "queue_overflow_recipients",
        "outage",
        "lose_callbacks",
        "seed",
        "event_webhook_url",
        "mailgun_webhook_url",
    }
)
#: The vendors the sandbox stands in for.
VENDORS: Final = ("twilio", "sendgrid", "mailgun", "telnyx")
#: The fields one vendor may have its own values of (``POST /control/config`` with ``vendor``):
#: one vendor in an outage while the others answer, say. The seed is one sequence for all.
#: A deployment starts each from the setting of its name prefixed ``sandbox_`` (a recipient set
#: written there comma-separated).
VENDOR_FIELDS: Final = INJECTABLE_FIELDS - {"seed", "event_webhook_url", "mailgun_webhook_url"}
_RATES: Final = frozenset({"rate_429", "rate_500", "rate_timeout"})
_DURATIONS: Final = frozenset({"callback_delay", "retry_after", "timeout_seconds"})
_RECIPIENT_SETS: Final = frozenset(
    {
        "invalid_recipients",
        "undeliverable_recipients",
        "bounce_recipients",
        "unsubscribed_recipients",
        "queue_overflow_recipients",
    }
)


def normalize_recipients(value: str | Iterable[str]) -> set[str]:
    """A comma-separated string or a list of addresses -> a set compared case-insensitively."""
    items = value.split(",") if isinstance(value, str) else value
    return {item.strip().lower() for item in items if item.strip()}


@dataclass
class SandboxConfig:
    """Mutable at runtime: tests and ``POST /control/config`` change it between requests."""

    twilio_account_sid: str
    twilio_auth_token: str = field(repr=False)
    sendgrid_api_key: str = field(repr=False)
    signing_key: str = field(repr=False)
    public_key: str
    event_webhook_url: str
    mailgun_api_key: str = field(repr=False)
    mailgun_domain: str
    #: The HMAC key Mailgun events are signed with (shared with the gateway, unlike SendGrid's).
    mailgun_signing_key: str = field(repr=False)
    mailgun_webhook_url: str
    # No defaults: from_settings gives every fault, and the settings' defaults are the only ones.
    callback_delay: float
    rate_429: float
    rate_500: float
    rate_timeout: float
    retry_after: float
    timeout_seconds: float
    invalid_recipients: set[str]
    undeliverable_recipients: set[str]
    bounce_recipients: set[str]
    #: Recipients who unsubscribed at the vendor: Twilio refuses to send to such a number
    #: (21610); SendGrid delivers to such an address and reports its unsubscribe.
    unsubscribed_recipients: set[str]
    #: Twilio takes a message to such a number (201), then fails it unsent with 30001 (the
    #: sender went faster than its throughput); once per message, so the retry goes through.
    queue_overflow_recipients: set[str]
    outage: bool
    #: The vendor moves its messages along (what a lookup shows) but none of its callbacks
    #: arrive: a callback lost on the way, or by a vendor that gave up retrying.
    lose_callbacks: bool
    seed: int | None = None
    #: True when ``signing_key`` was generated here: the gateway must be told ``public_key``.
    key_generated: bool = False
    callback_attempts: int = 4
    callback_backoff: float = 0.2
    #: Opens the control API to non-loopback clients that send it (X-Sandbox-Control-Token).
    control_token: str | None = field(default=None, repr=False)
    telnyx_api_key: str = field(default="", repr=False)
    #: Base64 Ed25519 private key Telnyx webhooks are signed with, and its public key.
    telnyx_signing_key: str = field(default="", repr=False)
    telnyx_public_key: str = ""
    #: True when ``telnyx_signing_key`` was generated here: the gateway must be told its key.
    telnyx_key_generated: bool = False
    #: Per vendor, the failure injection where it differs from the fields above, which hold
    #: for every vendor without a value of its own.
    vendors: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxConfig:
        if settings.sandbox_sendgrid_signing_key:
            signing_key = settings.sandbox_sendgrid_signing_key
            public_key = sendgrid_public_key(signing_key)
            generated = False
        else:
            signing_key, public_key = generate_sendgrid_keypair()
            generated = True
        if settings.sandbox_telnyx_signing_key:
            telnyx_key = settings.sandbox_telnyx_signing_key
            telnyx_public = telnyx_public_key(telnyx_key)
        else:
            telnyx_key, telnyx_public = generate_telnyx_keypair()
        public = settings.public_base_url.rstrip("/")
        event_url = settings.sandbox_event_webhook_url or public + EVENT_WEBHOOK_PATH
        faults: dict[str, Any] = {
            name: getattr(settings, f"sandbox_{name}") for name in VENDOR_FIELDS
        }
        faults |= {name: normalize_recipients(faults[name]) for name in _RECIPIENT_SETS}
        return cls(
            twilio_account_sid=settings.twilio_account_sid,
            twilio_auth_token=settings.twilio_auth_token,
            sendgrid_api_key=settings.sendgrid_api_key,
            signing_key=signing_key,
            public_key=public_key,
            event_webhook_url=event_url,
            mailgun_api_key=settings.mailgun_api_key,
            mailgun_domain=settings.mailgun_domain,
            # Unset, the gateway in the same process (embedded mode) is handed this one.
            mailgun_signing_key=settings.mailgun_webhook_signing_key or secrets.token_hex(32),
            mailgun_webhook_url=settings.sandbox_mailgun_webhook_url
            or public + MAILGUN_WEBHOOK_PATH,
            **faults,
            key_generated=generated,
            control_token=settings.sandbox_control_token or None,
            telnyx_api_key=settings.telnyx_api_key,
            telnyx_signing_key=telnyx_key,
            telnyx_public_key=telnyx_public,
            telnyx_key_generated=not settings.sandbox_telnyx_signing_key,
        )

    def of(self, vendor: str) -> SandboxConfig:
        """What ``vendor``'s stand-in answers by: this configuration with the vendor's own
        values in place (itself when the vendor has none, as on every hot path)."""
        own = self.vendors.get(vendor)
        return dataclasses.replace(self, **own) if own else self

    def injectable(self) -> dict[str, Any]:
        """The failure-injection fields, JSON-ready (sets as sorted lists)."""
        return {name: _shown(getattr(self, name)) for name in sorted(INJECTABLE_FIELDS)}

    def public_view(self) -> dict[str, Any]:
        """What ``GET /control/config`` shows: never the secrets, but the verification key."""
        return {
            **self.injectable(),
            "vendors": {
                vendor: {name: _shown(value) for name, value in sorted(own.items())}
                for vendor, own in sorted(self.vendors.items())
            },
            "twilio_account_sid": self.twilio_account_sid,
            "mailgun_domain": self.mailgun_domain,
            "public_key": self.public_key,
            "telnyx_public_key": self.telnyx_public_key,
        }

    def snapshot(self) -> SandboxConfig:
        return dataclasses.replace(
            self,
            **{name: _copied(getattr(self, name)) for name in _RECIPIENT_SETS},
            vendors={
                vendor: {name: _copied(value) for name, value in own.items()}
                for vendor, own in self.vendors.items()
            },
        )

    def apply(self, changes: Mapping[str, Any]) -> None:
        """Validate every change first, then apply all of them (or none, on ValueError).

        With ``"vendor": name`` the changes are that vendor's own values (``null`` drops
        one, so that the vendor follows the shared value again); without, the shared ones.
        """
        if "vendor" in changes:
            self._apply_to_vendor(changes)
            return
        unknown = set(changes) - INJECTABLE_FIELDS
        if unknown:
            raise ValueError(f"not configurable: {', '.join(sorted(unknown))}")
        validated = {name: _validate(name, value) for name, value in changes.items()}
        for name, value in validated.items():
            setattr(self, name, value)

    def _apply_to_vendor(self, changes: Mapping[str, Any]) -> None:
        vendor = changes["vendor"]
        if vendor not in VENDORS:
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)}")
        fields = {name: value for name, value in changes.items() if name != "vendor"}
        unknown = set(fields) - VENDOR_FIELDS
        if unknown:
            raise ValueError(f"not configurable per vendor: {', '.join(sorted(unknown))}")
        validated = {
            name: None if value is None else _validate(name, value)
            for name, value in fields.items()
        }
        own = self.vendors.setdefault(vendor, {})
        for name, value in validated.items():
            if value is None:
                own.pop(name, None)
            else:
                own[name] = value
        if not own:
            del self.vendors[vendor]


def _shown(value: Any) -> Any:
    return sorted(value) if isinstance(value, set) else value


def _copied(value: Any) -> Any:
    return set(value) if isinstance(value, set) else value


def _validate(name: str, value: Any) -> Any:
    if name in _RATES or name in _DURATIONS:
        # bool is an int to Python, but "rate_429": true is a caller's mistake, not 1.0.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        number = float(value)
        if number < 0 or (name in _RATES and number > 1):
            raise ValueError(f"{name} out of range")
        return number
    if name in _RECIPIENT_SETS:
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            return normalize_recipients(value)
        raise ValueError(f"{name} must be a list of strings or a comma-separated string")
    if name in ("outage", "lose_callbacks"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("seed must be an integer or null")
        return value
    if name in ("event_webhook_url", "mailgun_webhook_url"):
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError(f"{name} must be an http(s) URL")
        return value
    raise ValueError(f"not configurable: {name}")
