from gateway.domain import Channel, Direction


def test_channel_values_are_the_graphql_enum_names() -> None:
    assert [c.value for c in Channel] == ["SMS", "MMS", "EMAIL"]
    assert all(c.value == c.name for c in Channel)


def test_direction_values_are_the_graphql_enum_names() -> None:
    assert [d.value for d in Direction] == ["OUTBOUND", "INBOUND"]


def test_enums_compare_and_format_as_plain_strings() -> None:
    # Stored as text columns and serialized as-is, so they must behave as their value.
    assert Channel("MMS") is Channel.MMS
    assert Channel.SMS == "SMS"
    assert f"{Channel.EMAIL}" == "EMAIL"
    assert str(Direction.INBOUND) == "INBOUND"
