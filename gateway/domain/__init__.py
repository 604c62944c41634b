"""Pure domain rules of the messaging gateway: no I/O, no framework, no project imports."""

from .addresses import AddressError, conversation_key, is_http_url, normalize_email, normalize_phone
from .channels import Channel, Direction
from .ids import new_id
from .messages import (
    DEFAULT_LIMITS,
    FieldProblem,
    Limits,
    NormalizedMessage,
    SendRequest,
    validate_send,
)
from .segments import SegmentInfo, count_segments, split_segments
from .statuses import (
    TERMINAL,
    MessageStatus,
    can_advance,
    can_cancel,
    can_requeue,
    can_retry,
    rank,
)

__all__ = [
    "DEFAULT_LIMITS",
    "TERMINAL",
    "AddressError",
    "Channel",
    "Direction",
    "FieldProblem",
    "Limits",
    "MessageStatus",
    "NormalizedMessage",
    "SegmentInfo",
    "SendRequest",
    "can_advance",
    "can_cancel",
    "can_requeue",
    "can_retry",
    "conversation_key",
    "count_segments",
    "is_http_url",
    "new_id",
    "normalize_email",
    "normalize_phone",
    "rank",
    "split_segments",
    "validate_send",
]
