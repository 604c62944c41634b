"""One vendor's message statuses read into ours, for its webhooks and its lookups alike.

A status learnt by callback and the same status learnt by looking the message up are one
report (the same dedupe key), so whichever comes second is a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

from gateway.domain.records import DeliveryError
from gateway.domain.reports import StatusReport
from gateway.domain.statuses import MessageStatus
from gateway.services.ports import ProviderLookup

from ._fields import compact
from .records import PayloadError


@dataclass(frozen=True)
class VendorStatuses:
    #: Our name of the vendor ("twilio"), and how texts name it ("Twilio").
    provider: str
    vendor: str
    #: Each documented status (lower case): the status of ours it stands for (None: it moves
    #: none) and the kind of report it makes.
    table: Mapping[str, tuple[MessageStatus | None, str]]
    #: The statuses that end in failure and carry an error.
    failures: frozenset[str]
    #: Where the status is in a callback, for the 400 of an unknown one.
    field: str

    def read(self, raw: str) -> str:
        """A callback's status, normalized ("Delivered" and "delivered" are one report);
        PayloadError for a value the vendor does not document."""
        stripped = raw.strip()
        # A value longer than any key cannot be a status: refused before lower-casing.
        status = stripped.lower() if len(stripped) <= self._longest else ""
        if status not in self.table:
            raise PayloadError(f"{self.field} is not a known {self.vendor} message status")
        return status

    @cached_property
    def _longest(self) -> int:
        return max(map(len, self.table))

    def key(self, vendor_id: str, provider_status: str) -> str:
        """The dedupe key of what the vendor reports as ``provider_status`` for its id."""
        return f"{self.provider}:{vendor_id}:{provider_status}"

    def failure(
        self, provider_status: str, error_code: str | None, error_message: str | None
    ) -> DeliveryError | None:
        """The error a failure status carries; None for any other status.

        An error code on a non-failure status (Twilio sends some as warnings) is kept in the
        detail only: attaching it to a SENT or DELIVERED message would show it as failed.
        """
        if provider_status not in self.failures:
            return None
        return DeliveryError(
            code=error_code or provider_status.upper(),
            description=error_message
            or (
                f"{self.vendor} error {error_code}"
                if error_code
                else f"{self.vendor}: {provider_status}"
            ),
            permanent=True,
        )

    def report(
        self,
        vendor_id: str,
        message_id: UUID | None,
        provider_status: str,
        error_code: str | None,
        error_message: str | None,
        **detail: Any,
    ) -> StatusReport:
        """The report of a callback saying ``provider_status`` (read by :meth:`read`)."""
        status, kind = self.table[provider_status]
        return StatusReport(
            provider=self.provider,
            provider_message_id=vendor_id,
            message_id=message_id,
            status=status,
            kind=kind,
            dedupe_key=self.key(vendor_id, provider_status),
            error=self.failure(provider_status, error_code, error_message),
            detail=compact(
                {
                    "provider": self.provider,
                    "providerMessageId": vendor_id,
                    "providerStatus": provider_status,
                    "errorCode": error_code,
                    "errorMessage": error_message,
                    **detail,
                }
            ),
        )

    def lookup(
        self,
        vendor_id: str,
        raw_status: object,
        error_code: str | None,
        error_message: str | None,
    ) -> ProviderLookup:
        """What looking the message up says, its status as the vendor's lookup gave it."""
        provider_status = raw_status.strip().lower() if isinstance(raw_status, str) else ""
        if provider_status not in self.table:
            # A status added after this was written: nothing we can settle by.
            return ProviderLookup(
                self.provider, vendor_id, found=True, provider_status=provider_status or None
            )
        return ProviderLookup(
            self.provider,
            vendor_id,
            found=True,
            provider_status=provider_status,
            status=self.table[provider_status][0],
            error=self.failure(provider_status, error_code, error_message),
            report_key=self.key(vendor_id, provider_status),
        )
