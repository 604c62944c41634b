"""Run the sandbox alone (``messaging-gateway sandbox``): for tests, benchmarks, other gateways."""

from __future__ import annotations

import uvicorn

from gateway.settings import Settings
from providers.sandbox_app.app import create_sandbox_app, serving_app
from providers.sandbox_app.config import SandboxConfig

__all__ = ["run_sandbox"]


async def run_sandbox(settings: Settings, host: str, port: int) -> None:
    """Serve until interrupted. Callbacks go to PUBLIC_BASE_URL's webhooks (or the
    configured event URLs); point the gateway's TWILIO_BASE_URL / SENDGRID_BASE_URL /
    MAILGUN_BASE_URL / TELNYX_BASE_URL here."""
    config = SandboxConfig.from_settings(settings)
    app = create_sandbox_app(config)
    if config.key_generated:
        # The key pair lives only in this process: the gateway cannot verify the signed
        # SendGrid events unless it is configured with this public key.
        print(
            "sandbox: generated a SendGrid signing key; configure the gateway with\n"
            f"  SENDGRID_WEBHOOK_PUBLIC_KEY={config.public_key}",
            flush=True,
        )
    if not settings.mailgun_webhook_signing_key:
        print(
            "sandbox: signing Mailgun events with a generated key; set the same "
            "MAILGUN_WEBHOOK_SIGNING_KEY here and in the gateway to have them verify",
            flush=True,
        )
    if config.telnyx_key_generated:
        print(
            "sandbox: generated a Telnyx signing key; configure the gateway with\n"
            f"  TELNYX_PUBLIC_KEY={config.telnyx_public_key}",
            flush=True,
        )
    print(f"sandbox: serving the vendors' APIs on http://{host}:{port}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            serving_app(app),
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            # Nothing proxies the stand-in: no X-Forwarded-* middleware on every request.
            proxy_headers=False,
        )
    )
    await server.serve()
