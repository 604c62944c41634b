"""providers.webhooks.forms.form_pairs: the same pairs as parse_qsl(keep_blank_values=True)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from providers.webhooks.forms import form_pairs

PIECES = st.sampled_from(
    ["a", "B", "=", "&", "+", "%", "%2", "%41", "%zz", "%E2%82%AC", "%FF", " ", "é", "€", ";", "_"]
)


@given(st.lists(PIECES, max_size=30).map("".join))
def test_same_pairs_as_parse_qsl(text: str) -> None:
    assert form_pairs(text) == parse_qsl(text, keep_blank_values=True)


@given(st.text(max_size=60))
def test_same_pairs_as_parse_qsl_for_any_text(text: str) -> None:
    assert form_pairs(text) == parse_qsl(text, keep_blank_values=True)


def test_a_status_callback_form() -> None:
    body = (
        "MessageSid=SM0123&MessageStatus=delivered&To=%2B15551234567&From=%2B15557654321"
        "&ErrorCode=&Body=hello+world+%E2%82%AC&ApiVersion=2010-04-01&flag"
    )
    assert form_pairs(body) == parse_qsl(body, keep_blank_values=True)
    assert dict(form_pairs(body))["To"] == "+15551234567"
