"""Released migrations keep emitting the DDL they were released with.

A database migrated before a change to a released revision, or to a builder it calls
(``persistence/migrations/ddl.py``), would keep the old schema while one migrated after would
get the new: the revisions must stay as they were released. Each one's upgrade and downgrade are
rendered as offline SQL for each database, and their sha256 compared with the digest recorded
here when the revision was released.
"""

from __future__ import annotations

import hashlib
import io
import sys
from functools import cache
from types import ModuleType

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory

from gateway.entry.migrations import alembic_config
from persistence.models import Base

STEPS = ("upgrade", "downgrade")
DIALECTS = ("postgresql", "sqlite")
#: What SQLite cannot render without a live database: a batch rebuild reads the table it
#: copies, and 0018 reads sqlite_master. tests/integration/test_migrations.py runs them.
SQLITE_LIVE_ONLY = {
    ("0002", "downgrade"),
    ("0015c", "downgrade"),
    ("0018", "upgrade"),
    ("0018", "downgrade"),
}

#: sha256 of the offline SQL of each released revision's steps, on both databases. A new
#: revision adds its own, printed by ``python -m tests.unit.test_migration_ddl --digests``.
RELEASED: dict[tuple[str, str], str] = {
    ("0001", "upgrade"): "cfbe70bc71d0b05ed2c69c578428be93ac2ab8a5d761e80eca86aaf08dac2777",
    ("0001", "downgrade"): "6b6017adbef2ae26f91dbfe7fb5c856689d1717e9bd16a73469633d9d6b3a419",
    ("0002", "upgrade"): "bbdf7305d4460c4f90dbb6411064e11bb2631510ee0f1b3843ce69244409ec35",
    ("0002", "downgrade"): "edabb11725804224b7e5b9f05acd0562b94c26f68a7418b1acd527d3ae732900",
    ("0003", "upgrade"): "a89b72e3965b5cda0ad55d3b6a948c33546feb578bb983841e09f1c71bbbecba",
    ("0003", "downgrade"): "0a490bead294fec2cb159629aa1a56e82a9a95f8bffccbd1c8012850ef68577a",
    ("0004", "upgrade"): "9cbc75bc42483ad21f9768b5c8228b902f94bb9e4a91ccf6734eec15ed0c5d67",
    ("0004", "downgrade"): "65cf26da3127f01b3de55df74d30b003a1bff873b76a9574bdb1225c9a9498d8",
    ("0005", "upgrade"): "404569d60e5fbb8338cc0df7d34565398e241c4de5c6a25b2c105924274ab46c",
    ("0005", "downgrade"): "3afa64e66f4cc5b53b6582a230073673b1b442a05f7f93607031d0522eda34ff",
    ("0006", "upgrade"): "fc26c1140a87ce3af2ca972fcd472d97879da9de740592e3a898404021abf091",
    ("0006", "downgrade"): "06bf3e6a1670ec86fbdeca0da307ad0d2b9abf266123e673d5b4d47f6e684b88",
    ("0007", "upgrade"): "8ccd9c3ffc4bf3c391f525b8184354103ed68bf879fcc7d9a071246c3e98efb0",
    ("0007", "downgrade"): "f965c925048b20b45178d3ff002bf44499847ac0e9a1399e794da20ef7b1812d",
    ("0008", "upgrade"): "1ba3f715c456c2d3bb28a0bcf44ca16b9718cd3ba651f60e7776cd273045c2d2",
    ("0008", "downgrade"): "99c4326d07a10b53e47e223b82831737eebe54978bb03281b9db9a570d929185",
    ("0009", "upgrade"): "26ee7423e2c3ac6c65aa3a1b56bac9dd5d526bd72bfd68a864cf811ce140d422",
    ("0009", "downgrade"): "d6283886cb7e779a7c7324003a5717f64dd1553d11fb3b3251ad8d2385f8932e",
    ("0010", "upgrade"): "8beaeb81a0c943f055d5d66e1d29fc13f9b242505c081e178c4d376c794dc768",
    ("0010", "downgrade"): "66174dd78626821ef5bb80e145e6513a528d712e1079ed1c4120de6f6359c5ad",
    ("0011", "upgrade"): "7fcb674aef34ca3c02af87471bf89b346cf1f918489f3a9bf46eb2ad69917b28",
    ("0011", "downgrade"): "e16a213d8dcf4cc5a0c9a1945e3400d4710de1521d6a3cf9307a0889d6b07595",
    ("0012", "upgrade"): "08034ed339a518ec5bd4e88c3ef233db5c4ab9073c3898af8b57b1eee795f313",
    ("0012", "downgrade"): "649a2fbebb6be3a097a52eb4a7846fdfd3d6a7c6aacd7d306e32d982976eee93",
    ("0013", "upgrade"): "ccbfa87508e5803411d72fd038149b3b0f5da32bf6a92a74c49f7e6d02c01192",
    ("0013", "downgrade"): "a13dfec6fba9d5cc40863aef83416235d09b8586f270d09a24bdafc967673de5",
    ("0015", "upgrade"): "6d3921e1055ac0d4bffc36915dfdb7f3286aa6bdbcc87298a89c3835bd8abdd7",
    ("0015", "downgrade"): "6cf9d7ffca6a4c872f118087ac2b876ff217fda50bdb19e29a84e2855c6d53fd",
    ("0015b", "upgrade"): "13c95f736f21565d445eb33d860624b9b82926db1eace59aa2ba5bdaaa6f8486",
    ("0015b", "downgrade"): "f0f876f4868ab8a9b1c926ff7db80013848f3d8868cb0cf1f260a179f453e923",
    ("0015c", "upgrade"): "3ee354f0a33b5bc82458caabea284cedfd7b29839d56723c2cd247e4aa52048f",
    ("0015c", "downgrade"): "bc7058453a522202070cf0ec84f91c6aa8bd8e85f597649c4106eb36afeb7e56",
    ("0016", "upgrade"): "54e72636c5ac5134681daf7325d985e8c4e6f142c9e8ce25f1abcbafd24d5d0e",
    ("0016", "downgrade"): "5d518bb0058783867d3d878f307d72f20afd69543e30fc1727da7e8580ad765f",
    ("0016b", "upgrade"): "6da74fadfd50906c0709c7456e8b7c1adc21b132e16390a5f6b67b044632feac",
    ("0016b", "downgrade"): "b166531b49b98de3e6acd44b4d99921d5afd247f03b39f9968a2e40e91b76efe",
    ("0017", "upgrade"): "2d960d180029475dfa0c25dfbae15b2f76640f1669312c8d39b00ea64f88df2a",
    ("0017", "downgrade"): "ada19640478868bf22dec7cb3347449ce18f8345950a49c3fc1b5b6caf227010",
    ("0018", "upgrade"): "0c5c5edf64c05ad126d98a2cf45efeeb258bebbd74b9d35e10f3c56a9610a703",
    ("0018", "downgrade"): "1de44e318e0b0534c7f0390b9694df6da85c1a8f6609db3a6ca9cf26f2fb1a70",
    ("0019", "upgrade"): "6604701bb8d36ece83313cd6bbe43298b4b0aa5a75698e0ca8e529b1377aedd8",
    ("0019", "downgrade"): "52c09081283b0efcda7c27d3c42134c853d92e0c26812a6c2594d07c953a2dc3",
}


@cache
def _revisions() -> dict[str, ModuleType]:
    script = ScriptDirectory.from_config(alembic_config())
    return {r.revision: r.module for r in reversed(list(script.walk_revisions("base", "heads")))}


def render(dialect: str, revision: str, step: str) -> str:
    """The SQL a revision's step emits, with the options ``persistence/migrations/env.py`` sets."""
    sql = io.StringIO()
    context = MigrationContext.configure(
        dialect_name=dialect,
        opts={
            "as_sql": True,
            "output_buffer": sql,
            "target_metadata": Base.metadata,
            "render_as_batch": dialect == "sqlite",
        },
    )
    with Operations.context(context):
        getattr(_revisions()[revision], step)()
    return sql.getvalue()


def rendered(revision: str, step: str) -> str:
    """The SQL of a revision's step on each database that renders it offline."""
    return "".join(
        f"-- {dialect}\n{render(dialect, revision, step)}"
        for dialect in DIALECTS
        if dialect != "sqlite" or (revision, step) not in SQLITE_LIVE_ONLY
    )


def _digest(revision: str, step: str) -> str:
    return hashlib.sha256(rendered(revision, step).encode()).hexdigest()


@pytest.mark.parametrize(("revision", "step"), list(RELEASED))
def test_a_released_revision_emits_the_ddl_it_was_released_with(revision: str, step: str) -> None:
    assert _digest(revision, step) == RELEASED[revision, step], (
        f"the {step} of revision {revision} no longer emits the SQL it was released with: put"
        " back what changed in it or in the builders it calls (a new shape gets a new builder)."
        f" See its SQL with `python -m tests.unit.test_migration_ddl {revision} {step}`, here"
        " and at the commit that released it."
    )


def test_every_revision_is_pinned() -> None:
    steps = [(revision, step) for revision in _revisions() for step in STEPS]
    assert list(RELEASED) == steps, (
        "pin each revision's steps, in order (`python -m tests.unit.test_migration_ddl --digests`)"
    )


def _main(args: list[str]) -> None:
    if args == ["--digests"]:
        for revision in _revisions():
            for step in STEPS:
                print(f'    ("{revision}", "{step}"): "{_digest(revision, step)}",')
        return
    revision, step = args
    sys.stdout.write(rendered(revision, step))


if __name__ == "__main__":
    _main(sys.argv[1:])
