"""Delivery channels and message directions."""

from __future__ import annotations

import enum


class Channel(enum.StrEnum):
    SMS = "SMS"
    MMS = "MMS"
    EMAIL = "EMAIL"


class Direction(enum.StrEnum):
    OUTBOUND = "OUTBOUND"
    INBOUND = "INBOUND"
