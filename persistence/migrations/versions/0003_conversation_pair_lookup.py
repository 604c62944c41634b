"""conversation participant index covers the whole pair

The (account_id, participant_b) index served the participant filter, but the planner also
picked it for the pair lookup of every accept (account, participant_a, participant_b) when
its statistics were stale (a fast-growing table): since most conversations of an account
share its sender number, that index scan then walked every conversation of the account, and
each accept got slower as the table grew. With participant_a appended, either index answers
the pair lookup with a full-key match, whatever the planner picks.
"""

from persistence.migrations.ddl import TableDDL

revision: str = "0003"
down_revision: str | None = "0002"

CONVERSATIONS = TableDDL("conversations")


def upgrade() -> None:
    CONVERSATIONS.drop_index("account_id", "participant_b")
    CONVERSATIONS.create_index("account_id", "participant_b", "participant_a")


def downgrade() -> None:
    CONVERSATIONS.drop_index("account_id", "participant_b", "participant_a")
    CONVERSATIONS.create_index("account_id", "participant_b")
