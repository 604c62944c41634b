"""conversation participant index covers the whole pair

The (account_id, participant_b) index served the participant filter, but the planner also
picked it for the pair lookup of every accept (account, participant_a, participant_b) when
its statistics were stale (a fast-growing table): since most conversations of an account
share its sender number, that index scan then walked every conversation of the account, and
each accept got slower as the table grew. With participant_a appended, either index answers
the pair lookup with a full-key match, whatever the planner picks.
"""

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    op.drop_index(op.f("ix_conversations_account_id_participant_b"), table_name="conversations")
    op.create_index(
        op.f("ix_conversations_account_id_participant_b_participant_a"),
        "conversations",
        ["account_id", "participant_b", "participant_a"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_conversations_account_id_participant_b_participant_a"),
        table_name="conversations",
    )
    op.create_index(
        op.f("ix_conversations_account_id_participant_b"),
        "conversations",
        ["account_id", "participant_b"],
        unique=False,
    )
