"""Migrations run up on SQLite and PostgreSQL; out-of-date schemas are refused by name."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import Column, inspect
from sqlmodel import SQLModel

from kolaq_console.db import SchemaOutOfDate, StorageUnavailable, make_engine
from kolaq_console.schema import current_revision, head_revision, require_current, upgrade


def test_upgrade_creates_every_model_table_at_head(database_url):
    engine = make_engine(database_url)
    before, after = upgrade(engine)
    assert before is None and after == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    require_current(engine)  # does not raise
    engine.dispose()


def test_upgrade_twice_is_a_no_op(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    assert upgrade(engine) == (head_revision(), head_revision())
    engine.dispose()


# SQLite cannot reflect expression indexes, so autogenerate skips them there (with these two
# warnings); the test below checks them by name on SQLite, autogenerate compares them on
# PostgreSQL.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_migrations_match_the_models(database_url):
    """Autogenerate against a migrated database finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        if engine.dialect.name == "sqlite":
            made = set(conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
            expressions = {index.name for table in SQLModel.metadata.tables.values()
                           for index in table.indexes if index.expressions
                           and not all(isinstance(e, Column) for e in index.expressions)}
            # SQLite's ix_customers_email_lower serves that prefix range (migration 0011).
            assert expressions and expressions - {"ix_customers_email_prefix"} <= made
    assert diff == []
    engine.dispose()


def test_empty_database_is_refused_with_the_fix(database_url):
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":
        sqlite3.connect(engine.url.database).close()  # an empty file
    with pytest.raises(SchemaOutOfDate, match=r"has no schema yet.*kolaq-console db upgrade"):
        require_current(engine)
    assert inspect(engine).get_table_names() == []  # nothing was created on the way
    engine.dispose()


def test_a_missing_sqlite_file_is_refused_with_the_fix_and_not_created(tmp_path):
    path = tmp_path / "absent" / "kolaq.db"
    engine = make_engine(f"sqlite:///{path}")
    with pytest.raises(StorageUnavailable, match=r"does not exist .*: run `kolaq-console db "
                                                 r"upgrade`$"):
        require_current(engine)
    with pytest.raises(Exception, match="unable to open"):  # even a direct connection
        engine.connect()
    assert not path.parent.exists()
    upgrade(engine)  # the one command that creates it
    require_current(engine)


def test_old_revision_is_refused_with_the_fix(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000_old'")
    assert current_revision(engine) == "0000_old"
    with pytest.raises(SchemaOutOfDate, match=r"revision 0000_old.*db upgrade"):
        require_current(engine)


def test_unreachable_database_is_a_one_line_storage_error():
    engine = make_engine("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageUnavailable) as info:
        require_current(engine)
    assert "127.0.0.1:1" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_postgres_connection_killed_while_idle_in_the_pool_is_replaced_unnoticed(
    postgres_url, pg_admin, monkeypatch
):
    from sqlalchemy import text

    from kolaq_console import db

    engine = db.make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("select pg_backend_pid()")).scalar()
        pg_admin.execute("select pg_terminate_backend(%s)", (pid,))
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle "long"
        with engine.connect() as conn:
            assert conn.execute(text("select pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()


def test_the_revisions_read_without_alembic_are_alembics(database_url):
    """schema.py reads the head from the scripts and the database's revision from its table
    (start-up cost); Alembic must agree on both."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from kolaq_console.schema import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(engine) == MigrationContext.configure(conn).get_current_revision()
    engine.dispose()


def test_outbox_index_migration_goes_down_to_the_full_indexes_and_up_again(database_url):
    """0017 drops three of email_outbox's indexes and makes six partial; its downgrade puts
    every one back whole (on both databases) and the upgrade runs again on that."""
    import warnings

    from alembic import command

    from kolaq_console.schema import alembic_config

    engine = make_engine(database_url)
    upgrade(engine)

    def indexes() -> dict[str, bool]:  # name: partial
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLite's expression index is not reflected
            found = inspect(engine).get_indexes("email_outbox")
        return {i["name"]: i.get("dialect_options", {}).get(
            f"{engine.dialect.name}_where") is not None for i in found}

    at_head = indexes()
    assert "ix_email_outbox_to_address" not in at_head
    assert "ix_email_outbox_created_at" not in at_head
    assert at_head["ix_email_outbox_order_id"] and at_head["ix_email_outbox_kind"]
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016_product_stock")
    before = indexes()
    assert not before["ix_email_outbox_order_id"] and not before["ix_email_outbox_kind"]
    assert {"ix_email_outbox_to_address", "ix_email_outbox_created_at"} <= set(before)
    upgrade(engine)
    assert indexes() == at_head
    engine.dispose()


def test_outbox_tag_migration_keeps_every_earlier_sent_email_findable_by_provider_id(
        database_url):
    """0018: rows sent before it (no provider_tagged) stay in the provider-id index, which the
    webhook lookup uses; its downgrade drops the column and indexes every provider id again."""
    import warnings

    from alembic import command
    from sqlalchemy import text

    from kolaq_console.schema import alembic_config

    engine = make_engine(database_url)
    upgrade(engine, "0017_outbox_indexes")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO email_outbox (kind, to_address, subject, html, text, headers, status, "
            "attempts, provider_message_id, idempotency_key, created_at, updated_at) VALUES "
            "('generic', 'ada@example.com', 's', '', '', '{}', 'sent', 1, 'legacy-id', 'k-1', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT provider_tagged FROM email_outbox WHERE provider_message_id = 'legacy-id' "
            "AND provider_tagged IS NULL")).one() == (None,)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLite's expression index is not reflected
            found = inspect(engine).get_indexes("email_outbox")
        where = next(i for i in found if i["name"] == "ix_email_outbox_provider_message_id"
                     )["dialect_options"][f"{engine.dialect.name}_where"]
        assert "provider_tagged IS NULL" in str(where)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0017_outbox_indexes")
    columns = {c["name"] for c in inspect(engine).get_columns("email_outbox")}
    assert "provider_tagged" not in columns and "provider_message_id" in columns
    upgrade(engine)
    engine.dispose()


def test_an_untagged_emails_webhook_lookup_walks_the_provider_id_index(database_url):
    """The lookup's terms imply the partial index's predicate on both databases (an index a
    query cannot use would leave every pre-0018 email to a table scan)."""
    from sqlalchemy import text

    from kolaq_console.webhooks.effects import by_untagged_provider_id

    engine = make_engine(database_url)
    upgrade(engine)
    statement = by_untagged_provider_id("re-1").compile(
        engine, compile_kwargs={"literal_binds": True})
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {statement}"
                        if engine.dialect.name == "sqlite" else f"EXPLAIN {statement}")))
    engine.dispose()
    assert "ix_email_outbox_provider_message_id" in plan, plan


def test_a_broadcasts_open_copies_are_looked_for_through_the_status_index(database_url):
    """settle() asks this at the end of every line of batches: through the broadcast's own
    index it walked every copy sent so far."""
    from sqlalchemy import text

    from kolaq_console.broadcasts.sending import open_copies

    engine = make_engine(database_url)
    upgrade(engine)
    statement = open_copies(7).compile(engine, compile_kwargs={"literal_binds": True})
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        plan = " ".join(str(r[-1]) for r in conn.execute(text(
            f"EXPLAIN QUERY PLAN {statement}" if sqlite else f"EXPLAIN {statement}")))
    engine.dispose()
    assert "ix_email_outbox_broadcast_id" not in plan, plan
    if sqlite:  # PostgreSQL's choice on an empty table is a scan either way
        assert "ix_email_outbox_status_updated" in plan, plan
