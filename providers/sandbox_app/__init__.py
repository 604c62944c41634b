"""A local stand-in for the vendors' HTTP APIs (Twilio, SendGrid, Mailgun, Telnyx), in their
wire formats.

The real adapters talk to it over HTTP; it answers like the vendors, sends signed status
callbacks after a delay, and fails on demand (429 / 500 / timeouts, per-recipient rules,
outages). Mounted in the gateway in embedded mode, or run alone with :func:`run_sandbox`.
"""

from providers.sandbox_app.app import create_sandbox_app
from providers.sandbox_app.config import INJECTABLE_FIELDS, SandboxConfig
from providers.sandbox_app.core import Fault, Sandbox
from providers.sandbox_app.main import run_sandbox

__all__ = [
    "INJECTABLE_FIELDS",
    "Fault",
    "Sandbox",
    "SandboxConfig",
    "create_sandbox_app",
    "run_sandbox",
]
